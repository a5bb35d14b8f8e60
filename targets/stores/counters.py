"""Client-side counts of what the targets send to the stores: exact, and blind to other clients of the servers.

Redis: one round trip per ``send_packed_command`` (a pipeline or a script call is one), one command per
``pack_command``. Postgres: one per statement asyncpg executes (its query logger), which includes the reset the pool
sends when a connection is released: a real round trip, so code that holds a connection for a series of statements
shows fewer. Postgres rows: the rows each statement returned to the client, or the row count an INSERT, UPDATE,
DELETE or COPY reported. The server-side view
(INFO commandstats, pg_stat_*) belongs to the harness's metrics; these counts are what tests and the regression
gate compare, because nothing else on the machine can move them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster


@dataclass
class StoreCounters:
    """Running totals for one :class:`~targets.stores.connections.Stores`."""

    redis_round_trips: int = 0
    redis_commands: int = 0
    pg_queries: int = 0
    pg_rows: int = 0

    def snapshot(self) -> StoreCounters:
        """A copy of the current totals."""
        return StoreCounters(**{f.name: getattr(self, f.name) for f in fields(self)})

    def since(self, earlier: StoreCounters) -> StoreCounters:
        """What was counted after ``earlier`` was taken."""
        return StoreCounters(**{f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)})


def count_redis(client: aioredis.Redis, counters: StoreCounters) -> None:
    """Make every connection ``client`` opens from now on count into ``counters``."""
    pool = client.connection_pool
    pool.connection_class = counting_connection(pool.connection_class, counters)


def count_cluster(client: RedisCluster, counters: StoreCounters) -> None:
    """The same for a cluster client's nodes (those it knows now: call it once it is initialised)."""
    for node in client.get_nodes():
        node.connection_class = counting_connection(node.connection_class, counters)


def counting_connection(base: type[Any], counters: StoreCounters) -> type[Any]:
    """A subclass of the connection class ``base`` that counts commands and round trips into ``counters``."""
    if getattr(base, "counts_into", None) is counters:
        return base

    class CountingConnection(base):  # type: ignore[valid-type, misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            counters.redis_commands += 1
            return super().pack_command(*args)

        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            counters.redis_round_trips += 1
            await super().send_packed_command(command, check_health)

    CountingConnection.counts_into = counters  # type: ignore[attr-defined]
    return CountingConnection


def pg_counting_init(counters: StoreCounters) -> Any:
    """An asyncpg pool ``init`` callback that counts every query of the connection into ``counters``."""

    def on_query(record: Any) -> None:
        counters.pg_queries += 1

    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(on_query)

    return init


#: Command tags whose trailing number is a row count (``INSERT 0 5``, ``UPDATE 2``, ``COPY 100``, ``SELECT 1``).
_ROW_TAGS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "SELECT", "FETCH", "MOVE"})


def _status_rows(status: str) -> int:
    """The row count in a command status (0 for statements that have none, such as ``CREATE TABLE``)."""
    tag, _, rest = status.partition(" ")
    count = rest.rpartition(" ")[2]
    return int(count) if tag in _ROW_TAGS and count.isdigit() else 0


def pg_counting_connection(counters: StoreCounters) -> type[asyncpg.Connection]:
    """An asyncpg connection class (for ``create_pool(connection_class=...)``) that counts rows into ``counters``.

    Each public way of running a statement is wrapped: fetched records count one each, ``execute`` and the COPY
    methods count the rows their status reports.
    """

    class CountingConnection(asyncpg.Connection):
        async def fetch(self, query: str, *args: Any, **kwargs: Any) -> list[Any]:
            rows = await super().fetch(query, *args, **kwargs)
            counters.pg_rows += len(rows)
            return rows

        async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
            row = await super().fetchrow(query, *args, **kwargs)
            counters.pg_rows += row is not None
            return row

        async def fetchval(self, query: str, *args: Any, column: int = 0, **kwargs: Any) -> Any:
            # Through fetchrow: a row holding NULL and no row at all look the same from fetchval's result.
            row = await self.fetchrow(query, *args, **kwargs)
            return None if row is None else row[column]

        async def fetchmany(self, query: str, args: Any, **kwargs: Any) -> list[Any]:
            rows = await super().fetchmany(query, args, **kwargs)
            counters.pg_rows += len(rows)
            return rows

        async def execute(self, query: str, *args: Any, **kwargs: Any) -> str:
            status = await super().execute(query, *args, **kwargs)
            counters.pg_rows += _status_rows(status)
            return status

        async def copy_records_to_table(self, table_name: str, **kwargs: Any) -> str:
            status = await super().copy_records_to_table(table_name, **kwargs)
            counters.pg_rows += _status_rows(status)
            return status

        async def copy_to_table(self, table_name: str, **kwargs: Any) -> str:
            status = await super().copy_to_table(table_name, **kwargs)
            counters.pg_rows += _status_rows(status)
            return status

    return CountingConnection
