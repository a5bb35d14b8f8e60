"""What a strategy knows of each user's activity, in Redis: when it last read, and how often it reads and posts.

Key ``{prefix}{owner}:act:{<user>}`` (hash-tagged by user like the rest of its per-user state), a hash of:

* ``seen``: the time of the user's last read (Redis's clock, in seconds). With an active window
  (``Settings.active_window_s``) fan-out skips a follower whose ``seen`` is older than the window or missing, and that
  user's next read finds itself inactive and rebuilds its timeline from Postgres first (Mastodon's regeneration).
* ``r``: its reads, counted with exponential decay (half-life ``Settings.rate_half_life_s``) as of ``seen``;
  ``p`` and ``pt``: its posts, counted the same way, as of ``pt``. Adaptive decides each follow edge by these.
* ``e``: when adaptive last decided the user's follow edges; ``dr``, ``dp``: read and post rates a workload declared.
* ``stale``: the user's timeline lacks posts it should hold (a fan-out moved an edge to pull out of a full timeline):
  its next read rebuilds it first, as an inactive reader's.

The page scripts (:mod:`targets.stores.pages`) update ``seen`` and ``r`` inside the read's own Lua call
(:data:`targets.stores.lua.TOUCH_LUA`), so keeping them costs no round trip; the fan-out scripts read ``seen`` of each
follower in the call that writes its timeline (:data:`targets.stores.lua.ACTIVE_LUA`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from targets.stores.lua import NOW_LUA
from targets.stores.timelines import owner_key_prefix, user_key


def activity_pattern(owner: str) -> str:
    """Glob (relative to the prefix) of every activity hash of one owner."""
    return f"{owner}:act:*"


#: Touch flags (see :data:`targets.stores.lua.TOUCH_LUA`).
INACTIVE = 1
DUE = 2

# Count one post by KEYS[1]'s user, decayed with half-life ARGV[1].
_COUNT_POST = (
    NOW_LUA
    + """
local at, stamp = now()
local h = redis.call('HMGET', KEYS[1], 'p', 'pt')
local p = tonumber(h[1]) or 0
if h[2] then p = p * 2 ^ (-(at - tonumber(h[2])) / tonumber(ARGV[1])) end
redis.call('HSET', KEYS[1], 'p', tostring(p + 1), 'pt', stamp)
"""
)


@dataclass(frozen=True, slots=True)
class Rates:
    """Reads and posts per user, in one unit for both (only their ratio is used)."""

    reads: dict[int, float]
    posts: dict[int, float]


@dataclass(frozen=True, slots=True)
class Touch:
    """What a read records in its reader's activity hash (:data:`TOUCH_LUA`); all 0: nothing."""

    window_s: int = 0
    half_life_s: int = 0
    every_s: int = 0

    def args(self, *, again: bool = False) -> list[int]:
        """The script's arguments; ``again`` for a read repeated within one request (seen, but not counted twice)."""
        return [self.window_s, 0, 0] if again else [self.window_s, self.half_life_s, self.every_s]


class Activity:
    """One owner's per-user activity hashes."""

    def __init__(self, redis: aioredis.Redis, prefix: str, owner: str, tags: Sequence[str] | None = None) -> None:
        #: Shard tags on a Redis Cluster (a reader's activity shares its home timeline's slot), else None.
        self.tags = tags
        self.redis = redis
        self.key_prefix = owner_key_prefix(prefix, owner, "act")
        self._count_post = redis.register_script(_COUNT_POST)

    def key(self, user_id: int) -> str:
        """The user's activity hash."""
        return user_key(self.key_prefix, user_id, self.tags)

    async def mark_seen(self, user_ids: Iterable[int]) -> None:
        """Record a read by each of these users now (their timelines were just built: they count as active)."""
        seconds, micros = await self.redis.time()
        stamp = f"{seconds}.{micros:06d}"
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.hset(self.key(user_id), "seen", stamp)
            await pipe.execute()

    async def forget_seen(self, user_id: int) -> None:
        """Forget the user's last read and mark its timeline stale, so its next read rebuilds (a rebuild that failed
        after the read marked it active or unmarked it stale)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.key(user_id), "seen")
            pipe.hset(self.key(user_id), "stale", "1")
            await pipe.execute()

    async def count_post(self, author_id: int, half_life_s: int) -> None:
        """Count one post by the author in its decayed post count."""
        await self._count_post(keys=[self.key(author_id)], args=[half_life_s])

    async def declare(self, reads: Mapping[int, float], posts: Mapping[int, float]) -> None:
        """Store rates a workload declares up front (used with ``Settings.rate_source == "declared"``)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id in set(reads) | set(posts):
                pipe.hset(self.key(user_id), mapping={"dr": reads.get(user_id, 0.0), "dp": posts.get(user_id, 0.0)})
            await pipe.execute()

    async def rates(self, user_ids: Sequence[int], half_life_s: int, *, declared: bool) -> Rates:
        """These users' read and post rates: declared ones, or their decayed counts decayed on to now."""
        fields = ("dr", "dp") if declared else ("r", "seen", "p", "pt")
        clock = None if self.tags is None else await self.redis.time()  # a cluster pipeline refuses TIME
        async with self.redis.pipeline(transaction=False) as pipe:
            if clock is None:
                pipe.time()
            for user_id in user_ids:
                pipe.hmget(self.key(user_id), fields)
            replies = await pipe.execute()
        (seconds, micros), rows = (replies[0], replies[1:]) if clock is None else (clock, replies)
        at = seconds + micros / 1e6
        reads: dict[int, float] = {}
        posts: dict[int, float] = {}
        for user_id, row in zip(user_ids, rows, strict=True):
            values = [None if v is None else float(v) for v in row]
            if declared:
                reads[user_id], posts[user_id] = values[0] or 0.0, values[1] or 0.0
            else:
                reads[user_id] = _decayed(values[0], values[1], at, half_life_s)
                posts[user_id] = _decayed(values[2], values[3], at, half_life_s)
        return Rates(reads, posts)


def _decayed(count: float | None, as_of: float | None, at: float, half_life_s: int) -> float:
    """A decayed count taken on from the time it was last counted to ``at``."""
    if count is None or as_of is None:
        return 0.0
    return count * 2 ** (-max(0.0, at - as_of) / half_life_s)
