"""Home timelines in Redis: capped sorted sets scored by post id, one per (owner, user); and the key layout.

Keys: a strategy's per-user derived state is ``{prefix}{owner}:{kind}:{<user>}`` on one server, and
``{prefix}{owner}:{kind}:{<shard tag>}<user>`` on a Redis Cluster (:func:`user_key`, :mod:`targets.stores.shards`):
``home`` for its home timeline (here), ``author`` for hybrid's author timelines
(:mod:`targets.stores.authors`) and ``celebs`` for hybrid's followed celebrities
(:mod:`targets.stores.celebrities`); the post cache is :mod:`targets.stores.post_cache`. Each write to many timelines
is one Lua call per batch (EVALSHA; Redis >= 6.2, no Redis 7 functions), never one round trip per follower.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from targets.stores.lua import ACTIVE_LUA, EDGE_LUA, NOW_LUA

# ZADD the post into every timeline of the batch and trim each to the cap; returns entries actually added, so a
# re-delivered batch counts (and changes) nothing. A timeline the post was already in did not grow: no trim needed.
# KEYS: n home timelines; with an active window (ARGV[4] > 0) or an author (ARGV[5], per-edge) the n readers' activity
# hashes; with an author their n pulled sets, the author's timeline and the author's activity hash; last the fan-out
# stats hash. A follower whose set holds the author, or whose edge the rule (ARGV[7] ratio, ARGV[8] '1' for declared
# rates, ARGV[9] half-life) moves to pull now, or who has not read within the window is skipped; skips are counted
# per owner (ARGV[6]) in the stats.
_ADD_TO_MANY = (
    NOW_LUA
    + ACTIVE_LUA
    + EDGE_LUA
    + """
local id, cap, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local keep = -(cap + 1)
local window, author = tonumber(ARGV[4]), ARGV[5]
local at = now()
local cutoff, acts, sets = nil, nil, nil
if window > 0 then cutoff = at - window end
if window > 0 or author ~= '' then acts = n end
if author ~= '' then sets = 2 * n end
local ratio, declared, half = tonumber(ARGV[7]), ARGV[8] == '1', tonumber(ARGV[9])
local posts, ids = 0, {}
if author ~= '' and ARGV[10] ~= nil then
  -- On a Redis Cluster the author's keys are in another slot: its rate and posts come as ARGV[10..] (_AUTHOR_INPUTS).
  posts = tonumber(ARGV[10])
  for i = 11, #ARGV do ids[#ids + 1] = ARGV[i] end
elseif author ~= '' then
  local _, p = rates(KEYS[3 * n + 2], declared, half, at)
  posts = p
  -- Only an author whose timeline is built can be pulled: its posts must be readable from there.
  if posts > 0 and redis.call('EXISTS', KEYS[3 * n + 1]) == 0 then posts = 0 end
  if posts > 0 then ids = redis.call('ZRANGEBYSCORE', KEYS[3 * n + 1], '(0', '+inf') end
end
local added, inactive, pulled, flipped = 0, 0, 0, 0
for i = 1, n do
  if sets ~= nil and redis.call('SISMEMBER', KEYS[sets + i], author) == 1 then
    pulled = pulled + 1
  elseif posts > 0 and pull_edge(KEYS[acts + i], KEYS[sets + i], KEYS[i], author, posts, ratio, declared, half, at,
      ids, cap) then
    pulled = pulled + 1
    flipped = flipped + 1
  elseif cutoff ~= nil and not active(KEYS[acts + i], cutoff) then
    inactive = inactive + 1
  elseif redis.call('ZADD', KEYS[i], id, id) == 1 then
    added = added + 1
    redis.call('ZREMRANGEBYRANK', KEYS[i], 0, keep)
  end
end
local stats = KEYS[#KEYS]
if inactive > 0 then redis.call('HINCRBY', stats, 'skipped:' .. ARGV[6], inactive) end
if pulled > 0 then redis.call('HINCRBY', stats, 'pulled:' .. ARGV[6], pulled) end
if flipped > 0 then redis.call('HINCRBY', stats, 'flipped:' .. ARGV[6], flipped) end
return added
"""
)


# The author's side of that rule, for a Redis Cluster where the author's keys are in their own slot: KEYS[1] its
# activity hash, KEYS[2] its author timeline; ARGV[1] '1' for declared rates, ARGV[2] the half-life. Returns {its post
# rate, then its timeline's post ids}, the rate 0 when the timeline is not built (an author only then pullable).
_AUTHOR_INPUTS = (
    NOW_LUA
    + EDGE_LUA
    + """
local _, posts = rates(KEYS[1], ARGV[1] == '1', tonumber(ARGV[2]), now())
if posts <= 0 or redis.call('EXISTS', KEYS[2]) == 0 then return {'0'} end
local out = {string.format('%.17g', posts)}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(0', '+inf')) do out[#out + 1] = id end
return out
"""
)


@dataclass(frozen=True, slots=True)
class EdgeRule:
    """How a per-edge owner's fan-out tells pulled edges (adaptive): the followers' sets of pulled followees, the
    author timelines, and the rule that moves an edge to pull at fan-out time (see ``EDGE_LUA``)."""

    sets_prefix: str
    authors_prefix: str
    cost_ratio: float
    declared: bool
    half_life_s: int


# Merge posts into one timeline (on follow) and trim; returns entries added.
_MERGE = """
local added = 0
for i = 2, #ARGV do
  added = added + redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i])
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
return added
"""

# Remove posts from one timeline (on unfollow); returns {size before, removed}.
_UNMERGE = """
local size = redis.call('ZCARD', KEYS[1])
local removed = 0
if #ARGV > 0 then removed = redis.call('ZREM', KEYS[1], unpack(ARGV)) end
return {size, removed}
"""


#: Told ``(post_id, entries_added)`` after each batch a strategy writes itself (sync fan-out), so a harness times
#: deliveries by listening, as Locust's event hooks let it listen to requests, never by replacing the writer.
WrittenHook = Callable[[int, int], None]


#: Every owner's per-user derived state (keys shaped ``<owner>:<kind>:{<user>}``), relative to the prefix: one
#: pattern, so clearing all of it costs one SCAN of the database. The post cache (``post:{<id>}``) does not match.
ALL_DERIVED_PATTERN = "*:*:{*"


#: The member that keeps an empty author timeline or celebrity set in existence (score 0 in a sorted set, below every
#: post id). With it a key exists exactly when its state is materialised, so a missing key is a cache miss.
SENTINEL = "-"


def queue_prefix(prefix: str, cluster: bool = False) -> str:
    """Everything of a fan-out queue key (:mod:`targets.fanout.queue`) before its name. On a Redis Cluster every
    queue key carries one hash tag, so the streams, reports and stats its scripts touch together share a slot."""
    return f"{prefix}{{fanout}}:" if cluster else f"{prefix}fanout:"


def fanout_stats_key(prefix: str, cluster: bool = False) -> str:
    """The hash of fan-out totals per owner (written, delivered, skipped...; :mod:`targets.fanout.queue`)."""
    return queue_prefix(prefix, cluster) + "stats"


def fanout_stats_keys(prefix: str, tags: Sequence[str] | None) -> list[str]:
    """Every hash of fan-out totals: the one of :func:`fanout_stats_key` and, on a Redis Cluster, each shard's, where
    a shard's fan-out call counts what it skipped (a script's keys must share its slot)."""
    if tags is None:
        return [fanout_stats_key(prefix)]
    return [fanout_stats_key(prefix, cluster=True)] + [f"{prefix}fanout:stats:{{{tag}}}" for tag in tags]


def owner_key_prefix(prefix: str, owner: str, kind: str) -> str:
    """Everything of an owner's per-user key of ``kind`` before the user id (the key ends with the id and ``}``).

    The one definition of the key layout: the Lua scripts that build keys (fan-out, page reads) start from it.
    """
    return f"{prefix}{owner}:{kind}:{{"


def user_key(kind_prefix: str, user_id: int, tags: Sequence[str] | None = None) -> str:
    """A user's key of one kind (``kind_prefix`` from :func:`owner_key_prefix`): tagged with the user's id on one
    server, with its shard's tag on a Redis Cluster (``tags``), so all of one shard's keys share a slot."""
    if tags is None:
        return f"{kind_prefix}{user_id}}}"
    return f"{kind_prefix}{tags[user_id % len(tags)]}}}{user_id}"


def by_shard(user_ids: Iterable[int], tags: Sequence[str] | None) -> dict[int, list[int]]:
    """The users grouped by shard (user id mod S) on a Redis Cluster, so each group's keys share a slot; one group on
    one server."""
    if tags is None:
        return {0: list(user_ids)}
    groups: dict[int, list[int]] = {}
    for u in user_ids:
        groups.setdefault(u % len(tags), []).append(u)
    return groups


def home_key_prefix(prefix: str, owner: str) -> str:
    """Everything of a home timeline key before the user id."""
    return owner_key_prefix(prefix, owner, "home")


def owner_pattern(owner: str) -> str:
    """Glob (relative to the prefix) of all of one owner's derived state."""
    return f"{owner}:*"


def home_pattern(owner: str) -> str:
    """Glob (relative to the prefix) of every home timeline of one owner."""
    return f"{owner}:home:*"


class Timelines:
    """One owner's home timelines (``owner`` is the strategy name, so strategies never share derived state)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        owner: str,
        cap: int,
        *,
        on_written: WrittenHook | None = None,
        window_s: int = 0,
        tags: Sequence[str] | None = None,
    ) -> None:
        self.redis = redis
        #: Shard tags on a Redis Cluster (None on one server): see :func:`user_key`.
        self.tags = list(tags) if tags is not None else None
        #: Fan-out skips followers who have not read within this many seconds (0: none).
        self.window_s = window_s
        #: Where skipped deliveries are counted per owner (the fan-out's stats hash).
        self.stats_key = fanout_stats_key(prefix, self.tags is not None)
        #: On a cluster, each shard's own stats hash (in its slot).
        self.shard_stats = fanout_stats_keys(prefix, self.tags)[1:]
        #: Told ``(post_id, entries_added)`` after each :meth:`add_to_many` (a listener, never part of the write).
        self.on_written = on_written
        self.prefix = prefix
        self.owner = owner
        self.cap = cap
        self._add_to_many = redis.register_script(_ADD_TO_MANY)
        self._author_inputs = redis.register_script(_AUTHOR_INPUTS)
        self._merge = redis.register_script(_MERGE)
        self._unmerge = redis.register_script(_UNMERGE)

    def key(self, user_id: int) -> str:
        """The user's home timeline key."""
        return user_key(home_key_prefix(self.prefix, self.owner), user_id, self.tags)

    @property
    def pattern(self) -> str:
        """Glob (relative to the prefix) of every home timeline of this owner."""
        return home_pattern(self.owner)

    async def add_to_many(
        self, user_ids: Sequence[int], post_id: int, *, rule: EdgeRule | None = None, author: int = 0
    ) -> int:
        """Add one post to many timelines in one call; returns the entries written.

        With a ``rule`` (a per-edge owner) the users whose edge to ``author`` is pulled, or moves to pull now, are
        skipped; with an active window, users who have not read within it are skipped too.
        """
        if not user_ids:
            return 0
        if self.tags is not None:
            added = await self._add_by_shard(user_ids, post_id, rule, author)
            if self.on_written is not None:
                self.on_written(post_id, added)
            return added
        acts = owner_key_prefix(self.prefix, self.owner, "act")
        keys = [self.key(u) for u in user_ids]
        if self.window_s or rule is not None:
            keys += [f"{acts}{u}}}" for u in user_ids]
        if rule is not None:
            keys += [f"{rule.sets_prefix}{u}}}" for u in user_ids]
            keys += [f"{rule.authors_prefix}{author}}}", f"{acts}{author}}}"]
        keys.append(self.stats_key)
        args = [post_id, self.cap, len(user_ids), self.window_s, author if rule is not None else "", self.owner]
        if rule is not None:
            args += [rule.cost_ratio, int(rule.declared), rule.half_life_s]
        else:
            args += [0, 0, 1]
        added = int(await self._add_to_many(keys=keys, args=args))
        if self.on_written is not None:
            self.on_written(post_id, added)
        return added

    async def _add_by_shard(self, user_ids: Sequence[int], post_id: int, rule: EdgeRule | None, author: int) -> int:
        """On a cluster: the batch split by shard, each shard's timelines written by one call whose keys (its
        timelines, their readers' activity hashes with a window or a ``rule``, their pulled sets with a rule, and its
        own stats hash) share the shard's slot; one pipeline, one round trip per node. The rule's author side is read
        first, from the author's own slot, and passed to every shard's call."""
        groups = by_shard(user_ids, self.tags)
        args: list[Any] = [post_id, self.cap, 0, self.window_s, "", self.owner, 0, 0, 1]  # [2]: each shard's count
        if rule is not None:
            acts = owner_key_prefix(self.prefix, self.owner, "act")
            author_keys = [user_key(acts, author, self.tags), user_key(rule.authors_prefix, author, self.tags)]
            inputs = await self._author_inputs(keys=author_keys, args=[int(rule.declared), rule.half_life_s])
            args[4:] = [author, self.owner, rule.cost_ratio, int(rule.declared), rule.half_life_s, *inputs]
        pending, replies = dict(groups), {}

        async def send() -> None:
            """Send the shards not yet written; keep what each wrote, raise the first error of those that failed."""
            sent = await self._send_by_shard(pending, args, rule)
            refused = {shard: pending[shard] for shard, reply in sent.items() if isinstance(reply, NoScriptError)}
            if refused:  # a promoted replica: script caches are not replicated; load it on every primary
                await self.redis.script_load(_ADD_TO_MANY)
                sent.update(await self._send_by_shard(refused, args, rule))
            for shard, reply in sent.items():
                if not isinstance(reply, Exception):
                    replies[shard] = reply
                    del pending[shard]
            for reply in sent.values():
                if isinstance(reply, Exception):
                    raise reply

        async def retried(error: Exception) -> None:
            """Nothing to undo: the next attempt resends only the shards that failed."""

        # Per shard, so a shard written before a node failed is neither written nor counted twice; a lost node's
        # shards are sent again by the cluster client's own retry policy (its back-off and attempts).
        await self.redis.retry.call_with_retry(send, retried)
        return sum(int(n) for n in replies.values())

    async def _send_by_shard(
        self, groups: dict[int, list[int]], args: list[Any], rule: EdgeRule | None
    ) -> dict[int, Any]:
        """Each shard's reply (its entries added, or the error it raised)."""
        assert self.tags is not None
        acts = owner_key_prefix(self.prefix, self.owner, "act")
        pipe = self.redis.pipeline(transaction=False)
        for shard, users in groups.items():
            keys = [self.key(u) for u in users]
            if self.window_s or rule is not None:
                keys += [user_key(acts, u, self.tags) for u in users]
            if rule is not None:
                keys += [user_key(rule.sets_prefix, u, self.tags) for u in users]
            keys.append(self.shard_stats[shard])
            pipe.evalsha(self._add_to_many.sha, len(keys), *keys, *args[:2], len(users), *args[3:])
        return dict(zip(groups, await pipe.execute(raise_on_error=False), strict=True))

    async def merge(self, user_id: int, post_ids: Sequence[int]) -> int:
        """Add posts to one timeline, keeping the cap; returns entries written."""
        if not post_ids:
            return 0
        return int(await self._merge(keys=[self.key(user_id)], args=[self.cap, *post_ids]))

    async def unmerge(self, user_id: int, post_ids: Sequence[int]) -> tuple[int, int]:
        """Remove posts from one timeline; returns (size before, entries removed)."""
        size, removed = await self._unmerge(keys=[self.key(user_id)], args=list(post_ids))
        return int(size), int(removed)

    async def replace(self, user_id: int, post_ids: Sequence[int]) -> None:
        """Atomically make the timeline hold exactly these posts (a rebuild from the source of truth)."""
        key = self.key(user_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            # Sent as a raw command: a cluster pipeline's unlink() splits keys by slot itself and is not queued.
            pipe.execute_command("UNLINK", key)
            if post_ids:
                pipe.zadd(key, {str(p): p for p in post_ids})
            await pipe.execute()

    async def page(self, user_id: int, limit: int, before: int | None) -> list[int]:
        """Post ids below ``before`` (exclusive), newest first, at most ``limit``."""
        if limit <= 0:
            return []
        top = "+inf" if before is None else f"({before}"
        ids = await self.redis.zrevrangebyscore(self.key(user_id), top, "-inf", start=0, num=limit)
        return [int(i) for i in ids]

    async def count_at_or_above(self, user_id: int, post_id: int) -> int:
        """How many entries of the timeline are at or above ``post_id``."""
        return int(await self.redis.zcount(self.key(user_id), post_id, "+inf"))

    async def size(self, user_id: int) -> int:
        """Entries in the user's timeline."""
        return int(await self.redis.zcard(self.key(user_id)))
