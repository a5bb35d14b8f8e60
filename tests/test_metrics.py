"""Metrics: write amplification, and the servers' own counters moving by what a test did."""

from __future__ import annotations

from bench.metrics import memory, server_counters, write_amplification
from targets.stores.connections import Stores


def test_write_amplification() -> None:
    assert write_amplification(0, 0) is None
    assert write_amplification(0, 7) == 0
    assert write_amplification(30_000, 3) == 10_000


async def test_server_counters_move_by_what_was_done(stores: Stores) -> None:
    before = await server_counters(stores)
    await stores.pg.execute("INSERT INTO users (id) SELECT generate_series(1, 50)")
    assert await stores.pg.fetchval("SELECT count(*) FROM users WHERE followee_count = 0") == 50  # a seq scan
    for i in range(20):
        await stores.redis.set(stores.key("metrics", i), i)
    after = await server_counters(stores)
    block = after.since(before, operations=10)

    assert block["pg_rows_written"] == 50  # only this test writes to the session's schema
    assert block["pg_rows_read"] >= 50
    assert block["pg_rows_written_per_op"] == 5.0
    # Redis counts are the whole server's: at least our SETs (other clients may add more).
    assert block["redis_commandstats"].get("set", 0) >= 20
    assert block["redis_commands"] >= 20
    assert block["client"]["redis_commands"] >= 20
    assert block["client"]["pg_queries"] >= 2


async def test_memory_reports_redis_and_every_table(stores: Stores) -> None:
    used = (await memory(stores))["redis_used_memory_bytes"]
    block = await memory(stores, used)
    assert block["redis_used_memory_bytes"] > 0
    assert set(block["pg_table_bytes"]) == {"users", "follows", "posts", "mentions"}
    assert "redis_used_memory_growth_bytes" in block
