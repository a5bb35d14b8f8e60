"""The correctness oracle with asynchronous fan-out: an in-process worker delivers, the queue drains after every
operation, then push, pull and hybrid must still return the model's pages (tests/test_oracle.py, same scenarios)."""

from __future__ import annotations

import asyncio
import itertools
import os

from hypothesis import HealthCheck, given, settings

from bench.scenarios.oracle import Ensemble
from targets.fanout.reports import delivery_report
from targets.fanout.worker import drain, running_worker
from targets.stores.connections import Stores
from tests.test_oracle import run_scenario, runner, scenarios, view_for  # noqa: F401  (runner is a fixture)

EXAMPLES = int(os.environ.get("FANOUT_ASYNC_ORACLE_EXAMPLES", "50"))
_examples = itertools.count(1_000_000)  # prefixes apart from the sync oracle's


async def play_async(stores: Stores, scenario: dict, example: int) -> None:
    await stores.pg.execute("TRUNCATE users, follows, posts, mentions")
    view = view_for(stores, scenario, example, fanout_mode="async")

    async def written(post_id: int) -> int:
        report = await delivery_report(view, post_id, "push")
        assert report.complete and report.delivered == report.followers
        return report.written

    async with running_worker(view):
        await run_scenario(Ensemble(view), scenario, settle=lambda: drain(view, 30), written=written)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_async_fanout_returns_identical_pages(runner: tuple[asyncio.Runner, Stores], scenario: dict) -> None:  # noqa: F811
    r, stores = runner
    r.run(play_async(stores, scenario, next(_examples)))
