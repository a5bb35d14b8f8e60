"""Author timelines: each account's own newest post ids in Redis, so a hybrid read merges celebrities without Postgres.

Key ``{prefix}{owner}:author:{<user>}``: a sorted set scored by post id, capped at ``timeline_cap`` posts like a home
timeline (older posts can never be in anyone's timeline), plus the :data:`~targets.stores.timelines.SENTINEL` member
at score 0. The sentinel keeps the timeline of an account without posts in existence, so a *missing key* means one
thing: not materialised (never built, or lost with a Redis restart), and the reader rebuilds it from Postgres.
Writes therefore touch only timelines that exist: adding a post to a missing one would make a partial timeline look
complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis

from targets.stores.timelines import SENTINEL, by_shard, owner_key_prefix, user_key

# If the author's timeline is materialised, add the post and trim it to the cap. Rank 0 is the sentinel (score 0), so
# the trim starts at rank 1 and keeps the sentinel and the newest `cap` posts.
_ADD_IF_BUILT_LUA = """
local function add_if_built(key, id, cap)
  if redis.call('EXISTS', key) == 0 then return 0 end
  local added = redis.call('ZADD', key, id, id)
  redis.call('ZREMRANGEBYRANK', key, 1, -(tonumber(cap) + 1))
  return added
end
"""
# KEYS[1] the author's timeline; ARGV: the post id, the cap.
_ADD_IF_BUILT = _ADD_IF_BUILT_LUA + "return add_if_built(KEYS[1], ARGV[1], ARGV[2])"
# Cache the post too (KEYS[1] its cache key, ARGV[1] its bytes), then KEYS[2] and ARGV[2..3] as above: one call.
_CACHE_AND_ADD = (
    _ADD_IF_BUILT_LUA
    + """
redis.call('SET', KEYS[1], ARGV[1])
return add_if_built(KEYS[2], ARGV[2], ARGV[3])
"""
)


def entries(post_ids: Sequence[int]) -> dict[str, int]:
    """A materialised author timeline's members and scores: the posts and the sentinel."""
    return {SENTINEL: 0, **{str(p): p for p in post_ids}}


class AuthorTimelines:
    """One owner's author timelines (only hybrid keeps them: it reads celebrities' posts from here)."""

    def __init__(
        self, redis: aioredis.Redis, prefix: str, owner: str, cap: int, tags: Sequence[str] | None = None
    ) -> None:
        self.redis = redis
        self.cap = cap
        self.key_prefix = owner_key_prefix(prefix, owner, "author")
        #: Shard tags on a Redis Cluster (None on one server): see :func:`~targets.stores.timelines.user_key`.
        self.tags = tags
        self._cache_and_add = redis.register_script(_CACHE_AND_ADD)
        self._add_if_built = redis.register_script(_ADD_IF_BUILT)

    def key(self, author_id: int) -> str:
        """The author's timeline key."""
        return user_key(self.key_prefix, author_id, self.tags)

    async def cache_and_add(self, post_key: str, encoded: bytes, post_id: int, author_id: int) -> bool:
        """Cache a new post under ``post_key`` and add it to its author's timeline, in one round trip.

        Returns whether the timeline took it (False when it is not materialised: the next read rebuilds it).
        """
        if self.tags is not None:  # on a cluster the two keys are in different slots: two calls, side by side
            _, added = await asyncio.gather(
                self.redis.set(post_key, encoded),
                self._add_if_built(keys=[self.key(author_id)], args=[post_id, self.cap]),
            )
            return bool(added)
        keys = [post_key, self.key(author_id)]
        return bool(await self._cache_and_add(keys=keys, args=[encoded, post_id, self.cap]))

    async def replace(self, timelines: Mapping[int, Sequence[int]]) -> None:
        """Atomically make these authors' timelines hold exactly these posts (newest ``cap``), in one round trip."""
        if not timelines:
            return
        for authors in by_shard(timelines, self.tags).values():  # a transaction's keys share a slot on a cluster
            async with self.redis.pipeline(transaction=True) as pipe:
                for author_id in authors:
                    key = self.key(author_id)
                    pipe.execute_command("UNLINK", key)  # raw: a cluster pipeline does not queue unlink()
                    pipe.zadd(key, entries(timelines[author_id][: self.cap]))
                await pipe.execute()

    async def post_ids(self, author_id: int) -> list[int] | None:
        """The timeline's post ids, newest first, or None when it is not materialised."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(self.key(author_id))
            pipe.zrevrangebyscore(self.key(author_id), "+inf", "(0")
            exists, ids = await pipe.execute()
        return [int(i) for i in ids] if exists else None
