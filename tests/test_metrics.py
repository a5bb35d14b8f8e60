"""Metrics: histograms and write amplification, and the servers' own counters moving by what a test did."""

from __future__ import annotations

from bench.metrics import (
    HIGHEST_US,
    memory,
    merged,
    new_histogram,
    record_seconds,
    server_counters,
    write_amplification,
)
from targets.stores.connections import Stores


def test_record_seconds_clamps_and_counts() -> None:
    hist = new_histogram()
    record_seconds(hist, 0.0)  # below 1 µs: recorded as 1 µs, not dropped
    record_seconds(hist, 0.0025, 3)
    record_seconds(hist, 10 * 3600.0)  # above an hour: recorded at the top
    assert hist.get_total_count() == 5
    assert hist.get_min_value() == 1
    assert abs(hist.get_value_at_percentile(50) - 2500) <= 3
    assert hist.get_max_value() >= HIGHEST_US * 0.999


def test_merged_holds_every_value() -> None:
    a, b = new_histogram(4), new_histogram()
    record_seconds(a, 0.001, 10)
    record_seconds(b, 0.1, 5)
    total = merged([a, b])
    assert total.get_total_count() == 15
    assert abs(total.get_max_value() - 100_000) <= 100


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
    assert set(block["pg_table_bytes"]) == {"users", "follows", "posts"}
    assert "redis_used_memory_growth_bytes" in block
