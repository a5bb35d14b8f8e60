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

from dataclasses import asdict, dataclass
from typing import Any

from bench.perf.read import drive, perf_graph, pick_readers
from devservers.redis_cluster import private_pair
from graphs.load import load_generated
from targets.config import Settings
from targets.eventloop import run
from targets.stores.connections import Stores
from targets.stores.post_cache import PostCache
from targets.strategies.push import PushStrategy


@dataclass(frozen=True)
class ReadComparison:
    """What one comparison reads: a generated graph, a sample of its readers, and how each backend is driven."""

    primaries: int
    users: int
    posts_per_user: int
    sample: int
    page: int
    duration: float
    concurrency: int
    seed: int
    rounds: int


def compare_reads(settings: Settings, plan: ReadComparison) -> dict[str, Any]:
    """Start both servers, load, read on each ``plan.rounds`` times (alternating), stop both; the comparison."""
    with private_pair(plan.primaries) as (single_url, cluster_url, label):
        single = settings.with_(redis_url=single_url, redis_cluster=0, fanout_mode="sync")
        cluster = single.with_(redis_url=cluster_url, redis_cluster=plan.primaries)
        rows = run(_reads(single, cluster, plan))
    best = {name: min(rs, key=lambda r: r["p50_ms"]) for name, rs in rows.items()}
    return {"benchmark": "read-cluster", "redis": label, **asdict(plan), "runs": rows, "best": best}


async def _reads(
    single_settings: Settings, cluster_settings: Settings, plan: ReadComparison
) -> dict[str, list[dict[str, Any]]]:
    single = await Stores.connect(single_settings)
    cluster = await Stores.connect(cluster_settings, create=False)
    try:
        await load_generated(single, perf_graph(plan.users, plan.seed), plan.posts_per_user, plan.seed)
        await PostCache.of(single).warm(single.social)
        await PostCache.of(cluster).warm(cluster.social)
        readers = (await pick_readers(single, plan.sample, plan.seed)).all
        await PushStrategy(cluster).rebuild_home(readers)
        rows: dict[str, list[dict[str, Any]]] = {"single": [], "cluster": []}
        for _ in range(plan.rounds):
            for name, stores in (("single", single), ("cluster", cluster)):
                push = PushStrategy(stores)

                async def read(user: int, push: PushStrategy = push) -> Any:
                    return await push.home_timeline(user, plan.page)

                rows[name].append(await drive(read, readers, plan.duration, plan.concurrency, plan.seed))
        return rows
    finally:
        await cluster.delete_keys()
        await cluster.close()
        await single.drop()
        await single.close()
