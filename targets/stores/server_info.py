"""Redis INFO of one server, or of every primary of a Redis Cluster: per node, and summed.

A benchmark's Redis figures (commands, CPU, memory) come from INFO. On a cluster each primary serves its own share, so
a figure is the sum over the primaries (:func:`summed_info`), and :func:`info_by_node` keeps each node's own for the
per-node view (how evenly the shards spread the load). A node's ``run_id`` changes when it restarts; the cluster's
(:func:`run_ids`) is every primary's, so a restart or failover of any of them shows.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

#: A Redis client: one server's, or a cluster's.
AnyRedis = aioredis.Redis | RedisCluster


async def info_by_node(redis: AnyRedis, section: str) -> dict[str, dict[str, Any]]:
    """INFO ``section`` of every primary, by ``host:port`` (one entry for a single server)."""
    if isinstance(redis, RedisCluster):
        replies = await redis.info(section, target_nodes=RedisCluster.PRIMARIES)
        if len(redis.get_primaries()) == 1:  # one target: redis-py returns the reply itself
            return {redis.get_primaries()[0].name: replies}
        return dict(replies)
    kwargs = redis.connection_pool.connection_kwargs
    return {f"{kwargs.get('host', 'unix')}:{kwargs.get('port', 0)}": await redis.info(section)}


async def client_lists(redis: AnyRedis) -> list[dict[str, Any]]:
    """CLIENT LIST of the server, or of every primary of a cluster, as one list."""
    if isinstance(redis, RedisCluster):
        replies = await redis.client_list(target_nodes=RedisCluster.PRIMARIES)
        if isinstance(replies, list):  # one target: redis-py returns the reply itself
            return replies
        return [client for clients in replies.values() for client in clients]
    return await redis.client_list()


def _add(total: dict[str, Any], info: dict[str, Any]) -> None:
    for key, value in info.items():
        if isinstance(value, dict):
            _add(total.setdefault(key, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        else:
            total.setdefault(key, value)


async def summed_info(redis: AnyRedis, section: str) -> dict[str, Any]:
    """INFO ``section`` with every number summed over the primaries (nested sections, commandstats, too)."""
    total: dict[str, Any] = {}
    for info in (await info_by_node(redis, section)).values():
        _add(total, info)
    return total


async def run_ids(redis: AnyRedis) -> str:
    """The server's run_id; on a cluster every primary's, joined (changes when any of them restarts)."""
    return ",".join(sorted(str(i["run_id"]) for i in (await info_by_node(redis, "server")).values()))


def cpu_seconds(info: dict[str, Any]) -> float:
    """CPU seconds (user + system) of an INFO cpu section."""
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
