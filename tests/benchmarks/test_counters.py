"""The gate's Postgres row figure counts what each way of running a statement returned or changed, exactly."""

from __future__ import annotations

from targets.stores.connections import Stores


async def test_pg_rows_counts_returned_and_changed_rows(stores: Stores) -> None:
    before = stores.counters.snapshot()
    await stores.pg.copy_records_to_table("users", records=[(u, 0, 0) for u in range(1, 8)])  # 7 copied
    assert await stores.pg.execute("UPDATE users SET follower_count = 1 WHERE id <= 3") == "UPDATE 3"  # 3 changed
    assert len(await stores.pg.fetch("SELECT id FROM users WHERE id > 2")) == 5  # 5 returned
    assert (await stores.pg.fetchrow("SELECT id FROM users WHERE id = 4"))["id"] == 4  # 1
    assert await stores.pg.fetchrow("SELECT id FROM users WHERE id = 99") is None  # 0
    assert await stores.pg.fetchval("SELECT follower_count FROM users WHERE id = 1") == 1  # 1
    assert await stores.pg.fetchval("SELECT NULL::int FROM users WHERE id = 1") is None  # 1: a row holding NULL
    assert await stores.pg.fetchval("SELECT 1 FROM users WHERE id = 99") is None  # 0
    await stores.pg.execute("CREATE TEMP TABLE scratch (v int)")  # no row count: 0
    sent = stores.counters.since(before)
    assert sent.pg_rows == 7 + 3 + 5 + 1 + 1 + 1
