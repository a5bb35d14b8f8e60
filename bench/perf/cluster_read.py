"""``fanout perf read --redis-cluster N``: push's reads on a private N-primary cluster beside the same on one private
Redis, in one run.

One generated graph with posts is loaded into a perf namespace of its own in PostgreSQL; push's timelines of a seeded
sample of readers and the post cache are built on both servers (bulk materialisation on the single server, one
rebuild per reader on the cluster, where bulk does not run yet). Every round then saturates push's ``home_timeline``
on each backend with reads of the sample (:func:`bench.perf.read.drive`: the in-flight bound sets the pace, service
times in HdrHistograms), so the two latency rows differ by the backend only. On a cluster a read is two round trips
(the ids and touch from one script, then the cached bodies from their slots) where one server needs one.
"""

from __future__ import annotations

from typing import Any

from bench.perf.cluster_fanout import private_pair
from bench.perf.read import drive, pick_readers
from graphs.generate import GraphSpec
from graphs.load import load_generated
from targets.config import Settings
from targets.eventloop import run
from targets.stores.connections import Stores
from targets.stores.post_cache import PostCache
from targets.strategies.push import PushStrategy


def compare_reads(
    settings: Settings,
    primaries: int,
    users: int,
    posts_per_user: int,
    sample: int,
    page: int,
    duration: float,
    concurrency: int,
    seed: int,
    rounds: int,
) -> dict[str, Any]:
    """Start both servers, load, read on each ``rounds`` times (alternating), stop both; the comparison."""
    with private_pair(primaries) as (single_url, cluster_url, label):
        single = settings.with_(redis_url=single_url, redis_cluster=0, fanout_mode="sync")
        cluster = single.with_(redis_url=cluster_url, redis_cluster=primaries)
        args = (users, posts_per_user, sample, page, duration, concurrency, seed, rounds)
        rows = run(_reads(single, cluster, *args))
    best = {name: min(rs, key=lambda r: r["p50_ms"]) for name, rs in rows.items()}
    return {
        "benchmark": "read-cluster",
        "primaries": primaries,
        "redis": label,
        "users": users,
        "posts_per_user": posts_per_user,
        "readers": sample,
        "page": page,
        "concurrency": concurrency,
        "duration_s": duration,
        "rounds": rows,
        "best": best,
    }


async def _reads(
    single_settings: Settings,
    cluster_settings: Settings,
    users: int,
    posts_per_user: int,
    sample: int,
    page: int,
    duration: float,
    concurrency: int,
    seed: int,
    rounds: int,
) -> dict[str, list[dict[str, Any]]]:
    single = await Stores.connect(single_settings)
    cluster = await Stores.connect(cluster_settings, create=False)
    try:
        spec = GraphSpec("ba", users, seed=seed, celebrities=1, celebrity_reach=0.5, reciprocity=0.9, params={"m": 5})
        await load_generated(single, spec, posts_per_user, seed)
        await PostCache.of(single).warm(single.social)
        await PostCache.of(cluster).warm(cluster.social)
        readers = (await pick_readers(single, sample, seed)).all
        await PushStrategy(cluster).rebuild_home(readers)
        rows: dict[str, list[dict[str, Any]]] = {"single": [], "cluster": []}
        for _ in range(rounds):
            for name, stores in (("single", single), ("cluster", cluster)):
                push = PushStrategy(stores)

                async def read(user: int, push: PushStrategy = push) -> Any:
                    return await push.home_timeline(user, page)

                rows[name].append(await drive(read, readers, duration, concurrency, seed))
        return rows
    finally:
        await cluster.delete_keys()
        await cluster.close()
        await single.drop()
        await single.close()
