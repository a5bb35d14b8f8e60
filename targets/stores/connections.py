"""Connections to the two stores and the namespace the harness owns in them.

One asyncio Redis client (redis-py with hiredis) and one asyncpg pool per :class:`Stores`. Every Redis key the
harness writes starts with ``settings.prefix`` and every table lives in ``settings.schema``; :meth:`Stores.reset`
removes exactly those (SCAN + UNLINK by prefix, DROP SCHEMA of its own schema) and nothing else. No code path in
the project runs FLUSHDB or FLUSHALL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisClusterException, RedisError

from targets.config import DATABASE_URL_VAR, REDIS_URL_VAR, Settings, declared, mask_url
from targets.errors import FanoutError, StoreUnavailable
from targets.ids import id_default_sql
from targets.stores.counters import (
    StoreCounters,
    count_cluster,
    count_redis,
    pg_counting_connection,
    pg_counting_init,
)
from targets.stores.failures import failure_kind
from targets.stores.postgres import Social
from targets.stores.replicas import RoundRobin, check_replica, wait_replayed
from targets.stores.schema import create_schema
from targets.stores.shards import shard_tags
from targets.urls import check_url, scrub

CONNECT_TIMEOUT_S = 5.0
# Keys examined per SCAN step: the database may hold far more keys than the namespace (other namespaces, other
# tools), and each step is a round trip, so take big steps.
SCAN_COUNT = 10_000
REDIS_MAX_CONNECTIONS = 128
REDIS_POOL_WAIT_S = 30.0
#: The name (CLIENT SETNAME) of every Redis connection the harness opens, so that CLIENT LIST tells its connections
#: from other programs' (the disturbance guard).
HARNESS_CLIENT_NAME = "fanout-bench"
REPLICA_URLS_VAR = declared("replica_urls").env
CLUSTER_VAR = declared("redis_cluster").env
CLUSTER_SLOTS = 16_384
#: A cluster client retries a command (or pipeline) that met a lost node this many times, backing off from
#: CLUSTER_BACKOFF_BASE_S up to CLUSTER_BACKOFF_CAP_S: about 10 s in all, so it follows a failover (a replica takes over
#: one node timeout plus an election after its primary died) instead of failing every operation of the shard meanwhile.
CLUSTER_RETRIES = 24
#: Connections per cluster node. The cluster client fails a command at once when its node's pool is full (it has no
#: blocking pool), and after a failover every operation that waited it out arrives at once, each perhaps holding a
#: connection per shard it touches: room for the driver's whole in-flight bound several times over.
CLUSTER_MAX_CONNECTIONS = 1024
CLUSTER_BACKOFF_BASE_S = 0.05
CLUSTER_BACKOFF_CAP_S = 0.5


class Stores:
    """Open connections to Redis and Postgres, scoped to the harness's namespace."""

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        pg: asyncpg.Pool,
        counters: StoreCounters | None = None,
        replicas: Sequence[asyncpg.Pool] = (),
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.pg = pg
        #: On a Redis Cluster, the hash tag of each timeline shard (:mod:`targets.stores.shards`): a user's
        #: per-user keys carry its shard's tag, so one shard's keys share a slot. None on one server.
        self.tags = shard_tags(redis)
        #: Pools of the PostgreSQL streaming replicas (``settings.replica_urls``; only with ``--read-from replica``).
        self.replicas = list(replicas)
        #: What this process sent to the stores (see :mod:`targets.stores.counters`).
        self.counters = counters or StoreCounters()
        reads = RoundRobin(self.replicas) if settings.read_from == "replica" and self.replicas else None
        #: The source of truth (all SQL on the users, follows and posts tables goes through it).
        self.social = Social(pg, id_default_sql(settings.schema), reads=reads)

    def view(self, **changes: object) -> Stores:
        """The same connections under settings with ``changes`` (a hybrid threshold, reads from the primary)."""
        return Stores(self.settings.with_(**changes), self.redis, self.pg, self.counters, self.replicas)

    async def wait_replicas(self, within_s: float = 60.0) -> float:
        """Wait until the replicas have replayed the primary's current WAL position (no-op without replicas)."""
        return await wait_replayed(self.pg, self.replicas, within_s)

    @classmethod
    async def connect(cls, settings: Settings | None = None, *, create: bool = True) -> Stores:
        """Connect to both stores (and create the schema unless ``create`` is False).

        Raises :class:`StoreUnavailable` naming the URL and the fix when either store does not answer.
        """
        settings = settings or Settings.from_env()
        counters = StoreCounters()
        redis = await connect_redis(settings.redis_url, counters, cluster=settings.redis_cluster > 0)
        try:
            pg = await connect_pg(
                settings.database_url,
                settings.schema,
                settings.pool_size,
                init=pg_counting_init(counters),
                connection_class=pg_counting_connection(counters),
            )
        except BaseException:
            await redis.aclose()
            raise
        try:
            replicas = await connect_replicas(settings, counters) if settings.read_from == "replica" else []
        except BaseException:
            await redis.aclose()
            await pg.close()
            raise
        stores = cls(settings, redis, pg, counters, replicas)
        if create:
            async with pg.acquire() as conn:
                await create_schema(conn, settings.schema)
        return stores

    async def close(self) -> None:
        """Close both connections (and the replicas')."""
        await self.redis.aclose()
        await self.pg.close()
        for pool in self.replicas:
            await pool.close()

    async def __aenter__(self) -> Stores:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- keys -------------------------------------------------------------------------------------------------
    def key(self, *parts: object) -> str:
        """A key inside the namespace: ``prefix`` + parts joined by ``:``."""
        return self.settings.prefix + ":".join(str(p) for p in parts)

    # -- reset ------------------------------------------------------------------------------------------------
    async def delete_keys(self, pattern: str = "*") -> int:
        """UNLINK every key of the namespace matching ``prefix + pattern``; returns how many were removed."""
        return await delete_prefixed(self.redis, self.settings.prefix, pattern)

    async def reset(self) -> None:
        """Remove the whole namespace: its Redis keys and its Postgres schema, then recreate the empty schema."""
        await self.delete_keys()
        async with self.pg.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.settings.schema} CASCADE")
            await create_schema(conn, self.settings.schema)

    async def drop(self) -> None:
        """Remove the namespace and leave nothing behind (no empty schema either)."""
        await self.delete_keys()
        async with self.pg.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.settings.schema} CASCADE")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled Postgres connection inside a transaction."""
        async with self.pg.acquire() as conn, conn.transaction():
            yield conn


async def delete_prefixed(redis: aioredis.Redis, prefix: str, pattern: str = "*") -> int:
    """UNLINK every key matching ``prefix + pattern`` (the prefix taken literally); returns how many were removed."""
    removed = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=_glob_escape(prefix) + pattern, count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            removed += await redis.unlink(*batch)
            batch.clear()
    if batch:
        removed += await redis.unlink(*batch)
    return removed


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so a prefix matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def connect_redis(url: str, counters: StoreCounters | None = None, *, cluster: bool = False) -> aioredis.Redis:
    """A redis.asyncio client (hiredis parser when installed) that has answered PING, counting into ``counters``.

    ``cluster``: ``url`` names a node of a Redis Cluster; the client is redis-py's cluster client, which follows the
    cluster's slot map (MOVED, failovers). A URL that is not a cluster's, or a cluster that does not serve every
    hash slot, is refused in one line.
    """
    check_url(url, "redis", REDIS_URL_VAR)  # a URL redis-py would misread fails here, without its password
    if cluster:
        return await connect_cluster(url, counters)
    # A blocking pool: past its size a caller waits for a connection instead of failing with "Too many connections",
    # which under load would turn into errors the benchmark would wrongly blame on the strategy.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=REDIS_POOL_WAIT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        client_name=HARNESS_CLIENT_NAME,
    )
    client = aioredis.Redis.from_pool(pool)
    if counters is not None:
        count_redis(client, counters)  # before the first connection opens, so every connection counts
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        reason = scrub(_reason(exc), url)
        raise StoreUnavailable("Redis", mask_url(url), REDIS_URL_VAR, reason, failure_kind(exc)) from None
    return client


async def connect_cluster(url: str, counters: StoreCounters | None = None) -> RedisCluster:
    """A redis-py cluster client of the cluster ``url`` names a node of, checked to serve all 16,384 slots."""
    backoff = ExponentialBackoff(cap=CLUSTER_BACKOFF_CAP_S, base=CLUSTER_BACKOFF_BASE_S)
    client = RedisCluster.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        client_name=HARNESS_CLIENT_NAME,
        max_connections=CLUSTER_MAX_CONNECTIONS,
        retry=Retry(backoff, CLUSTER_RETRIES, supported_errors=RedisCluster.ERRORS_ALLOW_RETRY),
    )
    where = mask_url(url)
    try:
        await client.initialize()
        info = await client.cluster_info()
    except (RedisError, RedisClusterException, OSError) as exc:
        await client.aclose()
        reason = scrub(_reason(exc), url)
        if "cluster mode is not enabled" in reason.lower() or "not enabled on this node" in reason:
            raise FanoutError(
                f"Redis at {where} is not a Redis Cluster (cluster mode is not enabled on it): unset "
                f"{CLUSTER_VAR} to use it as one server, or point {REDIS_URL_VAR} at a cluster node"
            ) from None
        if "slot" in reason.lower() and "cover" in reason.lower():
            raise FanoutError(
                f"the Redis Cluster at {where} does not serve every hash slot ({reason}): assign the missing slots "
                "(CLUSTER ADDSLOTSRANGE) or wait for its failover to complete"
            ) from None
        raise StoreUnavailable("Redis", where, REDIS_URL_VAR, reason, failure_kind(exc)) from None
    assigned = int(info.get("cluster_slots_ok", 0))
    if info.get("cluster_state") != "ok" or assigned < CLUSTER_SLOTS:
        await client.aclose()
        raise FanoutError(
            f"the Redis Cluster at {where} serves {assigned:,} of {CLUSTER_SLOTS:,} hash slots (cluster_state: "
            f"{info.get('cluster_state')}): assign the missing slots (CLUSTER ADDSLOTSRANGE), or wait for its "
            "failover to complete"
        )
    if counters is not None:
        count_cluster(client, counters)
    return client


async def connect_pg(
    url: str,
    schema: str,
    size: int = 10,
    init: Any = None,
    connection_class: type[Any] = asyncpg.Connection,
    variable: str = DATABASE_URL_VAR,
) -> asyncpg.Pool:
    """An asyncpg pool whose connections have ``search_path`` set to the harness's schema (``variable``: the
    setting that names ``url``, for the error)."""
    check_url(url, "postgres", variable)
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=size,
            timeout=CONNECT_TIMEOUT_S,
            init=init,
            connection_class=connection_class,
            server_settings={"search_path": schema, "application_name": "fanout-bench"},
        )
    except (TimeoutError, OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # ValueError: an option asyncpg refuses (sslmode=...); its message is shown, any password scrubbed.
        reason, kind = scrub(_reason(exc), url), failure_kind(exc)
        raise StoreUnavailable("PostgreSQL", mask_url(url), variable, reason, kind) from None
    assert pool is not None
    return pool


async def connect_replicas(settings: Settings, counters: StoreCounters) -> list[asyncpg.Pool]:
    """Pools of the replicas ``--read-from replica`` reads from; each must answer and be a standby in recovery."""
    urls = settings.replicas
    if not urls:
        raise FanoutError(
            "--read-from replica needs PostgreSQL streaming replicas: start one with `fanout up --pg-replicas 1`, or "
            f"name yours with --replica-urls ({REPLICA_URLS_VAR})"
        )
    pools: list[asyncpg.Pool] = []
    try:
        for i, url in enumerate(urls, 1):
            pool = await connect_pg(
                url,
                settings.schema,
                settings.pool_size,
                init=pg_counting_init(counters),
                connection_class=pg_counting_connection(counters),
                variable=REPLICA_URLS_VAR,
            )
            pools.append(pool)
            await check_replica(pool, f"replica {i} ({mask_url(url)})")
    except BaseException:
        for pool in pools:
            await pool.close()
        raise
    return pools


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
