"""Client-side counts of what the targets send to the stores: exact, and blind to other clients of the servers.

Redis: one round trip per ``send_packed_command`` (a pipeline or a script call is one), one command per
``pack_command``. Postgres: one per statement asyncpg executes (its query logger), which includes the reset the pool
sends when a connection is released: a real round trip, so code that holds a connection for a series of statements
shows fewer. The server-side view
(INFO commandstats, pg_stat_*) belongs to the harness's metrics; these counts are what tests and the regression
gate compare, because nothing else on the machine can move them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import asyncpg
import redis.asyncio as aioredis


@dataclass
class StoreCounters:
    """Running totals for one :class:`~targets.stores.Stores`."""

    redis_round_trips: int = 0
    redis_commands: int = 0
    pg_queries: int = 0

    def snapshot(self) -> StoreCounters:
        """A copy of the current totals."""
        return StoreCounters(**{f.name: getattr(self, f.name) for f in fields(self)})

    def since(self, earlier: StoreCounters) -> StoreCounters:
        """What was counted after ``earlier`` was taken."""
        return StoreCounters(**{f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)})


def count_redis(client: aioredis.Redis, counters: StoreCounters) -> None:
    """Make every connection ``client`` opens from now on count into ``counters``."""
    pool = client.connection_pool
    base: type[Any] = pool.connection_class

    class CountingConnection(base):  # type: ignore[valid-type, misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            counters.redis_commands += 1
            return super().pack_command(*args)

        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            counters.redis_round_trips += 1
            await super().send_packed_command(command, check_health)

    pool.connection_class = CountingConnection


def pg_counting_init(counters: StoreCounters) -> Any:
    """An asyncpg pool ``init`` callback that counts every query of the connection into ``counters``."""

    def on_query(record: Any) -> None:
        counters.pg_queries += 1

    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(on_query)

    return init
