"""Home-timeline reads: one page (50 posts, hydrated) for a user following 200 accounts, in each strategy, and a
hybrid read that merges the posts of 5 followed celebrities into the home timeline.

Each benchmark reads once to warm the post cache and the prepared statements, counts one read exactly, then times
many.
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
