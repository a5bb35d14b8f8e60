"""The post cache: post bodies in Redis (``{prefix}post:{<id>}``), so a push read needs no Postgres."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from targets.stores.postgres import Post, Social
from targets.stores.timelines import user_key

if TYPE_CHECKING:
    from targets.stores.connections import Stores

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

    def __init__(self, redis: aioredis.Redis, prefix: str, tags: Sequence[str] | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        #: On a Redis Cluster the shard tags (a post's key carries the tag of post id mod S): a page's posts are then
        #: read with one MGET per shard, not one command per post. None on one server (tagged by post id).
        self.tags = list(tags) if tags is not None else None
        # Post id (as Redis returns it) -> (cached bytes, the post decoded from them). A post is immutable, so the
        # same bytes always decode to an equal post: a hot post is parsed once, not on every read that shows it.
        self._decoded: dict[bytes, tuple[bytes, Post]] = {}

    @classmethod
    def of(cls, stores: Stores) -> PostCache:
        """The post cache of these stores' namespace (with their shard tags on a cluster)."""
        return cls(stores.redis, stores.settings.prefix, stores.tags)

    def key(self, post_id: int) -> str:
        """The cached post's key."""
        return user_key(post_key_prefix(self.prefix), post_id, self.tags)

    async def raw(self, post_ids: Sequence[int]) -> list[bytes | None]:
        """The cached bytes of these posts, in order (None where missing): one MGET on one server; on a cluster one
        MGET per shard (its keys share a slot), all in one pipeline: one round trip per node."""
        if self.tags is None:
            return await self.redis.mget([self.key(p) for p in post_ids])
        shards: dict[int, list[int]] = {}
        for position, post_id in enumerate(post_ids):
            shards.setdefault(post_id % len(self.tags), []).append(position)
        pipe = self.redis.pipeline(transaction=False)
        for positions in shards.values():
            # A raw command: a cluster pipeline's mget() is not queued (it splits keys by slot itself).
            pipe.execute_command("MGET", *(self.key(post_ids[i]) for i in positions))
        found: list[bytes | None] = [None] * len(post_ids)
        for positions, values in zip(shards.values(), await pipe.execute(), strict=True):
            for i, value in zip(positions, values, strict=True):
                found[i] = value
        return found

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
            if self.tags is None:
                await self.redis.mset({self.key(p.id): self.encode(p) for p in posts})
                return
            shards: dict[int, list[Post]] = {}
            for post in posts:
                shards.setdefault(post.id % len(self.tags), []).append(post)
            pipe = self.redis.pipeline(transaction=False)
            for group in shards.values():  # one MSET per shard (one slot), one pipeline
                pipe.execute_command("MSET", *(x for p in group for x in (self.key(p.id), self.encode(p))))
            await pipe.execute()

    async def get(self, post_ids: Sequence[int]) -> tuple[dict[int, Post], list[int]]:
        """Cached posts by id, and the ids that were not cached."""
        if not post_ids:
            return {}, []
        raws = await self.raw(post_ids)
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
