"""Removing the harness's namespace from whichever store answers: the Redis keys with its prefix, and its schemas.

``fanout reset`` uses it instead of :meth:`Stores.reset`, which needs both stores up and recreates an empty schema:
here each store is reached on its own, so a store that is down (after ``fanout down``, say) does not keep the other
from being cleared, and is reported instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from targets.config import Settings, mask_url
from targets.errors import FanoutError, StoreUnavailable
from targets.stores.connections import connect_pg, connect_redis, delete_prefixed

#: Schemas a namespace may never be: dropping them would delete what is not the harness's.
RESERVED_SCHEMAS = ("public", "information_schema")


@dataclass
class Removal:
    """What removing a namespace did: one line per store that answered, one per store that did not."""

    done: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)


def check_own_schema(schema: str) -> None:
    """Refuse to treat a schema Postgres or other users own as the harness's namespace."""
    if schema in RESERVED_SCHEMAS or schema.startswith("pg_"):
        raise FanoutError(
            f"schema {schema} is not the harness's own: set FANOUT_SCHEMA (or --schema) to a schema only fanout uses"
        )


async def remove_namespace(settings: Settings, extra_schemas: Sequence[str] = ()) -> Removal:
    """Delete every Redis key with the prefix and DROP the schema (and ``extra_schemas``), each store on its own."""
    check_own_schema(settings.schema)
    removal = Removal()
    try:
        redis = await connect_redis(settings.redis_url, cluster=settings.redis_cluster > 0)
    except StoreUnavailable as exc:
        removal.unreachable.append(f"Redis keys {settings.prefix}* were not removed: {exc}")
    else:
        try:
            removed = await delete_prefixed(redis, settings.prefix)
        finally:
            await redis.aclose()
        removal.done.append(f"removed {removed:,} Redis keys {settings.prefix}* at {mask_url(settings.redis_url)}")
    try:
        pg = await connect_pg(settings.database_url, settings.schema, size=1)
    except StoreUnavailable as exc:
        removal.unreachable.append(f"schema {settings.schema} was not dropped: {exc}")
    else:
        try:
            dropped = []
            for schema in (settings.schema, *extra_schemas):
                exists = await pg.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema)
                if exists:
                    await pg.execute(f"DROP SCHEMA {schema} CASCADE")
                    dropped.append(schema)
        finally:
            await pg.close()
        where = mask_url(settings.database_url)
        removal.done.append(
            f"dropped schema {', '.join(dropped)} at {where}" if dropped else f"no schema {settings.schema} at {where}"
        )
    return removal
