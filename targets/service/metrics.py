"""What the HTTP service counts, kept in Redis inside the namespace so several worker processes add up.

Each process counts in memory and flushes about once a second (and before answering ``GET /metrics``), so a
timeline read costs no extra round trip. Counters go into one hash with HINCRBY; latency histograms follow
:mod:`targets.histograms` (so a post's delivery-lag histogram merges in as it is), each process storing its own
cumulative histogram as a field of a second hash, which the reader merges. Resetting bumps an epoch and deletes both
hashes; a process writes only into the epoch it has seen (one Lua call checks it), restarting its cumulative
histograms when the epoch moved.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections import Counter
from typing import Any

import redis.asyncio as aioredis
from hdrh.histogram import HdrHistogram

from targets.histograms import decode, encode, new_histogram, record_seconds, summary

#: Counters the service keeps (entries_written is the sum of the write path's own ZADD replies).
COUNTERS = (
    "reads",
    "posts",
    "posts_delivered",
    "entries_written",
    "follows",
    "unfollows",
    "client_errors",
    "server_errors",
)
#: Server-side latency histograms: a timeline read, a publish (as acknowledged), a post's whole fan-out (sync:
#: inside the request; async: acknowledgement to last timeline written), and delivery lag over followers (async).
HISTOGRAMS = ("read", "publish", "fanout", "delivery_lag")

# Write the process's deltas and histograms if the epoch is still the one it read; returns the current epoch.
# KEYS: epoch, counters, histograms. ARGV: expected epoch, number of counters, then name/delta pairs, then
# field/encoded-histogram pairs.
_FLUSH = """
local epoch = redis.call('GET', KEYS[1]) or '0'
if epoch ~= ARGV[1] then return epoch end
local n = tonumber(ARGV[2])
for i = 3, 2 + 2 * n, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
for i = 3 + 2 * n, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
return epoch
"""


class ServiceMetrics:
    """One process's view of the service's shared counters and histograms for one strategy."""

    def __init__(self, redis: aioredis.Redis, prefix: str, strategy: str) -> None:
        self.redis = redis
        base = f"{prefix}service:{strategy}:"
        self.keys = [base + "epoch", base + "counters", base + "histograms"]
        self.process = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._flush = redis.register_script(_FLUSH)
        self._epoch: bytes | None = None
        self._pending: Counter[str] = Counter()
        #: Recorded since the last flush, and written so far in the current epoch.
        self._delta = {name: new_histogram() for name in HISTOGRAMS}
        self._total = {name: new_histogram() for name in HISTOGRAMS}
        self._changed: set[str] = set()
        self._lock = asyncio.Lock()

    # -- recording (no I/O) -----------------------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a counter."""
        self._pending[name] += n

    def record(self, name: str, seconds: float) -> None:
        """Record one latency (clamped into the histogram's range)."""
        record_seconds(self._delta[name], seconds)
        self._changed.add(name)

    def merge(self, name: str, hist: HdrHistogram) -> None:
        """Add a whole histogram (µs, same range) recorded elsewhere, e.g. a post's delivery lag over followers."""
        self._delta[name].add(hist)
        self._changed.add(name)

    # -- shared state -----------------------------------------------------------------------------------------
    async def flush(self) -> None:
        """Send what this process counted since its last flush to Redis (two round trips).

        What is recorded while the flush waits on Redis goes into fresh containers, for the next flush.
        """
        async with self._lock:  # the periodic flush and GET /metrics may flush at the same time
            if not self._pending and not self._changed:
                return
            pending, self._pending = self._pending, Counter()
            changed, self._changed = self._changed, set()
            delta = {name: self._delta[name] for name in changed}
            self._delta.update({name: new_histogram() for name in changed})
            try:
                candidates = await self._write(pending, delta)
            except BaseException:
                self._pending.update(pending)  # keep it for the next flush
                for name, hist in delta.items():
                    self._delta[name].add(hist)
                self._changed |= changed
                raise
            self._total.update(candidates)

    async def _write(self, pending: Counter[str], delta: dict[str, HdrHistogram]) -> dict[str, HdrHistogram]:
        """Write counter deltas and updated cumulative histograms into the current epoch; returns the histograms."""
        deltas = [x for name, n in pending.items() if n for x in (name, n)]
        epoch = await self.redis.get(self.keys[0]) or b"0"
        while True:
            if epoch != self._epoch:
                # Reset since we last wrote: our cumulative histograms start again from what is new.
                self._epoch = epoch
                for hist in self._total.values():
                    hist.reset()
            candidates = {}
            for name, hist in delta.items():
                candidates[name] = total = new_histogram()
                total.add(self._total[name])
                total.add(hist)
            fields = [x for name, hist in candidates.items() for x in (f"{name}:{self.process}", encode(hist))]
            written = await self._flush(keys=self.keys, args=[epoch, len(deltas) // 2, *deltas, *fields])
            if written == epoch:
                return candidates
            epoch = written  # reset between our two calls: write into the new epoch instead

    async def reset(self) -> None:
        """Start counting from zero, for every process of the service.

        Other processes notice at their next flush; what they counted since their previous flush (at most one
        flush interval, partly before the reset) is then counted after it, so nothing counted after a reset is lost.
        """
        async with self._lock:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(self.keys[0])
                pipe.unlink(self.keys[1], self.keys[2])
                epoch, _ = await pipe.execute()
            self._epoch = str(epoch).encode()
            self._pending.clear()
            self._changed.clear()
            for hist in (*self._delta.values(), *self._total.values()):
                hist.reset()

    async def snapshot(self) -> dict[str, Any]:
        """Counters, derived ratios, merged latency histograms and Redis memory, as JSON-ready data."""
        await self.flush()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys[1])
            pipe.hgetall(self.keys[2])
            pipe.info("memory")
            raw_counters, raw_hists, memory = await pipe.execute()
        counters = dict.fromkeys(COUNTERS, 0)
        counters.update({k.decode(): int(v) for k, v in raw_counters.items()})
        merged = {name: new_histogram() for name in HISTOGRAMS}
        processes = set()
        for field, encoded in raw_hists.items():
            name, process = field.decode().split(":", 1)
            processes.add(process)
            if name in merged:
                merged[name].add(decode(encoded))
        posts = counters["posts"]
        return {
            "counters": counters,
            "write_amplification": round(counters["entries_written"] / posts, 3) if posts else None,
            "delivery_lag": summary(merged.pop("delivery_lag")),
            "latency": {name: summary(hist) for name, hist in merged.items()},
            "processes": len(processes),
            "redis_memory": {
                "used_memory": int(memory["used_memory"]),
                "used_memory_human": str(memory["used_memory_human"]),
                "used_memory_peak": int(memory["used_memory_peak"]),
            },
        }
