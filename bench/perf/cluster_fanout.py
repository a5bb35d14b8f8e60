"""``fanout perf fanout --redis-cluster N``: one post's sharded fan-out on a private N-primary cluster against the same
on one private Redis, in one run.

Both servers are started for the run (real redis-server processes on free loopback ports under a temporary folder,
no persistence) and stopped after it. The followers' timelines are push's own (:class:`Timelines`): batches of
``--fanout-batch`` followers, on the cluster each split by shard into one declared-keys Lua call per shard (one
pipeline), ``--worker-inflight`` batches at a time, as the fan-out workers send them. On one server a batch is one
call, so the comparison is the cluster's overhead (more calls, more connections, the client's routing) against its
spread. Each run reports its time, followers/s and every primary's Redis CPU (INFO, before and after): per-node CPU
per delivered follower is the figure to extrapolate to more cores and nodes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from devservers.redis_cluster import private_pair
from targets.errors import FanoutError
from targets.eventloop import run
from targets.stores.connections import delete_prefixed
from targets.stores.server_info import AnyRedis, cpu_seconds, info_by_node
from targets.stores.shards import shard_tags
from targets.stores.timelines import Timelines

POST_ID = 1
#: The perf run's keys, on servers of its own.
PREFIX = "perf:"


async def _cpu_by_node(client: AnyRedis) -> dict[str, float]:
    return {node: cpu_seconds(info) for node, info in (await info_by_node(client, "cpu")).items()}


async def fanout_run(client: AnyRedis, followers: int, batch: int, inflight: int, cap: int) -> dict[str, Any]:
    """Deliver one post to ``followers`` timelines through push's :class:`Timelines`; the run's figures."""
    tags = shard_tags(client)
    timelines = Timelines(client, PREFIX, "push", cap, tags=tags)
    await timelines.add_to_many(range(len(tags or [0])), 0)  # one user per shard: the script loaded on every node
    slots = asyncio.Semaphore(inflight)
    written = 0

    async def one(first: int) -> None:
        nonlocal written
        async with slots:
            added = await timelines.add_to_many(range(first, min(first + batch, followers + 1)), POST_ID)
        written += added  # after the await: `written += await ...` would read it before and lose others' adds

    before = await _cpu_by_node(client)
    started = time.perf_counter()
    await asyncio.gather(*(one(first) for first in range(1, followers + 1, batch)))
    seconds = time.perf_counter() - started
    after = await _cpu_by_node(client)
    if written != followers:
        raise FanoutError(f"the sharded fan-out wrote {written} entries for {followers} followers")
    cpu = {node: round(after[node] - before.get(node, 0.0), 3) for node in after}
    return {
        "seconds": seconds,
        "followers_per_s": followers / seconds,
        "shards": len(tags or [0]),
        "redis_cpu_s": cpu,
        "redis_cpu_us_per_follower": {node: round(c * 1e6 / followers, 3) for node, c in cpu.items()},
    }


async def _clean(client: AnyRedis) -> None:
    await delete_prefixed(client, PREFIX)


def compare(primaries: int, followers: int, batch: int, inflight: int, cap: int, rounds: int) -> dict[str, Any]:
    """Start one Redis and an N-primary cluster, run the fan-out on each ``rounds`` times (alternating), stop both."""
    with private_pair(primaries) as (single_url, cluster_url, label):
        runs = run(_measure(single_url, cluster_url, followers, batch, inflight, cap, rounds))
    best = {name: min(rs, key=lambda r: r["seconds"]) for name, rs in runs.items()}
    cluster_cpu = list(best["cluster"]["redis_cpu_s"].values())
    return {
        "benchmark": "fanout-cluster",
        "primaries": primaries,
        "followers": followers,
        "batch": batch,
        "inflight": inflight,
        "timeline_cap": cap,
        "redis": label,
        "runs": runs,
        "time_ratio": best["cluster"]["seconds"] / best["single"]["seconds"],
        "primary_cpu_spread": max(cluster_cpu) / min(cluster_cpu) - 1 if min(cluster_cpu) > 0 else None,
    }


async def _measure(
    single_url: str, cluster_url: str, followers: int, batch: int, inflight: int, cap: int, rounds: int
) -> dict[str, list[dict[str, Any]]]:
    single = aioredis.Redis.from_url(single_url)
    cluster = RedisCluster.from_url(cluster_url)
    await cluster.initialize()
    runs: dict[str, list[dict[str, Any]]] = {"single": [], "cluster": []}
    try:
        for round_ in range(1, rounds + 1):
            for name, client in (("single", single), ("cluster", cluster)):
                await _clean(client)
                runs[name].append({"round": round_, **await fanout_run(client, followers, batch, inflight, cap)})
                await _clean(client)
    finally:
        await single.aclose()
        await cluster.aclose()
    return runs
