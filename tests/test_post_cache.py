"""The post cache's page decoding: equal to decoding each body, reusing hot posts, bounded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from targets.stores import post_cache
from targets.stores.post_cache import PostCache
from targets.stores.postgres import Post


def _raw(post: Post) -> tuple[bytes, bytes]:
    return str(post.id).encode(), PostCache.encode(post)


def test_decode_page_reuses_posts_only_for_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(post_cache, "DECODED_MAX", 2)
    cache = PostCache(None, "p:")  # type: ignore[arg-type]  # decoding needs no connection
    when = datetime(2026, 12, 2, 12, 0, 0, 123456, tzinfo=UTC)
    posts = [Post(10 + i, i, when, f"body|{i}") for i in range(3)]
    ids, raws = zip(*map(_raw, posts), strict=True)

    first = cache.decode_page(ids[:2], raws[:2])
    assert first == posts[:2]
    again = cache.decode_page(ids[:2], raws[:2])
    assert again == posts[:2] and all(a is b for a, b in zip(again, first, strict=True))  # not parsed again

    edited = Post(posts[0].id, 0, when, "other bytes under the same id")
    assert cache.decode_page([ids[0]], [PostCache.encode(edited)]) == [edited]
    cache.decode_page(ids[2:], raws[2:])  # a third post: the memo holds at most two
    assert len(cache._decoded) == 2
    assert cache.decode_page(ids, raws) == posts
