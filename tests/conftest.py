"""Shared fixtures: real Redis and Postgres, in a namespace of the test session's own.

Every session draws a fresh key prefix and schema, so parallel runs on one machine never see each other's data, and
drops them at the end. Nothing outside that namespace is touched (tests/test_namespace.py checks it).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from devservers.manager import resolve_urls
from targets.config import Settings
from targets.stores.connections import Stores, connect_redis

SESSION_TAG = f"t{os.getpid()}_{uuid.uuid4().hex[:8]}"


def namespace_settings(**changes: object) -> Settings:
    """Settings for the configured servers with this session's namespace (``changes`` override fields)."""
    redis_url, database_url = resolve_urls(os.environ.get("FANOUT_REDIS_URL"), os.environ.get("FANOUT_DATABASE_URL"))
    base = Settings.from_env(
        redis_url=redis_url,
        database_url=database_url,
        prefix=f"fanout_{SESSION_TAG}:",
        schema=f"fanout_{SESSION_TAG}",
    )
    return base.with_(**changes) if changes else base


@pytest.fixture
async def stores() -> AsyncIterator[Stores]:
    """Connected stores on an empty namespace, dropped after the test."""
    s = await Stores.connect(namespace_settings())
    await s.reset()
    try:
        yield s
    finally:
        await s.drop()
        await s.close()


@pytest.fixture(scope="session", autouse=True)
def outside_namespace_sentinels() -> Iterator[None]:
    """A Redis key and a Postgres table outside the harness namespace, created before every test and checked after.

    If any code path of the whole session deletes or changes them (a FLUSHDB, a too-wide SCAN pattern, a DROP of
    the wrong schema), the session ends with an error here.
    """
    settings = namespace_settings()
    key = f"outside_{SESSION_TAG}"  # shares no prefix with the namespace
    near_key = settings.prefix.rstrip(":") + "_outside"  # shares all but the separator
    table = f"public.outside_{SESSION_TAG}"

    async def create() -> None:
        client = await connect_redis(settings.redis_url, cluster=settings.redis_cluster > 0)
        await client.set(key, b"keep")
        await client.set(near_key, b"keep")
        await client.aclose()
        conn = await asyncpg.connect(settings.database_url)
        await conn.execute(f"CREATE TABLE {table} (v text)")
        await conn.execute(f"INSERT INTO {table} VALUES ('keep')")
        await conn.close()

    async def check_and_remove() -> tuple[list[bytes | None], list[str]]:
        client = await connect_redis(settings.redis_url, cluster=settings.redis_cluster > 0)
        values = [await client.get(key), await client.get(near_key)]
        await client.delete(key, near_key)
        await client.aclose()
        conn = await asyncpg.connect(settings.database_url)
        rows = [r["v"] for r in await conn.fetch(f"SELECT v FROM {table}")]
        await conn.execute(f"DROP TABLE {table}")
        await conn.close()
        return values, rows

    asyncio.run(create())
    yield
    values, rows = asyncio.run(check_and_remove())
    assert values == [b"keep", b"keep"], f"a Redis key outside the namespace was changed: {values}"
    assert rows == ["keep"], f"a Postgres table outside the namespace was changed: {rows}"
