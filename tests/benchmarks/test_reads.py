"""Home-timeline reads: one page (50 posts, hydrated) for a user following 200 accounts, in each strategy, and a
hybrid read that merges the posts of 5 followed celebrities into the home timeline, from Redis alone.

Each benchmark reads once to warm the post cache and the prepared statements, counts one read exactly, then times
many. Push and hybrid reads are one Redis round trip and, on a hit, no Postgres query. The last benchmark reads after
Redis lost the reader's celebrity set and the celebrities' author timelines: the miss costs one Postgres query for
each kind of state, however many celebrities there are.
"""

from __future__ import annotations

import asyncio

import pytest

from targets.strategies.base import DEFAULT_PAGE
from tests.benchmarks.conftest import CELEB_READER, CELEBRITIES, READER, Feed
from tests.benchmarks.costs import measure

ROUNDS = 500
LOOSE = ("pg_rows_read",)


@pytest.mark.benchmark(group="read")
@pytest.mark.parametrize("strategy", ["push", "pull", "hybrid"])
def test_home_timeline_200_followees(
    benchmark, runner: asyncio.Runner, feed: Feed, record_costs, strategy: str
) -> None:
    read = getattr(feed, strategy).home_timeline
    runner.run(read(READER))  # fills the post cache and prepares the statements
    figures, page = runner.run(measure(feed.stores, lambda: read(READER), rows_read=True))
    ids = [p.id for p in page]
    assert len(ids) == DEFAULT_PAGE and ids == sorted(ids, reverse=True)
    assert ids == [p.id for p in runner.run(feed.pull.home_timeline(READER))]  # the oracle: every strategy agrees
    record_costs(figures, loose=LOOSE)

    benchmark.pedantic(lambda: runner.run(read(READER)), rounds=ROUNDS, warmup_rounds=5)


@pytest.mark.benchmark(group="read")
def test_hybrid_read_merging_5_celebrities(benchmark, runner: asyncio.Runner, feed: Feed, record_costs) -> None:
    read = feed.hybrid.home_timeline
    runner.run(read(CELEB_READER))
    figures, page = runner.run(measure(feed.stores, lambda: read(CELEB_READER), rows_read=True))
    assert len(page) == DEFAULT_PAGE
    assert {p.author_id for p in page} >= set(CELEBRITIES)  # the merge brought in every celebrity's posts
    assert [p.id for p in page] == [p.id for p in runner.run(feed.pull.home_timeline(CELEB_READER))]
    record_costs(figures, loose=LOOSE)

    benchmark.pedantic(lambda: runner.run(read(CELEB_READER)), rounds=ROUNDS, warmup_rounds=5)


@pytest.mark.benchmark(group="read")
def test_hybrid_read_rebuilding_lost_state(benchmark, runner: asyncio.Runner, feed: Feed, record_costs) -> None:
    hybrid = feed.hybrid
    lost = [hybrid.celebrities.key(CELEB_READER), *(hybrid.authors.key(c) for c in CELEBRITIES)]

    def lose() -> None:
        runner.run(feed.stores.redis.unlink(*lost))

    read = hybrid.home_timeline
    want = [p.id for p in runner.run(feed.pull.home_timeline(CELEB_READER))]
    runner.run(read(CELEB_READER))  # fills the post cache and prepares the statements: only the lost state misses
    lose()
    figures, page = runner.run(measure(feed.stores, lambda: read(CELEB_READER), rows_read=True))
    assert [p.id for p in page] == want
    assert runner.run(feed.stores.redis.exists(*lost)) == len(lost)  # rebuilt from Postgres
    record_costs(figures, loose=LOOSE)

    benchmark.pedantic(lambda: runner.run(read(CELEB_READER)), setup=lose, rounds=ROUNDS // 5, warmup_rounds=0)
