"""Which celebrities each user follows, in Redis, so a hybrid read knows whom to merge without asking Postgres.

Key ``{prefix}{owner}:celebs:{<user>}``: a set of the ids of the user's followees that have at least
``celebrity_threshold`` followers, plus the :data:`~targets.stores.timelines.SENTINEL` member, so a user who follows
no celebrity still has a key. A missing key means not materialised, and the reader rebuilds it from Postgres; so
additions go only to sets that exist (adding to a missing one would make a partial set look complete). The sets
change on follow and unfollow of a celebrity and, for all of an account's followers, when it crosses the threshold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

import redis.asyncio as aioredis

from targets.stores.timelines import SENTINEL, by_shard, owner_key_prefix, user_key

# SADD or SREM (ARGV[1]) one celebrity (ARGV[2]) in every listed set that is materialised; returns sets changed.
_CHANGE = """
local changed = 0
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    changed = changed + redis.call(ARGV[1], KEYS[i], ARGV[2])
  end
end
return changed
"""


class CelebritySets:
    """One owner's per-user sets of followed celebrities (only hybrid keeps them)."""

    def __init__(self, redis: aioredis.Redis, prefix: str, owner: str, tags: Sequence[str] | None = None) -> None:
        self.redis = redis
        self.key_prefix = owner_key_prefix(prefix, owner, "celebs")
        #: Shard tags on a Redis Cluster (None on one server): see :func:`~targets.stores.timelines.user_key`.
        self.tags = tags
        self._change = redis.register_script(_CHANGE)

    def key(self, user_id: int) -> str:
        """The user's set key."""
        return user_key(self.key_prefix, user_id, self.tags)

    async def add(self, user_ids: Sequence[int], celebrity_id: int) -> int:
        """Add a celebrity to these users' sets (those materialised), in one call; returns sets changed."""
        return await self._apply("SADD", user_ids, celebrity_id)

    async def remove(self, user_ids: Sequence[int], celebrity_id: int) -> int:
        """Remove a celebrity from these users' sets, in one call; returns sets changed."""
        return await self._apply("SREM", user_ids, celebrity_id)

    async def _apply(self, command: str, user_ids: Sequence[int], celebrity_id: int) -> int:
        if not user_ids:
            return 0
        groups = by_shard(user_ids, self.tags).values()  # one call per shard on a cluster: its keys share a slot
        changed = [self._change(keys=[self.key(u) for u in users], args=[command, celebrity_id]) for users in groups]
        return sum(int(n) for n in await asyncio.gather(*changed))

    async def add_to(self, user_id: int, celebrity_ids: Sequence[int]) -> None:
        """Add several to one user's set (one the caller knows is materialised)."""
        await self.redis.sadd(self.key(user_id), *celebrity_ids)

    async def remove_from(self, user_id: int, celebrity_ids: Sequence[int]) -> None:
        """Remove several from one user's set."""
        await self.redis.srem(self.key(user_id), *celebrity_ids)

    async def replace(self, sets: Mapping[int, Iterable[int]]) -> None:
        """Atomically make these users' sets hold exactly these celebrities, in one round trip."""
        if not sets:
            return
        for users in by_shard(sets, self.tags).values():  # a transaction's keys share a slot on a cluster
            async with self.redis.pipeline(transaction=True) as pipe:
                for user_id in users:
                    key = self.key(user_id)
                    pipe.execute_command("UNLINK", key)  # raw: a cluster pipeline does not queue unlink()
                    pipe.sadd(key, SENTINEL, *sets[user_id])
                await pipe.execute()

    async def members(self, user_id: int) -> set[int] | None:
        """The user's followed celebrities, or None when the set is not materialised."""
        return _members(await self.redis.smembers(self.key(user_id)))

    async def members_of(self, user_ids: Sequence[int]) -> list[set[int] | None]:
        """:meth:`members` of many users, in one pipeline (one round trip per node)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.smembers(self.key(user_id))
            return [_members(raw) for raw in await pipe.execute()]


def _members(raw: set[bytes]) -> set[int] | None:
    return {int(m) for m in raw if m != SENTINEL.encode()} if raw else None
