"""Bulk-materialised timelines (targets.stores.materialise) equal what the strategies' own paths give.

A small scale-free graph with a celebrity and a seeded post history is loaded with a small timeline cap and a
celebrity threshold that splits hybrid's followees. Then, for every user: the bulk timelines equal the ones each
strategy's own per-user rebuild writes, push, pull and hybrid return identical pages (first and second page), and
they keep agreeing after incremental follows and unfollows (merge and unmerge) on top of the bulk state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bench.scenarios.oracle import Ensemble
from graphs.edgelist import write_edges
from graphs.generate import GraphSpec, generate, header
from graphs.load import load_graph
from targets.ids import EPOCH_MS
from targets.stores.connections import Stores
from targets.stores.materialise import rebuild_timelines
from targets.strategies.hybrid import HybridStrategy
from targets.strategies.push import PushStrategy
from targets.strategies.registry import timeline_owners
from tests.conftest import namespace_settings

USERS = 200
CAP = 6
THRESHOLD = 25
LIMIT = 4


@pytest.fixture(scope="module")
async def loaded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stores]:
    """One load for the module; only the last test changes the graph."""
    stores = await Stores.connect(namespace_settings(timeline_cap=CAP, celebrity_threshold=THRESHOLD))
    await stores.reset()
    spec = GraphSpec("scale-free", USERS, seed=31, celebrities=1, celebrity_reach=0.5)
    edges = generate(spec)
    path = tmp_path_factory.mktemp("graph") / "g.edgelist"
    write_edges(path, edges.followers, edges.followees, header(spec, edges))
    try:
        report = await load_graph(stores, path, posts_per_user=3, seed=5)
        assert report.posts == 3 * report.users and report.timeline_entries > 0
        yield stores
    finally:
        await stores.drop()
        await stores.close()


async def all_timelines(ensemble: Ensemble, users: list[int]) -> dict[str, dict[int, list[int]]]:
    out: dict[str, dict[int, list[int]]] = {}
    for name in ("push", "hybrid"):
        strategy = ensemble.strategies[name]
        assert isinstance(strategy, PushStrategy)
        out[name] = {u: await strategy.timelines.page(u, CAP + 1, None) for u in users}
    return out


async def reader_state(ensemble: Ensemble, users: list[int]) -> dict[int, tuple[set[int] | None, list[int] | None]]:
    """Hybrid's celebrity set and author timeline of every user (None where not materialised)."""
    hybrid = ensemble.strategies["hybrid"]
    assert isinstance(hybrid, HybridStrategy)
    return {u: (await hybrid.celebrities.members(u), await hybrid.authors.post_ids(u)) for u in users}


async def assert_pages_agree(ensemble: Ensemble, users: list[int]) -> int:
    """Every user's first two pages agree across strategies; returns how many posts the pages held."""
    seen = 0
    for user in users:
        first = {name: [p.id for p in page] for name, page in (await ensemble.pages(user, LIMIT)).items()}
        assert first["push"] == first["pull"] == first["hybrid"], user
        seen += len(first["pull"])
        if len(first["pull"]) == LIMIT:
            second = await ensemble.pages(user, LIMIT, before=first["pull"][-1])
            ids = {name: [p.id for p in page] for name, page in second.items()}
            assert ids["push"] == ids["pull"] == ids["hybrid"], user
    return seen


async def test_seeded_posts_are_unique_time_ordered_and_consistent(loaded: Stores) -> None:
    rows = await loaded.pg.fetch("SELECT id, created_at, author_id FROM posts ORDER BY id")
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    created = [r["created_at"] for r in rows]
    assert created == sorted(created)
    mismatched = await loaded.pg.fetchval(
        "SELECT count(*) FROM posts WHERE created_at <> to_timestamp(((id >> 12) + $1) / 1000.0)",
        EPOCH_MS,
    )
    assert mismatched == 0
    per_author = await loaded.pg.fetch("SELECT count(*) AS n FROM posts GROUP BY author_id")
    assert {r["n"] for r in per_author} == {3}


async def test_bulk_timelines_equal_the_strategies_own(loaded: Stores) -> None:
    ensemble = Ensemble(loaded)
    users = [r[0] for r in await loaded.pg.fetch("SELECT id FROM users ORDER BY id")]
    celebrities = await loaded.pg.fetchval("SELECT count(*) FROM users WHERE follower_count >= $1", THRESHOLD)
    assert 0 < celebrities < len(users)  # hybrid really splits followees

    bulk = await all_timelines(ensemble, users)
    assert bulk["push"] != bulk["hybrid"]
    bulk_state = await reader_state(ensemble, users)
    # Every user's celebrity set and author timeline is materialised, and some users follow the celebrities.
    assert all(c is not None and a is not None for c, a in bulk_state.values())
    assert 0 < sum(bool(c) for c, _ in bulk_state.values()) < len(users)
    for name in ("push", "hybrid"):
        strategy = ensemble.strategies[name]
        await strategy.rebuild(users)  # the strategy's own per-user path, from Postgres
    assert await all_timelines(ensemble, users) == bulk
    assert await reader_state(ensemble, users) == bulk_state

    assert await assert_pages_agree(ensemble, users) > 0


async def test_incremental_operations_on_bulk_state_keep_strategies_equal(loaded: Stores) -> None:
    ensemble = Ensemble(loaded)
    users = [r[0] for r in await loaded.pg.fetch("SELECT id FROM users ORDER BY id")]
    celebrity = await loaded.pg.fetchval("SELECT id FROM users ORDER BY follower_count DESC LIMIT 1")
    ordinary = await loaded.pg.fetchval(
        "SELECT id FROM users WHERE follower_count BETWEEN 2 AND $1 LIMIT 1", THRESHOLD - 1
    )
    stranger = await loaded.pg.fetchval(
        "SELECT id FROM users u WHERE id <> $1 AND NOT EXISTS "
        "(SELECT 1 FROM follows WHERE follower_id = u.id AND followee_id = $1) LIMIT 1",
        ordinary,
    )
    await ensemble.follow(stranger, ordinary)
    follower = await loaded.pg.fetchval("SELECT follower_id FROM follows WHERE followee_id = $1 LIMIT 1", celebrity)
    await ensemble.unfollow(follower, celebrity)
    await assert_pages_agree(ensemble, [stranger, follower, *users[::5]])  # the changed users and a sample

    # Resetting derived state between strategies goes through the same bulk path and changes nothing.
    before = await all_timelines(ensemble, users)
    written = await rebuild_timelines(loaded, timeline_owners(["push", "pull", "hybrid"]))
    assert written == sum(len(t) for timelines in before.values() for t in timelines.values())
    assert await all_timelines(ensemble, users) == before
