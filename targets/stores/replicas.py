"""PostgreSQL streaming replicas: where reads may go, how far behind they are, and waiting until they caught up.

With ``--read-from replica`` the timeline reads computed in Postgres (pull's pages, hybrid's and adaptive's reads
from Postgres, user timelines) go to the replicas in turn (:class:`RoundRobin`); writes, and the reads that must see
them (fan-out's follower lists, hydrating posts a timeline names, rebuilds), stay on the primary. A replica is behind
the primary by its replay lag: :class:`LagSampler` samples it, as the primary measures it (``pg_stat_replication``),
and :func:`wait_replayed` waits until every replica has replayed the primary's current WAL position, after which a
replica's pages are the primary's.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from targets.errors import FanoutError
from targets.histograms import new_histogram, record_seconds, summary

#: How often the lag is sampled during a load.
LAG_SAMPLE_S = 0.1
#: How often a replica's replay position is polled while waiting for it.
REPLAY_POLL_S = 0.005


class RoundRobin:
    """The replicas' pools, one query each in turn (the part of :class:`asyncpg.Pool` that reads use)."""

    def __init__(self, pools: Sequence[asyncpg.Pool]) -> None:
        if not pools:
            raise ValueError("no replica pools")
        self.pools = list(pools)
        self._turn = itertools.cycle(self.pools)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """``fetch`` on the next replica."""
        return await next(self._turn).fetch(query, *args)


async def check_replica(pool: asyncpg.Pool, where: str) -> None:
    """Raise :class:`FanoutError` unless the server of ``pool`` is a standby in recovery (a streaming replica)."""
    if not await pool.fetchval("SELECT pg_is_in_recovery()"):
        raise FanoutError(
            f"{where} is not a streaming replica (pg_is_in_recovery() is false): pass standbys of the primary in "
            "--replica-urls, or start some with `fanout up --pg-replicas 1`"
        )


async def wait_replayed(primary: asyncpg.Pool, replicas: Sequence[asyncpg.Pool], within_s: float = 60.0) -> float:
    """Wait until every replica has replayed the primary's WAL up to its position now; returns the seconds waited.

    Raises :class:`FanoutError` when a replica has not caught up within ``within_s`` seconds.
    """
    if not replicas:
        return 0.0
    began = time.perf_counter()
    lsn = await primary.fetchval("SELECT pg_current_wal_lsn()")
    for i, pool in enumerate(replicas, 1):
        while not await pool.fetchval("SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", lsn):
            if time.perf_counter() - began > within_s:
                raise FanoutError(
                    f"replica {i} has not replayed the primary's WAL position {lsn} within {within_s:g}s: check that "
                    "it streams from this primary (pg_stat_replication)"
                )
            await asyncio.sleep(REPLAY_POLL_S)  # polling a server-side position, with a deadline
    return time.perf_counter() - began


class LagSampler:
    """Samples the replicas' replay lag on the primary while a load runs.

    ``replay_lag`` is the primary's own measure: the time from a WAL flush on the primary to the standby's report
    that it replayed it. The primary leaves it NULL while no WAL is written (nothing to be behind on); such samples
    are counted as idle, not as zero lag.
    """

    def __init__(self, primary: asyncpg.Pool, replicas: int) -> None:
        self.primary = primary
        self.replicas = replicas
        self.lag = new_histogram()
        self.samples = 0
        self.idle = 0
        self.max_bytes = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling (no-op without replicas)."""
        if self.replicas:
            self._task = asyncio.create_task(self._sample())

    async def stop(self) -> dict[str, Any] | None:
        """Stop sampling; returns the result's ``replica_lag`` block, or None without replicas."""
        if self._task is None:
            return None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        lag = summary(self.lag)
        return {
            "replicas": self.replicas,
            "samples": self.samples,
            "idle_samples": self.idle,
            "failed_samples": self.errors,
            "p50_ms": lag["p50_ms"],
            "p99_ms": lag["p99_ms"],
            "max_ms": lag["max_ms"],
            "max_bytes": self.max_bytes,
            "source": "pg_stat_replication.replay_lag on the primary, every "
            f"{LAG_SAMPLE_S * 1000:g} ms during the load",
        }

    async def _sample(self) -> None:
        while True:
            try:
                rows = await self.primary.fetch(
                    "SELECT extract(epoch FROM replay_lag) AS lag_s,"
                    " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS behind FROM pg_stat_replication"
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                self.errors += 1  # the primary going away is the load's to report; the sample is missing
            else:
                for row in rows:
                    self.samples += 1
                    self.max_bytes = max(self.max_bytes, int(row["behind"] or 0))
                    if row["lag_s"] is None:
                        self.idle += 1
                    else:
                        record_seconds(self.lag, float(row["lag_s"]))
            await asyncio.sleep(LAG_SAMPLE_S)
