"""The disturbance guard: was anything besides the harness loading the machine or the stores during a run?

A benchmark on a shared machine must say when it was disturbed. Around each strategy's measured load (from its start
until its fan-out has drained) :class:`Guard` samples:

- the machine's 1-minute load average (every ``LOAD_SAMPLE_S``; the harness itself, Redis and PostgreSQL count in
  it, so it flags a machine with more runnable work than cores, whoever brought it);
- Redis commands that did not come from the harness: the server's INFO commandstats delta minus what the harness's
  own clients sent (:mod:`targets.stores.counters`) and an allowance for what its fan-out runs inside the server,
  which no client counter sees (Lua calls of the delivery scripts, the workers' stream reads):
  ``FANOUT_COMMANDS_PER_ENTRY`` per timeline entry written, ``FANOUT_COMMANDS_PER_POST`` per post and
  ``WORKER_COMMANDS_PER_S`` per worker and second. Redis 7.0 counts no commands per client, so this is a difference
  of totals, and the commands the harness's own scripts run inside the server are only estimated. So it counts as
  a disturbance only when another client was also *seen* busy (every harness connection is named,
  ``HARNESS_CLIENT_NAME``, and CLIENT LIST, sampled with the load average, shows any other connection that ran a
  command within the last second), or when it exceeds the harness's own commands (a client that came and went
  between two samples);
- PostgreSQL activity outside the namespace: rows read and written (pg_stat_user_tables) in every other schema.

A run is *disturbed* when any of them crosses its threshold (:data:`THRESHOLDS`); the result carries the block per
strategy and round, and the table prints a warning naming the round, the strategy and the figure.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from bench.metrics import flush_pg_stats
from targets.stores.connections import HARNESS_CLIENT_NAME, Stores
from targets.stores.server_info import client_lists, summed_info

LOAD_SAMPLE_S = 0.25
FANOUT_COMMANDS_PER_ENTRY = 2  # ZADD and the trim per follower timeline
FANOUT_COMMANDS_PER_POST = 50  # enqueue, split and per-batch bookkeeping of one post's fan-out job
WORKER_COMMANDS_PER_S = 10  # blocking stream reads and claims of an idle worker


@dataclass(frozen=True)
class Thresholds:
    """When a run counts as disturbed."""

    #: 1-minute load average above this many times the CPU count.
    load_per_cpu: float = 1.0
    #: Redis commands from other clients above this fraction of the harness's own (and at least ``redis_min``).
    redis_fraction: float = 0.05
    redis_min: int = 1_000
    #: Postgres rows outside the namespace above this fraction of the namespace's (and at least ``pg_min``).
    pg_fraction: float = 0.05
    pg_min: int = 1_000


THRESHOLDS = Thresholds()

_PG_ROWS_OUTSIDE = """
SELECT
  coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0) + n_tup_ins + n_tup_upd + n_tup_del)
    FILTER (WHERE schemaname <> $1), 0) AS outside,
  coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0) + n_tup_ins + n_tup_upd + n_tup_del)
    FILTER (WHERE schemaname = $1), 0) AS inside
FROM pg_stat_user_tables
"""


@dataclass(frozen=True)
class _Snapshot:
    redis_commands: int
    client_commands: int
    pg_outside: int
    pg_inside: int


async def _snapshot(stores: Stores) -> _Snapshot:
    await flush_pg_stats(stores)  # our own backends publish theirs; others publish within about a second
    stats = await summed_info(stores.redis, "commandstats")
    calls = sum(int(v["calls"]) for v in stats.values() if isinstance(v, dict))
    row = await stores.pg.fetchrow(_PG_ROWS_OUTSIDE, stores.settings.schema)
    assert row is not None
    # Read after the server's counters, so the two reads above count as the harness's own.
    return _Snapshot(calls, stores.counters.redis_commands, int(row["outside"]), int(row["inside"]))


class Guard:
    """Samples the machine and the stores from :meth:`start` to :meth:`stop` (see the module's description)."""

    def __init__(self, stores: Stores, thresholds: Thresholds = THRESHOLDS) -> None:
        self.stores = stores
        self.thresholds = thresholds
        self._before: _Snapshot | None = None
        self._loads: list[float] = []
        #: Per sample: how many connections that are not the harness's had just run a command.
        self._foreign_active: list[int] = []
        self._sampler: asyncio.Task[None] | None = None
        self._started = 0.0

    async def start(self) -> None:
        """Take the first snapshot and start sampling the load average."""
        self._before = await _snapshot(self.stores)
        self._loads = [os.getloadavg()[0]]
        self._started = asyncio.get_running_loop().time()
        self._sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(LOAD_SAMPLE_S)
            self._loads.append(os.getloadavg()[0])
            try:
                self._foreign_active.append(foreign_active(await client_lists(self.stores.redis)))
            except Exception:  # a Redis restarting mid-run (a fault): this sample says nothing
                pass

    def cancel(self) -> None:
        """Stop sampling without a result (the run was interrupted)."""
        if self._sampler is not None:
            self._sampler.cancel()

    async def stop(self, *, entries_written: int = 0, posts: int = 0, workers: int = 0) -> dict[str, Any]:
        """The ``disturbance`` block of the run: what was sampled, and whether (and why) it was disturbed.

        ``entries_written``, ``posts`` and ``workers`` size the allowance for the fan-out's server-side commands.
        """
        if self._sampler is not None:
            self._sampler.cancel()
        assert self._before is not None, "stop() before start()"
        after = await _snapshot(self.stores)
        self._loads.append(os.getloadavg()[0])
        seconds = asyncio.get_running_loop().time() - self._started
        return assess(
            self._before,
            after,
            self._loads,
            active_samples=self._foreign_active,
            allowance=FANOUT_COMMANDS_PER_ENTRY * entries_written
            + FANOUT_COMMANDS_PER_POST * posts
            + round(WORKER_COMMANDS_PER_S * workers * seconds),
            seconds=seconds,
            thresholds=self.thresholds,
        )


def foreign_active(clients: list[dict[str, Any]]) -> int:
    """How many of CLIENT LIST's connections are not the harness's and ran a command within the last second.

    A replica's replication link (flag ``S``; ``M`` on the replica's side) is the server's own, not another program.
    """
    return sum(
        1
        for c in clients
        if c.get("name") != HARNESS_CLIENT_NAME
        and str(c.get("idle")) == "0"
        and c.get("cmd") not in ("NULL", None)
        and not set(str(c.get("flags", ""))) & {"S", "M"}
    )


def assess(
    before: _Snapshot,
    after: _Snapshot,
    loads: list[float],
    *,
    active_samples: list[int] | None = None,
    allowance: int,
    seconds: float,
    thresholds: Thresholds = THRESHOLDS,
    cpus: int | None = None,
) -> dict[str, Any]:
    """The ``disturbance`` block from two snapshots, the load-average samples and (``active_samples``) how many other
    programs' connections each CLIENT LIST sample saw busy (None: not sampled)."""
    cpus = cpus or os.cpu_count() or 1
    server = max(0, after.redis_commands - before.redis_commands)
    own = max(0, after.client_commands - before.client_commands) + allowance
    foreign = max(0, server - own)
    pg_outside = max(0, after.pg_outside - before.pg_outside)
    pg_inside = max(0, after.pg_inside - before.pg_inside)
    load_max = max(loads)
    reasons = []
    if load_max > thresholds.load_per_cpu * cpus:
        reasons.append(f"load average up to {load_max:.1f} on {cpus} CPUs")
    # None: not sampled (a caller of its own); then the difference of totals decides alone. Unseen, a difference
    # counts only when it exceeds the harness's own work: what the allowance misses is a fraction of that (a client
    # that bursts and leaves between two samples is caught this way).
    seen = None if active_samples is None else sum(1 for n in active_samples if n)
    trusted = seen is None or seen > 0 or foreign > own
    if foreign > max(thresholds.redis_min, thresholds.redis_fraction * own) and trusted:
        reasons.append(f"{foreign:,} Redis commands from other clients (the harness's own: about {own:,})")
    if pg_outside > max(thresholds.pg_min, thresholds.pg_fraction * pg_inside):
        reasons.append(f"{pg_outside:,} Postgres rows outside the namespace (inside: {pg_inside:,})")
    return {
        "seconds": round(seconds, 3),
        "cpu_count": cpus,
        "load_average": {"start": round(loads[0], 2), "max": round(load_max, 2), "end": round(loads[-1], 2)},
        "redis_commands": server,
        "redis_harness_commands": own,
        # The estimate of the harness's server-side fan-out commands inside ``own``: foreign is exact to within it.
        "redis_allowance": allowance,
        "redis_foreign_commands": foreign,
        # CLIENT LIST samples in which another program's connection had just run a command.
        **(
            {"redis_foreign_active_samples": seen, "redis_samples": len(active_samples or [])}
            if seen is not None
            else {}
        ),
        "pg_rows_outside": pg_outside,
        "pg_rows_inside": pg_inside,
        "disturbed": bool(reasons),
        "reasons": reasons,
    }


def warnings(doc: dict[str, Any]) -> list[str]:
    """One line per disturbed run of a result: its round, strategy and what disturbed it (rounds first, if any)."""
    rounds = doc.get("rounds") or [{"round": 1, "strategies": doc["strategies"]}]
    lines = []
    for r in rounds:
        for name, figures in r["strategies"].items():
            block = figures.get("disturbance")
            if block and block.get("disturbed"):
                lines.append(f"disturbed: round {r['round']}, {name}: " + "; ".join(block["reasons"]))
    return lines
