"""The fan-out job queue: Redis Streams read through one consumer group, and the Lua calls that move work along.

A post's fan-out goes through two streams inside the namespace:

* ``{prefix}fanout:jobs``: one *post job* per published post and owner (``push`` or ``hybrid``: both may keep
  timelines in one namespace). The worker that reads it streams the author's followers from Postgres and splits
  them into batch jobs; it delivers the last batch itself, which finishes the post job.
* ``{prefix}fanout:batches``: *batch jobs*, each carrying up to ``fanout_batch`` follower ids as one decimal,
  comma-separated string (Postgres encodes each follower once; nothing in Python touches them one by one). Any
  worker delivers any batch, so several share one celebrity's fan-out.

Every state change is one Lua call, so it is all-or-nothing: delivering a batch acknowledges and deletes its entry,
writes the timelines (ZADD + trim per follower) and records the delivery in the post's report. A batch whose entry
is no longer pending (another worker delivered it after claiming it) changes nothing, so delivery is at least once
and the report stays exact. A split records how far it got (the last follower id enqueued), so a split resumed by
another worker after a crash neither skips nor repeats followers. Entries are deleted once acknowledged: the two
streams' lengths are exactly the outstanding work, which is what :meth:`FanoutQueue.drain` waits on.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from targets.config import Settings
from targets.errors import FanoutError
from targets.eventloop import raise_if_cancelled
from targets.stores.lua import ACTIVE_LUA, EDGE_LUA, NOW_LUA
from targets.stores.shards import shard_tags
from targets.stores.timelines import (
    EdgeRule,
    Timelines,
    fanout_stats_key,
    home_key_prefix,
    owner_key_prefix,
    queue_prefix,
)

GROUP = "fanout-workers"
CANCEL_CHECK_S = 1.0  # how often a drain looks for a Ctrl-C that asyncio lost
FINAL_BATCH = "final"

# Publish: queue one post job and note when it was acknowledged (Redis's clock, the same one deliveries use).
_ENQUEUE = """
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', t[2])
local id = redis.call('XADD', KEYS[1], '*', 'owner', ARGV[1], 'post', ARGV[2], 'author', ARGV[3])
redis.call('HSET', KEYS[2], 'enqueued_us', now, 'author', ARGV[3], 'job', id)
redis.call('EXPIRE', KEYS[2], ARGV[4])
return id
"""

# Split: queue batch jobs for followers after ARGV[4], only if the post job is still open and nobody else moved its
# split on; then record the new position. ARGV[8]: the post's author; from 9 on: (last follower id, count, ids) per
# batch.
_SPLIT = """
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return -1 end
if (redis.call('GET', KEYS[3]) or '-1') ~= ARGV[4] then return -2 end
local batches, followers, last = 0, 0, ARGV[4]
for i = 9, #ARGV, 3 do
  redis.call('XADD', KEYS[2], '*', 'owner', ARGV[2], 'post', ARGV[3], 'author', ARGV[8], 'n', ARGV[i + 1],
    'ids', ARGV[i + 2])
  batches = batches + 1
  followers = followers + tonumber(ARGV[i + 1])
  last = ARGV[i]
end
redis.call('SET', KEYS[3], last, 'EX', ARGV[5])
-- The splitter is alive: reset the job's idle time so nobody claims it while it works.
redis.call('XCLAIM', KEYS[1], ARGV[6], ARGV[7], 0, ARGV[1], 'JUSTID')
redis.call('HINCRBY', KEYS[4], 'batches', batches)
redis.call('HINCRBY', KEYS[4], 'followers', followers)
return batches
"""

# Deliver one batch: acknowledge its entry (a batch job, or the post job itself for the split's final batch), write
# the post into every listed timeline with the cap kept, and account for it. Timeline keys are built here from their
# prefix so each follower id crosses the wire once; that makes the script touch keys it does not declare, which a
# Redis Cluster refuses: there the worker writes the timelines by shard first and passes what it wrote (ARGV[23]).
# A follower is skipped when its edge is pulled (ARGV[17], the author, is in its set under prefix ARGV[18]: adaptive),
# or moved to pull now by the rule (ARGV[20] the cost ratio, ARGV[21] '1' for declared rates, ARGV[22] the half-life,
# ARGV[19] the author-timeline prefix), or when it has not read within ARGV[15] seconds (its activity hash under
# prefix ARGV[16]: an active window).
_DELIVER = (
    NOW_LUA
    + ACTIVE_LUA
    + EDGE_LUA
    + """
local final = ARGV[8] == '1'
if final and (redis.call('GET', KEYS[5]) or '-1') ~= ARGV[9] then return -2 end
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return -1 end
redis.call('XDEL', KEYS[1], ARGV[2])
local post = ARGV[4]
local added, inactive, pulled, flipped = 0, 0, 0, 0
if ARGV[23] ~= nil then
  -- On a Redis Cluster the worker has written the timelines itself, shard by shard (their keys are in other slots):
  -- this call only acknowledges and accounts, with the entries it wrote.
  added = tonumber(ARGV[23])
else
  -- Arguments stay strings: converting a Lua number for every call costs Redis measurable time.
  local prefix, keep = ARGV[3], tostring(-(tonumber(ARGV[5]) + 1))
  local window, author, acts, sets = tonumber(ARGV[15]), ARGV[17], ARGV[16], ARGV[18]
  local at = now()
  local cutoff = nil
  if window > 0 then cutoff = at - window end
  local ratio, declared, half, cap = tonumber(ARGV[20]), ARGV[21] == '1', tonumber(ARGV[22]), tonumber(ARGV[5])
  local posts, ids = 0, {}
  if author ~= '' then
    local _, p = rates(acts .. author .. '}', declared, half, at)
    posts = p
    -- Only an author whose timeline is built can be pulled: its posts must be readable from there.
    if posts > 0 and redis.call('EXISTS', ARGV[19] .. author .. '}') == 0 then posts = 0 end
    if posts > 0 then ids = redis.call('ZRANGEBYSCORE', ARGV[19] .. author .. '}', '(0', '+inf') end
  end
  for u in string.gmatch(ARGV[6], '%d+') do
    if author ~= '' and redis.call('SISMEMBER', sets .. u .. '}', author) == 1 then
      pulled = pulled + 1
    elseif posts > 0 and pull_edge(acts .. u .. '}', sets .. u .. '}', prefix .. u .. '}', author, posts, ratio,
        declared, half, at, ids, cap) then
      pulled = pulled + 1
      flipped = flipped + 1
    elseif cutoff ~= nil and not active(acts .. u .. '}', cutoff) then
      inactive = inactive + 1
    else
      local key = prefix .. u .. '}'
      if redis.call('ZADD', key, post, post) == 1 then
        added = added + 1
        redis.call('ZREMRANGEBYRANK', key, '0', keep)
      end
    end
  end
end
local n = tonumber(ARGV[7])
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', t[2])
local report, owner = KEYS[2], ARGV[10]
if inactive > 0 then
  redis.call('HINCRBY', report, 'skipped', inactive)
  redis.call('HINCRBY', KEYS[4], 'skipped:' .. owner, inactive)
end
if pulled > 0 then
  redis.call('HINCRBY', report, 'pulled', pulled)
  redis.call('HINCRBY', KEYS[4], 'pulled:' .. owner, pulled)
end
if flipped > 0 then redis.call('HINCRBY', KEYS[4], 'flipped:' .. owner, flipped) end
if n > 0 then
  redis.call('HINCRBY', report, 'delivered', n)
  redis.call('HINCRBY', report, 'written', added)
  redis.call('HINCRBY', report, 'delivered_batches', 1)
  redis.call('HSET', report, 'last_us', now)
  redis.call('RPUSH', KEYS[3], now .. ':' .. n)
  redis.call('EXPIRE', KEYS[3], ARGV[11])
  redis.call('HINCRBY', KEYS[4], 'delivered:' .. owner, n)
  redis.call('HINCRBY', KEYS[4], 'written:' .. owner, added)
  redis.call('HINCRBY', KEYS[4], 'batches:' .. owner, 1)
end
if final then
  if n > 0 then redis.call('HINCRBY', report, 'batches', 1) end
  redis.call('HINCRBY', report, 'followers', n)
  redis.call('HSET', report, 'split_done', '1')
  redis.call('DEL', KEYS[5])
end
local r = redis.call('HMGET', report, 'split_done', 'batches', 'delivered_batches', 'completed_us', 'last_us')
if r[1] == '1' and not r[4] and tonumber(r[2] or '0') == tonumber(r[3] or '0') then
  redis.call('HSET', report, 'completed_us', r[5] or now)
  redis.call('HINCRBY', KEYS[4], 'posts:' .. owner, 1)
  redis.call('PUBLISH', ARGV[13], owner .. ':' .. post)
end
redis.call('EXPIRE', report, ARGV[11])
if n > 0 then redis.call('PUBLISH', ARGV[12], owner .. ':' .. post .. ':' .. n) end
if redis.call('XLEN', KEYS[6]) + redis.call('XLEN', KEYS[7]) == 0 then redis.call('PUBLISH', ARGV[14], 'idle') end
return added
"""
)


# On a Redis Cluster, before a worker writes a batch's timelines itself: is the entry still pending (KEYS[1] its
# stream, ARGV[1] the group, ARGV[2] its id) and, for a split's final batch (ARGV[3] '1'), does the split still stand
# at ARGV[4] (KEYS[2])? Returns 1, or -1 / -2 as _DELIVER would, so a refused delivery writes nothing.
_STILL_DUE = """
if ARGV[3] == '1' and (redis.call('GET', KEYS[2]) or '-1') ~= ARGV[4] then return -2 end
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then return -1 end
return 1
"""


# Forget consumers that hold nothing and have not been seen for ARGV[2] ms (workers that died): checked and deleted
# in one call, so an entry can never be pending on a consumer as it is deleted.
_FORGET_IDLE = """
local removed = 0
for _, stream in ipairs(KEYS) do
  if redis.call('EXISTS', stream) == 1 then
    local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', stream, ARGV[1])
    if ok then
      for _, c in ipairs(consumers) do
        local f = {}
        for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
        if f['pending'] == 0 and f['idle'] >= tonumber(ARGV[2]) then
          redis.call('XGROUP', 'DELCONSUMER', stream, ARGV[1], f['name'])
          removed = removed + 1
        end
      end
    end
  end
end
return removed
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry a worker has read: which stream, its id, and its fields (decoded)."""

    stream: str
    id: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Batch:
    """Followers for one Lua call: the last id (where a resumed split goes on from), how many, and the ids."""

    last: int
    count: int
    ids: str


class FanoutQueue:
    """The fan-out streams and their Lua calls, for one namespace (``settings.prefix``)."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        #: Timeline shard tags on a Redis Cluster (None on one server): a delivery then writes the timelines shard by
        #: shard before its script acknowledges and accounts (the queue's keys share one slot, the timelines do not).
        self.tags = shard_tags(redis)
        base = queue_prefix(settings.prefix, self.tags is not None)
        self.jobs = base + "jobs"
        self.batches = base + "batches"
        self.stats = fanout_stats_key(settings.prefix, self.tags is not None)
        #: Pub/sub channels: every delivered batch, every completed post, and "the queue just became empty".
        self.delivered_channel = base + "delivered"
        self.completed_channel = base + "completed"
        self.idle_channel = base + "idle"
        self.ready_channel = base + "ready"
        self._base = base
        self._enqueue = redis.register_script(_ENQUEUE)
        self._split = redis.register_script(_SPLIT)
        self._deliver = redis.register_script(_DELIVER)
        self._still_due = redis.register_script(_STILL_DUE)
        self._forget_idle = redis.register_script(_FORGET_IDLE)
        self._group_ready = False
        self._owner_writers: dict[str, tuple[Timelines, EdgeRule]] = {}

    # -- per-post keys ----------------------------------------------------------------------------------------
    def report_key(self, owner: str, post_id: int | str) -> str:
        """Hash with the post's delivery accounting for one owner."""
        return f"{self._base}report:{owner}:{post_id}"

    def lag_key(self, owner: str, post_id: int | str) -> str:
        """List of ``delivered_us:followers`` records, one per delivered batch."""
        return f"{self._base}lag:{owner}:{post_id}"

    def progress_key(self, owner: str, post_id: int | str) -> str:
        """The last follower id the post's split has queued (absent before the split starts and after it ends)."""
        return f"{self._base}progress:{owner}:{post_id}"

    # -- producing --------------------------------------------------------------------------------------------
    async def ensure_group(self) -> None:
        """Create both streams and the consumer group if missing (from id 0, so nothing queued earlier is skipped)."""
        for stream in (self.jobs, self.batches):
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._group_ready = True

    async def enqueue(self, owner: str, post_id: int, author_id: int) -> str:
        """Queue the fan-out of one post into ``owner``'s timelines; returns the job's stream id."""
        job = await self._enqueue(
            keys=[self.jobs, self.report_key(owner, post_id)],
            args=[owner, post_id, author_id, self.settings.fanout_report_ttl_s],
        )
        return _text(job)

    # -- consuming --------------------------------------------------------------------------------------------
    async def read(self, consumer: str, count: int, block_ms: int | None, *, own: bool = False) -> list[Entry]:
        """New entries for ``consumer`` (batches first), or with ``own`` those it already holds pending."""
        start = "0" if own else ">"
        try:
            reply = await self.redis.xreadgroup(
                GROUP, consumer, {self.batches: start, self.jobs: start}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc) and "no longer exists" not in str(exc):
                raise
            await self.ensure_group()  # the namespace was reset under a running worker
            return []
        return [_entry(stream, eid, fields) for stream, entries in reply or () for eid, fields in entries if fields]

    async def claim(self, consumer: str, count: int) -> list[Entry]:
        """Entries left pending longer than ``fanout_claim_idle_ms`` by any consumer, now owned by ``consumer``."""
        claimed: list[Entry] = []
        for stream in (self.batches, self.jobs):
            start = "0-0"
            while len(claimed) < count:
                try:
                    reply = await self.redis.xautoclaim(
                        stream, GROUP, consumer, self.settings.fanout_claim_idle_ms, start, count=count
                    )
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    await self.ensure_group()
                    return claimed
                start, entries = _text(reply[0]), reply[1]
                claimed += [_entry(stream, eid, fields) for eid, fields in entries if fields]
                if start == "0-0":
                    break
        return claimed

    async def split(self, job: Entry, consumer: str, after: int, batches: list[Batch]) -> int:
        """Queue batch jobs for a post job whose split stands at ``after``.

        Returns the batches queued, or a negative number when the job is finished (-1) or another worker has moved
        its split on (-2): this worker must then let it go.
        """
        owner, post = job.fields["owner"], job.fields["post"]
        args: list[Any] = [job.id, owner, post, after, self.settings.fanout_report_ttl_s, GROUP, consumer]
        args.append(job.fields.get("author", ""))
        for b in batches:
            args += [b.last, b.count, b.ids]
        keys = [self.jobs, self.batches, self.progress_key(owner, post), self.report_key(owner, post)]
        return int(await self._split(keys=keys, args=args))

    async def deliver(
        self, entry: Entry, batch: Batch, *, final_after: int | None = None, per_edge: bool = False
    ) -> int:
        """Write one batch into its followers' timelines and acknowledge its entry, in one Lua call.

        ``final_after`` marks the split's last batch, delivered by the splitter itself against the post job (the
        split must still stand there). Returns entries written (ZADD replies), or -1 when the entry was already
        acknowledged (someone else delivered it: nothing changes) and -2 when another worker owns the split.
        ``per_edge``: the owner decides push or pull per follow edge (adaptive), so followers whose edge is pulled
        are skipped; with an active window, so are followers who have not read within it.
        """
        owner, post = entry.fields["owner"], entry.fields["post"]
        author = entry.fields.get("author", "") if per_edge else ""
        final = final_after is not None
        keys = [
            entry.stream,
            self.report_key(owner, post),
            self.lag_key(owner, post),
            self.stats,
            self.progress_key(owner, post),
            self.jobs,
            self.batches,
        ]
        args = [
            GROUP,
            entry.id,
            home_key_prefix(self.settings.prefix, owner),
            post,
            self.settings.timeline_cap,
            batch.ids,
            batch.count,
            int(final),
            -1 if final_after is None else final_after,
            owner,
            self.settings.fanout_report_ttl_s,
            self.delivered_channel,
            self.completed_channel,
            self.idle_channel,
            self.settings.active_window_s,
            owner_key_prefix(self.settings.prefix, owner, "act"),
            author,
            owner_key_prefix(self.settings.prefix, owner, "celebs"),
            owner_key_prefix(self.settings.prefix, owner, "author"),
            self.settings.cost_ratio,
            int(self.settings.rate_source == "declared"),
            self.settings.rate_half_life_s,
        ]
        if self.tags is not None:  # the ids cross the wire to the shards instead
            due = await self._still_due(keys=[entry.stream, keys[4]], args=[GROUP, entry.id, int(final), args[8]])
            if int(due) < 0:
                return int(due)
            args[5] = ""
            args.append(await self._write_by_shard(owner, int(post), batch, author))
        return int(await self._deliver(keys=keys, args=args))

    async def _write_by_shard(self, owner: str, post: int, batch: Batch, author: str) -> int:
        """On a Redis Cluster: write one batch into its followers' timelines shard by shard (declared keys; the same
        skips as the delivery script's: pulled edges, the active window); returns entries written. Before the
        acknowledgement, so a worker that dies in between leaves the batch to be delivered again (idempotent)."""
        timelines, rule = self._writers(owner)
        users = [int(u) for u in batch.ids.split(",") if u]
        return await timelines.add_to_many(users, post, rule=rule if author else None, author=int(author or 0))

    def _writers(self, owner: str) -> tuple[Timelines, EdgeRule]:
        """The owner's timelines on the cluster and its per-edge rule (used for batches that name an author), made
        once per owner: every batch a worker delivers would otherwise build them again."""
        if owner not in self._owner_writers:
            s = self.settings
            authors, sets = owner_key_prefix(s.prefix, owner, "author"), owner_key_prefix(s.prefix, owner, "celebs")
            rule = EdgeRule(sets, authors, s.cost_ratio, s.rate_source == "declared", s.rate_half_life_s)
            timelines = Timelines(
                self.redis, s.prefix, owner, s.timeline_cap, window_s=s.active_window_s, tags=self.tags
            )
            self._owner_writers[owner] = timelines, rule
        return self._owner_writers[owner]

    async def discard(self, entry: Entry) -> None:
        """Acknowledge and delete an entry without delivering it (one that names no valid job)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(entry.stream, GROUP, entry.id)
            pipe.xdel(entry.stream, entry.id)
            await pipe.execute()
        if await self.outstanding() == 0:
            await self.redis.publish(self.idle_channel, "idle")

    async def discard_posts(self, post_ids: set[int]) -> int:
        """Acknowledge and delete every queued or pending job of these posts (a run being undone left them undelivered);
        returns entries removed. A worker holding one of them finds it gone and writes nothing (its delivery's XACK
        answers 0).
        """
        wanted = {str(p) for p in post_ids}
        removed = 0
        for stream in (self.jobs, self.batches):
            start = "-"
            while entries := await self.redis.xrange(stream, start, "+", count=1_000):
                doomed = [eid for eid, fields in entries if _text(fields.get(b"post", b"")) in wanted]
                if doomed:
                    async with self.redis.pipeline(transaction=True) as pipe:
                        pipe.xack(stream, GROUP, *doomed)
                        pipe.xdel(stream, *doomed)
                        await pipe.execute()
                    removed += len(doomed)
                start = "(" + _text(entries[-1][0])
        if removed and await self.outstanding() == 0:
            await self.redis.publish(self.idle_channel, "idle")
        return removed

    async def progress(self, owner: str, post_id: int | str) -> int:
        """Where the post's split stands (-1 before it starts)."""
        value = await self.redis.get(self.progress_key(owner, post_id))
        return -1 if value is None else int(value)

    async def forget(self, consumer: str) -> None:
        """Remove a consumer that holds nothing pending from the group (a worker leaving cleanly)."""
        for stream in (self.jobs, self.batches):
            try:
                await self.redis.xgroup_delconsumer(stream, GROUP, consumer)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise

    async def forget_idle(self, idle_ms: int) -> int:
        """Remove consumers that hold nothing and were not seen for ``idle_ms`` (dead workers); returns how many."""
        return int(await self._forget_idle(keys=[self.jobs, self.batches], args=[GROUP, idle_ms]))

    # -- waiting ----------------------------------------------------------------------------------------------
    async def outstanding(self) -> int:
        """Jobs queued or pending (acknowledged entries are deleted, so this is the streams' total length)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.jobs)
            pipe.xlen(self.batches)
            jobs, batches = await pipe.execute()
        return int(jobs) + int(batches)

    async def drain(self, max_wait_s: float = 60.0, wait_flag: str = "--timeout") -> None:
        """Wait until nothing is queued or pending, woken by the last delivery's notice (no polling loop).

        Raises :class:`FanoutError` after ``max_wait_s`` seconds with work left, naming the likely fix (the caller's
        flag for waiting longer is ``wait_flag``).
        """
        deadline = time.monotonic() + max_wait_s
        pubsub = self.redis.pubsub()
        try:
            # Subscribe before looking, so a queue emptied in between still wakes us.
            await pubsub.subscribe(self.idle_channel)
            while (left := await self.outstanding()) > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FanoutError(
                        f"the fan-out queue still holds {left} job(s) after {max_wait_s:g}s: start a worker"
                        f" (`fanout worker`) or wait longer ({wait_flag})"
                    )
                # In slices, so a Ctrl-C that asyncio lost is still seen (see targets.eventloop).
                await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(remaining, CANCEL_CHECK_S))
                raise_if_cancelled()
        finally:
            await pubsub.aclose()


def consumer_name() -> str:
    """A consumer name unique to this process and call (host, pid, random suffix)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(stream: bytes | str, eid: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    return Entry(_text(stream), _text(eid), {_text(k): _text(v) for k, v in fields.items()})
