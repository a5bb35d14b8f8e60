"""Loading edge lists into Postgres: counts, all-or-nothing on bad input, derived state cleared, the CLI's errors."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
from click.testing import CliRunner

from bench.cli.main import main
from graphs.edgelist import MalformedEdgeList, write_edges
from graphs.generate import GraphSpec, generate, header
from graphs.load import load_graph, staging_schema
from targets.errors import FanoutError
from targets.fanout.queue import FanoutQueue
from targets.stores.connections import Stores
from targets.stores.post_cache import PostCache
from targets.stores.timelines import Timelines

BIG = (1 << 63) - 1
HAND_WRITTEN = b"""# follower followee, as SNAP writes them
1 2
2 3
3 1
# 4 follows itself, and 1 -> 2 is listed twice
4 4
1 2
5\t1
9223372036854775807 3
"""


async def graph_rows(stores: Stores) -> tuple[dict[int, tuple[int, int]], set[tuple[int, int]]]:
    users = {r["id"]: (r["follower_count"], r["followee_count"]) for r in await stores.pg.fetch("SELECT * FROM users")}
    follows = {(r[0], r[1]) for r in await stores.pg.fetch("SELECT follower_id, followee_id FROM follows")}
    return users, follows


async def test_hand_written_file_loads_with_the_right_counts_and_clears_stale_state(
    stores: Stores, tmp_path: Path
) -> None:
    s = stores.settings
    stale = [Timelines(stores.redis, s.prefix, name, s.timeline_cap).key(1) for name in ("push", "hybrid")]
    for key in stale:
        await stores.redis.zadd(key, {"123": 123})
    stale.append(PostCache(stores.redis, s.prefix).key(123))
    await stores.redis.set(stale[-1], b"1|0|old")
    path = tmp_path / "hand.txt"
    path.write_bytes(HAND_WRITTEN)
    report = await load_graph(stores, path)
    assert await stores.redis.exists(*stale) == 0  # a new graph leaves no derived state of the old one
    assert (report.lines_read, report.self_loops, report.duplicates, report.edges, report.users) == (7, 1, 1, 5, 6)
    assert not report.presorted  # the duplicate pass ran
    users, follows = await graph_rows(stores)
    assert follows == {(1, 2), (2, 3), (3, 1), (5, 1), (BIG, 3)}
    # (followers, followees); user 4 exists although its only line was a self-follow; ids use all 63 bits.
    assert users == {1: (2, 1), 2: (1, 1), 3: (2, 1), 4: (0, 0), 5: (0, 1), BIG: (0, 1)}


async def test_malformed_file_fails_cleanly_and_keeps_the_previous_graph(stores: Stores, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_bytes(HAND_WRITTEN)
    await load_graph(stores, good)
    before = await graph_rows(stores)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"10 11\n11 12\n12 oops\n13 10\n")
    with pytest.raises(MalformedEdgeList) as info:
        await load_graph(stores, bad)
    assert info.value.line_number == 3 and info.value.line == "12 oops"
    assert await graph_rows(stores) == before
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"# only a comment\n\n")
    with pytest.raises(FanoutError, match="holds no edges"):
        await load_graph(stores, empty)
    assert await graph_rows(stores) == before
    stage = staging_schema(stores.settings.schema)
    assert not await stores.pg.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", stage)


async def test_load_refuses_while_fan_out_jobs_are_queued(stores: Stores, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_bytes(HAND_WRITTEN)
    queue = FanoutQueue(stores.redis, stores.settings)
    await queue.enqueue("push", 123, 1)
    with pytest.raises(FanoutError, match="1 fan-out job"):
        await load_graph(stores, good)
    assert await stores.pg.fetchval("SELECT count(*) FROM follows") == 0  # nothing was loaded


async def test_loaded_counts_match_networkx(stores: Stores, tmp_path: Path) -> None:
    spec = GraphSpec("ba", 1500, seed=21, reciprocity=0.3, celebrities=1, celebrity_reach=0.4)
    edges = generate(spec)
    path = tmp_path / "ba.edgelist.gz"
    write_edges(path, edges.followers, edges.followees, header(spec, edges))
    report = await load_graph(stores, path)
    assert report.presorted  # a generated file is strictly ascending: copied across without the duplicate pass
    g = nx.read_edgelist(path, create_using=nx.DiGraph, nodetype=int)
    users, follows = await graph_rows(stores)
    assert report.users == len(users) == g.number_of_nodes()
    assert report.edges == len(follows) == g.number_of_edges()
    assert follows == set(g.edges())
    assert users == {u: (g.in_degree(u), g.out_degree(u)) for u in g.nodes}


def test_cli_load_of_a_malformed_file_is_one_line_and_exit_2(stores: Stores, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"# header\n1 2\n1,3\n")
    s = stores.settings
    result = CliRunner().invoke(main, ["--schema", s.schema, "--prefix", s.prefix, "graph", "load", str(bad)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert f"{bad}, line 3" in lines[0] and "'1,3'" in lines[0]
