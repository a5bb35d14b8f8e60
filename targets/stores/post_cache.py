"""The post cache: post bodies in Redis (``{prefix}post:{<id>}``), so a push read needs no Postgres."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from targets.stores.postgres import Post, Social

_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: Every cached post, relative to the prefix.
POST_CACHE_PATTERN = "post:*"
#: Posts cached per MSET when warming the cache.
WARM_CHUNK = 5_000
#: Decoded posts a :class:`PostCache` keeps to hand out again (about half a KiB each).
DECODED_MAX = 32_768


def post_key_prefix(prefix: str) -> str:
    """Everything of a cached post's key before the post id (the key ends with the id and ``}``)."""
    return f"{prefix}post:{{"


class PostCache:
    """Post bodies in Redis, so a push read is Redis only; misses fall back to the source of truth."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        # Post id (as Redis returns it) -> (cached bytes, the post decoded from them). A post is immutable, so the
        # same bytes always decode to an equal post: a hot post is parsed once, not on every read that shows it.
        self._decoded: dict[bytes, tuple[bytes, Post]] = {}

    def key(self, post_id: int) -> str:
        """The cached post's key."""
        return f"{post_key_prefix(self.prefix)}{post_id}}}"

    @staticmethod
    def encode(post: Post) -> bytes:
        """``author|created_us|body`` as bytes: compact, and the body may contain anything."""
        created_us = (post.created_at - _UNIX) // _MICROSECOND
        return b"%d|%d|" % (post.author_id, created_us) + post.body.encode()

    @staticmethod
    def decode(post_id: int, raw: bytes) -> Post:
        """The inverse of :meth:`encode`."""
        author, created_us, body = raw.split(b"|", 2)
        created = _UNIX + int(created_us) * _MICROSECOND
        return Post(post_id, int(author), created, body.decode())

    def decode_page(self, ids: Sequence[bytes], cached: Sequence[bytes]) -> list[Post]:
        """Posts from a page read's ids and cached bytes (none missing), reusing posts decoded before."""
        decoded = self._decoded
        posts = []
        for pid, raw in zip(ids, cached, strict=True):
            hit = decoded.get(pid)
            if hit is not None and hit[0] == raw:
                posts.append(hit[1])
                continue
            post = self.decode(int(pid), raw)
            if len(decoded) >= DECODED_MAX:
                del decoded[next(iter(decoded))]  # the oldest entry: a bounded memo, first in first out
            decoded[pid] = (raw, post)
            posts.append(post)
        return posts

    async def put(self, posts: Sequence[Post]) -> None:
        """Cache posts (one round trip)."""
        if posts:
            values = {self.key(p.id): self.encode(p) for p in posts}
            if isinstance(self.redis, RedisCluster):  # posts are spread over the slots: one MSET per slot
                await self.redis.mset_nonatomic(values)
            else:
                await self.redis.mset(values)

    async def get(self, post_ids: Sequence[int]) -> tuple[dict[int, Post], list[int]]:
        """Cached posts by id, and the ids that were not cached."""
        if not post_ids:
            return {}, []
        keys = [self.key(p) for p in post_ids]
        raws = await (
            self.redis.mget_nonatomic(keys) if isinstance(self.redis, RedisCluster) else self.redis.mget(keys)
        )
        found: dict[int, Post] = {}
        missing: list[int] = []
        for pid, raw in zip(post_ids, raws, strict=True):
            if raw is None:
                missing.append(pid)
            else:
                found[pid] = self.decode(pid, raw)
        return found, missing

    async def warm(self, social: Social, chunk: int = WARM_CHUNK) -> int:
        """Cache every post of the source of truth (streamed, one MSET per chunk) so reads start warm; returns posts."""
        cached = 0
        async for posts in social.all_posts(chunk):
            await self.put(posts)
            cached += len(posts)
        return cached
