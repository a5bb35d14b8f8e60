"""Push publish with the fan-out included: one post from an account with 10,000 followers.

Fan-out runs synchronously inside ``publish`` here (``fanout_mode="sync"``), so the time is store + deliver to
every follower, and the receipt counts the timeline entries Redis reports written.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.benchmarks.conftest import FOLLOWERS, PUBLISHER, Feed
from tests.benchmarks.costs import measure

ROUNDS = 60


@pytest.mark.benchmark(group="publish")
def test_push_publish_fanout_10k(benchmark, runner: asyncio.Runner, feed: Feed, record_costs) -> None:
    push = feed.push
    runner.run(push.publish(PUBLISHER, "warm-up"))  # loads the Lua script and prepares the statements
    figures, receipt = runner.run(measure(feed.stores, lambda: push.publish(PUBLISHER, "measured"), rows_read=True))
    assert receipt.entries_written == len(FOLLOWERS)
    record_costs({**figures, "timeline_writes": receipt.entries_written}, loose=("pg_rows_read",))

    benchmark.pedantic(lambda: runner.run(push.publish(PUBLISHER, "timed")), rounds=ROUNDS, warmup_rounds=1)
