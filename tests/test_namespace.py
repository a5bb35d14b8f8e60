"""The harness touches only its own namespace: its key prefix and its schema."""

from __future__ import annotations

import re
from pathlib import Path

from targets.stores.connections import Stores

ROOT = Path(__file__).resolve().parent.parent
# A client method call, the command named in a string (execute_command("FLUSHDB")), or redis-cli with it.
FLUSH_USE = r"\.flush(db|all)\s*\(|[\"']flush(db|all)[\"']|redis-cli[^\n]*flush"


async def test_reset_and_drop_leave_everything_else(stores: Stores) -> None:
    prefix = stores.settings.prefix  # e.g. "fanout_t123_abcd:"
    inside = [f"{prefix}push:home:{{1}}", f"{prefix}post:{{2}}"]
    # Keys that a sloppy pattern would also match: same stem without the separator, glob characters.
    outside = [prefix.rstrip(":") + "x:home", prefix.rstrip(":") + "_", "*" + prefix]
    for key in inside + outside:
        await stores.redis.set(key, b"v")
    other_schema = stores.settings.schema + "_other"
    await stores.pg.execute(f"CREATE SCHEMA {other_schema}; CREATE TABLE {other_schema}.t (v int)")
    try:
        await stores.reset()
        assert [await stores.redis.exists(k) for k in inside] == [0, 0]
        await stores.drop()
        assert [await stores.redis.exists(k) for k in outside] == [1, 1, 1]
        assert await stores.pg.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{other_schema}.t")
        assert not await stores.pg.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", stores.settings.schema
        )
    finally:
        await stores.redis.delete(*outside)
        await stores.pg.execute(f"DROP SCHEMA {other_schema} CASCADE")


def test_no_code_path_flushes_redis() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("targets", "graphs", "bench")
        if (ROOT / folder).exists()
        for path in (ROOT / folder).rglob("*.py")
        if re.search(FLUSH_USE, path.read_text(), re.IGNORECASE)
    ]
    assert offenders == []
