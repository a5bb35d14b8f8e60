"""Graph load: replace the namespace's graph with a 100,000-edge Barabási–Albert edge list (graphs/load.py).

Every round loads the same file over the previous round's graph, which is what ``fanout graph load`` does. No posts
are seeded: materialising timelines for them takes seconds per round, too long for the gate's budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from graphs.edgelist import write_edges
from graphs.generate import GraphSpec, generate
from graphs.load import load_graph
from targets.stores.connections import Stores
from tests.benchmarks.conftest import bench_settings
from tests.benchmarks.costs import measure

EDGES = 100_000
SPEC = GraphSpec("ba", users=20_005, seed=1, params={"m": 5})  # m * (users - m) = 100,000 edges, none repeated
ROUNDS = 3
#: Clearing derived state walks Redis with SCAN, whose round trips and time grow with every key in the database,
#: other clients' included. The load's namespace therefore lives in a logical database that only benchmark sessions
#: use, and its Redis figures are held to twice their baseline only (parallel sessions still share that database).
LOAD_REDIS_DB = 15
LOOSE = ("redis_round_trips", "redis_commands")


@pytest.fixture(scope="module")
def edge_list(tmp_path_factory: pytest.TempPathFactory) -> Path:
    edges = generate(SPEC)
    assert len(edges) == EDGES
    path = tmp_path_factory.mktemp("graph") / "ba-100k.txt"
    write_edges(path, edges.followers, edges.followees)
    return path


def own_redis_db(url: str, db: int = LOAD_REDIS_DB) -> str:
    """The Redis URL with another logical database (TCP URLs only; others are returned unchanged)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}")) if parts.scheme in ("redis", "rediss") else url


@pytest.fixture(scope="module")
def load_stores(runner: asyncio.Runner) -> Iterator[Stores]:
    settings = bench_settings("load")
    stores = runner.run(Stores.connect(settings.with_(redis_url=own_redis_db(settings.redis_url))))
    try:
        yield stores
    finally:
        runner.run(stores.drop())
        runner.run(stores.close())


@pytest.mark.benchmark(group="load")
def test_graph_load_100k_edges(benchmark, runner: asyncio.Runner, load_stores: Stores, edge_list: Path, record_costs):
    def load():
        return load_graph(load_stores, edge_list)

    figures, report = runner.run(measure(load_stores, load))  # into the empty namespace; timed rounds replace it
    assert report.edges == EDGES and report.users == SPEC.users
    record_costs(figures, loose=LOOSE)

    benchmark.pedantic(lambda: runner.run(load()), rounds=ROUNDS, warmup_rounds=0)
