"""What a benchmark measures besides the driver's timings: write amplification, server counters, memory.

Latencies are recorded in the one histogram convention of :mod:`targets.histograms`. Store costs come from the
servers' own counters (Redis INFO commandstats, PostgreSQL pg_stat_* of the harness schema) with the harness's exact
client-side counts beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from targets.stores.connections import Stores
from targets.stores.counters import StoreCounters
from targets.stores.server_info import cpu_seconds, run_ids, summed_info


# -- write amplification --------------------------------------------------------------------------------------------
def write_amplification(entries_written: int, posts: int) -> float | None:
    """Timeline entries written per post (None with no posts): ``entries_written`` as the targets counted them."""
    return round(entries_written / posts, 3) if posts else None


# -- the servers' own counters --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerCounters:
    """A snapshot of the servers' cumulative counters (and of the harness's own client-side counts)."""

    redis_calls: dict[str, int]
    pg_rows_read: int
    pg_rows_written: int
    client: StoreCounters
    #: Redis INFO used_cpu_sys + used_cpu_user: CPU seconds the server spent (for every client), cumulative.
    redis_cpu_s: float = 0.0
    #: Which server process counted: Redis's run_id and PostgreSQL's postmaster start time. A restart in between
    #: starts the counters again from zero (Postgres's crash recovery resets its statistics), so deltas across it are
    #: not figures of the run.
    redis_run_id: str = ""
    pg_started: str = ""

    def since(self, earlier: ServerCounters, operations: int) -> dict[str, Any]:
        """The ``store_counters`` block of a result: deltas since ``earlier``, totals and per operation.

        Redis counts are server-wide (INFO commandstats, including commands run inside Lua scripts and other
        clients of the same server); Postgres rows are the harness schema's tables only (pg_stat_user_tables and
        pg_stat_user_indexes: rows and index entries returned, rows inserted, updated or deleted).
        """
        calls = {
            cmd: n - earlier.redis_calls.get(cmd, 0)
            for cmd, n in self.redis_calls.items()
            if n - earlier.redis_calls.get(cmd, 0) > 0
        }
        redis_commands = sum(calls.values())
        rows_read = max(0, self.pg_rows_read - earlier.pg_rows_read)
        rows_written = max(0, self.pg_rows_written - earlier.pg_rows_written)
        client = self.client.since(earlier.client)
        cpu_s = max(0.0, self.redis_cpu_s - earlier.redis_cpu_s)

        def per_op(total: float) -> float | None:
            return round(total / operations, 3) if operations else None

        block: dict[str, Any] = {
            "operations": operations,
            "redis_commands": redis_commands,
            "redis_commands_per_op": per_op(redis_commands),
            "redis_commandstats": dict(sorted(calls.items(), key=lambda kv: -kv[1])),
            "pg_rows_read": rows_read,
            "pg_rows_written": rows_written,
            "pg_rows_read_per_op": per_op(rows_read),
            "pg_rows_written_per_op": per_op(rows_written),
            "redis_cpu_s": round(cpu_s, 6),
            "redis_cpu_us_per_op": per_op(cpu_s * 1e6),
            "client": asdict(client),
        }
        # A server that restarted counted from zero again: its figures are withheld and named, never printed as 0.
        invalid = {}
        if self.redis_run_id != earlier.redis_run_id:
            invalid["redis"] = (
                "a Redis server restarted (or a cluster primary failed over) during the run: its INFO counters "
                "started again from zero"
            )
            redis_keys = (
                "redis_commands",
                "redis_commands_per_op",
                "redis_commandstats",
                "redis_cpu_s",
                "redis_cpu_us_per_op",
            )
            for key in redis_keys:
                block[key] = None
        if self.pg_started != earlier.pg_started:
            invalid["postgres"] = "PostgreSQL restarted during the run: crash recovery reset its statistics"
            for key in ("pg_rows_read", "pg_rows_written", "pg_rows_read_per_op", "pg_rows_written_per_op"):
                block[key] = None
        if invalid:
            block["invalid"] = invalid
        return block


_PG_ROWS = """
SELECT
  (SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_user_tables WHERE schemaname = $1)
  + (SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes WHERE schemaname = $1) AS rows_read,
  (SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables WHERE schemaname = $1)
    AS rows_written,
  pg_postmaster_start_time() AS started
"""


async def flush_pg_stats(stores: Stores) -> None:
    """Make every pooled connection publish its pending table statistics now (PostgreSQL >= 15).

    Backends report table statistics lazily (at most once a second, or when idle for a while), so without this a
    snapshot taken right after a run misses part of it. Older servers report within about half a second anyway.
    """
    async with stores.pg.acquire() as conn:
        if int(await conn.fetchval("SHOW server_version_num")) < 150000:
            return
    idle = stores.pg.get_idle_size()
    conns = [await stores.pg.acquire() for _ in range(max(1, idle))]
    try:
        for conn in conns:
            await conn.execute("SELECT pg_stat_force_next_flush()")
    finally:
        for conn in conns:
            await stores.pg.release(conn)


async def server_counters(stores: Stores) -> ServerCounters:
    """The servers' counters now: Redis calls per command and CPU, rows read and written in the harness schema."""
    await flush_pg_stats(stores)
    stats = await summed_info(stores.redis, "commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items() if isinstance(v, dict)}
    cpu_s = cpu_seconds(await summed_info(stores.redis, "cpu"))
    run_id = await run_ids(stores.redis)
    row = await stores.pg.fetchrow(_PG_ROWS, stores.settings.schema)
    assert row is not None
    return ServerCounters(
        calls,
        int(row["rows_read"]),
        int(row["rows_written"]),
        stores.counters.snapshot(),
        redis_cpu_s=cpu_s,
        redis_run_id=run_id,
        pg_started=str(row["started"]),
    )


# -- memory ---------------------------------------------------------------------------------------------------------
async def redis_used_memory(stores: Stores) -> int:
    """Redis INFO used_memory, in bytes (the whole server's)."""
    return int((await summed_info(stores.redis, "memory"))["used_memory"])


async def keys_memory(stores: Stores, keys: Sequence[str]) -> int:
    """Bytes these keys take in Redis (MEMORY USAGE, one pipeline; a missing key counts 0)."""
    if not keys:
        return 0
    async with stores.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        return sum(int(v or 0) for v in await pipe.execute())


async def pg_table_bytes(stores: Stores) -> dict[str, int]:
    """pg_total_relation_size (table, indexes, TOAST) of every table in the harness schema."""
    rows = await stores.pg.fetch(
        "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1",
        stores.settings.schema,
    )
    return {r["relname"]: int(r["bytes"]) for r in rows}


async def timelines_bytes(stores: Stores, timeline_keys: Sequence[str], users: int) -> int:
    """Bytes all ``users`` home timelines of a strategy take, scaled from MEMORY USAGE of the sampled keys."""
    if not timeline_keys:
        return 0
    return round(await keys_memory(stores, timeline_keys) * users / len(timeline_keys))


async def memory(
    stores: Stores, used_memory_before: int | None = None, *, timelines: tuple[Sequence[str], int] | None = None
) -> dict[str, Any]:
    """The ``memory`` block of a result (with the growth when the earlier ``used_memory`` is given).

    ``timelines``: (a sample of the strategy's timeline keys, the number of users) adds ``timelines_bytes``, the
    strategy's own timelines, which the server-wide used_memory cannot separate from other clients' keys.
    """
    used = await redis_used_memory(stores)
    block: dict[str, Any] = {"redis_used_memory_bytes": used, "pg_table_bytes": await pg_table_bytes(stores)}
    if used_memory_before is not None:
        block["redis_used_memory_growth_bytes"] = used - used_memory_before
    if timelines is not None:
        block["timelines_bytes"] = await timelines_bytes(stores, *timelines)
    return block
