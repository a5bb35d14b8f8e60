"""Timeline pages in one Redis round trip: the range of post ids and the cached bodies, from one Lua call.

:class:`PageReader` serves push's read (the home timeline's page, then MGET of the cached posts) and hybrid's (the
home timeline merged with the followed celebrities' author timelines, cut to the timeline cap as
:func:`targets.strategies.base.capped_page` cuts pages computed from Postgres, then MGET). The scripts build the
post-cache and author-timeline keys from their prefixes, so they touch keys they do not declare, as the fan-out's
delivery script does. On a Redis Cluster those keys are in other slots: a page there is the reader's own keys from
one call (they share its shard's slot), then the author timelines by shard and the bodies by shard. Post ids stay
strings inside Lua except for comparing: Lua's numbers are doubles, exact for 53-bit ids but printed with 14 digits.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from targets.stores.activity import DUE, INACTIVE, Touch
from targets.stores.lua import TOUCH_LUA
from targets.stores.post_cache import PostCache, post_key_prefix
from targets.stores.timelines import SENTINEL, by_shard, owner_key_prefix, user_key

# KEYS[1] home timeline, KEYS[2] the reader's activity; ARGV: top of the range ('+inf' or '(<before>'), limit,
# post-cache key prefix, then the touch's window, half-life, every. Returns {ids, cached bodies, touch flags}; an
# inactive reader gets no page (its timeline may lack what fan-out skipped), only the flags.
_PUSH_PAGE = (
    TOUCH_LUA
    + """
local flags = touch(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
if flags % 2 == 1 then return {{}, {}, flags} end
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'LIMIT', 0, ARGV[2])
if #ids == 0 then return {ids, {}, flags} end
local keys = {}
for i = 1, #ids do keys[i] = ARGV[3] .. ids[i] .. '}' end
return {ids, redis.call('MGET', unpack(keys)), flags}
"""
)

# The same without the bodies, for a Redis Cluster (the cached posts are in other slots): returns {ids, touch flags}.
_PUSH_IDS = (
    TOUCH_LUA
    + """
local flags = touch(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
if flags % 2 == 1 then return {{}, flags} end
return {redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'LIMIT', 0, ARGV[2]), flags}
"""
)

# KEYS[1] home timeline, KEYS[2] the reader's celebrity set (adaptive: its pulled followees), KEYS[3] its activity;
# ARGV: top of the range, before ('' on a first page), limit, cap, author-timeline key prefix, post-cache key prefix,
# sentinel, then the touch's window, half-life, every. Returns {3, flags} for an inactive reader, {0} when the
# celebrity set is not materialised, {1, author ids} when some of those authors' timelines are not, else
# {2, ids, cached bodies, touch flags}.
_HYBRID_PAGE = (
    TOUCH_LUA
    + """
local flags = touch(KEYS[3], tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]))
if flags % 2 == 1 then return {3, flags} end
local celebs = redis.call('SMEMBERS', KEYS[2])
if #celebs == 0 then return {0} end
local top, before, limit, cap, sentinel = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[7]
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], top, '-inf', 'LIMIT', 0, limit)
-- Entries at or above `before` lie above the page; the home timeline's count at most the cap, as in capped_page.
local newer = 0
if before ~= '' then newer = math.min(redis.call('ZCOUNT', KEYS[1], before, '+inf'), cap) end
local missing, lists = {}, {ids}
for _, c in ipairs(celebs) do
  if c ~= sentinel then
    local key = ARGV[5] .. c .. '}'
    -- '(0' leaves out the sentinel (score 0); an empty range is a miss only if the key itself is missing.
    local page = redis.call('ZREVRANGEBYSCORE', key, top, '(0', 'LIMIT', 0, limit)
    if #page == 0 and redis.call('EXISTS', key) == 0 then
      missing[#missing + 1] = c
    else
      if #page > 0 then lists[#lists + 1] = page end
      if before ~= '' then newer = newer + redis.call('ZCOUNT', key, before, '+inf') end
    end
  end
end
if #missing > 0 then return {1, missing} end
-- Merge the lists (each newest first) until the page is full: at most n steps over #lists heads, no sort.
local n = math.max(0, math.min(limit, cap - newer))
local pos, heads = {}, {}
for j = 1, #lists do pos[j], heads[j] = 1, tonumber(lists[j][1]) end
local chosen, keys, last = {}, {}, nil
while #chosen < n do
  local best, from = nil, nil
  for j = 1, #lists do
    local h = heads[j]
    if h ~= nil and (best == nil or h > best) then best, from = h, j end
  end
  if from == nil then break end
  local id = lists[from][pos[from]]
  pos[from] = pos[from] + 1
  local nxt = lists[from][pos[from]]
  heads[from] = nxt and tonumber(nxt)
  -- An id in both the home and an author timeline (mid-transition across the threshold) counts once.
  if best ~= last then
    chosen[#chosen + 1] = id
    keys[#keys + 1] = ARGV[6] .. id .. '}'
    last = best
  end
end
if #keys == 0 then return {2, chosen, {}, flags} end
return {2, chosen, redis.call('MGET', unpack(keys)), flags}
"""
)


# A hybrid page on a Redis Cluster, where the author timelines are in other slots: first the reader's own keys (one
# slot: KEYS home timeline, celebrity set, activity; ARGV top, before, limit, cap, then the touch's window, half-life,
# every). Returns {3, flags} for an inactive reader, {0} when the celebrity set is not materialised, else
# {2, home ids, how many home entries lie at or above `before` (at most the cap), celebrity ids, flags}.
_HYBRID_OWN = (
    TOUCH_LUA
    + """
local flags = touch(KEYS[3], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
if flags % 2 == 1 then return {3, flags} end
local celebs = redis.call('SMEMBERS', KEYS[2])
if #celebs == 0 then return {0} end
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'LIMIT', 0, ARGV[3])
local newer = 0
if ARGV[2] ~= '' then newer = math.min(redis.call('ZCOUNT', KEYS[1], ARGV[2], '+inf'), tonumber(ARGV[4])) end
return {2, ids, newer, celebs, flags}
"""
)

# Then one call per shard of the celebrities' author timelines (KEYS; ARGV top, before, limit): per key {1 if it is
# materialised, its page of ids ('(0' leaves out the sentinel), how many of its posts lie at or above `before`}.
_AUTHOR_PAGES = """
local out = {}
for i, key in ipairs(KEYS) do
  local page = redis.call('ZREVRANGEBYSCORE', key, ARGV[1], '(0', 'LIMIT', 0, ARGV[3])
  local exists = 1
  if #page == 0 then exists = redis.call('EXISTS', key) end
  local newer = 0
  if ARGV[2] ~= '' then newer = redis.call('ZCOUNT', key, ARGV[2], '+inf') end
  out[i] = {exists, page, newer}
end
return out
"""


@dataclass(frozen=True, slots=True)
class Page:
    """A page of post ids (bytes, newest first) and their cached bodies (None where the cache misses)."""

    ids: list[bytes]
    cached: list[bytes | None]
    #: The read's touch flags (:data:`targets.stores.activity.INACTIVE`: no page, rebuild first; ``DUE``).
    flags: int = 0

    @property
    def inactive(self) -> bool:
        """The reader was inactive: this is no page; its timeline must be rebuilt, then read again."""
        return bool(self.flags & INACTIVE)

    @property
    def due(self) -> bool:
        """The reader's follow edges are due to be decided again (adaptive)."""
        return bool(self.flags & DUE)


@dataclass(frozen=True, slots=True)
class HybridRead:
    """What a hybrid page read found: the page, or what is not materialised (rebuild it from Postgres and retry)."""

    page: Page | None = None
    #: The reader's celebrity set is not materialised.
    celebrities_missing: bool = False
    #: Followed celebrities whose author timelines are not materialised.
    authors_missing: tuple[int, ...] = ()
    #: The reader was inactive (an active window): rebuild its state, then read again.
    inactive: bool = False


class PageReader:
    """One owner's page reads (push: home timeline only; hybrid: plus author timelines and celebrity sets)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        owner: str,
        cap: int,
        touch: Touch | None = None,
        tags: Sequence[str] | None = None,
    ) -> None:
        self.cap = cap
        self.redis = redis
        #: Shard tags on a Redis Cluster (None on one server): a page is then the ids from one script and the bodies
        #: from the post cache's own slots (MGET per node), since the cached posts are spread over every node.
        self.tags = tags
        #: What every read records in its reader's activity hash.
        self.touch = touch or Touch()
        self.activity_prefix = owner_key_prefix(prefix, owner, "act")
        self.home_prefix = owner_key_prefix(prefix, owner, "home")
        self.celebs_prefix = owner_key_prefix(prefix, owner, "celebs")
        self.author_prefix = owner_key_prefix(prefix, owner, "author")
        self.post_prefix = post_key_prefix(prefix)
        self.post_cache = PostCache(redis, prefix, tags)
        #: The scripts themselves (``fanout perf read`` calls push's directly, as its floor).
        self.push_script = redis.register_script(_PUSH_PAGE)
        self._push_ids = redis.register_script(_PUSH_IDS)
        self.hybrid_script = redis.register_script(_HYBRID_PAGE)
        self._hybrid_own = redis.register_script(_HYBRID_OWN)
        self._author_pages = redis.register_script(_AUTHOR_PAGES)

    async def push(self, user_id: int, limit: int, before: int | None, *, again: bool = False) -> Page:
        """The home timeline's ids below ``before`` (newest first, at most ``limit``) and their cached bodies; no page
        when the reader was inactive (``Page.inactive``). ``again``: a repeated read in one request."""
        keys, args = self.push_request(user_id, limit, before, again=again)
        if self.tags is not None:
            ids, flags = await self._push_ids(keys=keys, args=args)
            cached = await self.post_cache.raw([int(i) for i in ids]) if ids else []
            return Page(ids, cached, flags)
        ids, cached, flags = await self.push_script(keys=keys, args=args)
        return Page(ids, cached, flags)

    def push_request(
        self, user_id: int, limit: int, before: int | None = None, *, again: bool = False
    ) -> tuple[list[str], list[str | int]]:
        """The keys and arguments of push's page script for one read (``fanout perf read`` calls it with them)."""
        top = "+inf" if before is None else f"({before}"
        keys = [user_key(self.home_prefix, user_id, self.tags), user_key(self.activity_prefix, user_id, self.tags)]
        return keys, [top, limit, self.post_prefix, *self.touch.args(again=again)]

    async def hybrid(self, user_id: int, limit: int, before: int | None, *, again: bool = False) -> HybridRead:
        """The merged page of the home timeline and the followed celebrities' author timelines, or what is missing."""
        top = "+inf" if before is None else f"({before}"
        if self.tags is not None:
            return await self._hybrid_by_shard(user_id, limit, before, again=again)
        keys = [f"{p}{user_id}}}" for p in (self.home_prefix, self.celebs_prefix, self.activity_prefix)]
        args = [top, "" if before is None else before, limit, self.cap, self.author_prefix, self.post_prefix, SENTINEL]
        reply = await self.hybrid_script(keys=keys, args=args + self.touch.args(again=again))
        if reply[0] == 2:
            return HybridRead(Page(reply[1], reply[2], reply[3]))
        if reply[0] == 3:
            return HybridRead(inactive=True)
        if reply[0] == 0:
            return HybridRead(celebrities_missing=True)
        return HybridRead(authors_missing=tuple(int(a) for a in reply[1]))

    async def _hybrid_by_shard(self, user_id: int, limit: int, before: int | None, *, again: bool) -> HybridRead:
        """:meth:`hybrid` on a Redis Cluster: the reader's own keys in one call, the followed celebrities' author
        timelines in one call per shard (side by side), merged here as ``_HYBRID_PAGE`` merges them, then the bodies
        from the post cache by shard: three round trips instead of one."""
        top, after = ("+inf", "") if before is None else (f"({before}", str(before))
        keys = [user_key(p, user_id, self.tags) for p in (self.home_prefix, self.celebs_prefix, self.activity_prefix)]
        reply = await self._hybrid_own(keys=keys, args=[top, after, limit, self.cap, *self.touch.args(again=again)])
        if reply[0] == 3:
            return HybridRead(inactive=True)
        if reply[0] == 0:
            return HybridRead(celebrities_missing=True)
        _, home, newer, celebs, flags = reply
        groups = list(by_shard((int(c) for c in celebs if c != SENTINEL.encode()), self.tags).values())
        calls = [
            self._author_pages(keys=[user_key(self.author_prefix, a, self.tags) for a in g], args=[top, after, limit])
            for g in groups
        ]
        pages = await asyncio.gather(*calls)
        # (author, materialised, page ids, entries at or above `before`) per followed celebrity.
        found = [(a, *page) for g, reply in zip(groups, pages, strict=True) for a, page in zip(g, reply, strict=True)]
        missing = tuple(a for a, exists, _, _ in found if not exists)
        if missing:
            return HybridRead(authors_missing=missing)
        newer += sum(n for _, _, _, n in found)
        wanted = max(0, min(limit, self.cap - newer))
        chosen: list[bytes] = []
        # Each list is newest first; an id in both the home and an author timeline (mid-transition) counts once.
        for post_id in heapq.merge(home, *(ids for _, _, ids, _ in found), key=int, reverse=True):
            if len(chosen) == wanted:
                break
            if not chosen or int(chosen[-1]) != int(post_id):
                chosen.append(post_id)
        cached = await self.post_cache.raw([int(i) for i in chosen]) if chosen else []
        return HybridRead(Page(chosen, cached, flags))
