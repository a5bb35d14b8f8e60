"""Push publish with asynchronous fan-out (the default mode): publish, then drain until a worker has written every
follower's timeline, for an account with 10,000 followers.

The worker is a task on the benchmarks' event loop with stores of its own, so what the author's side sends and what
the worker sends are counted apart. The author's side (insert, enqueue, post cache) is exact. On the worker's side
the Postgres figures, the batches delivered and the timeline entries written are exact; its Redis figures are held
to twice their baseline only, because a worker's blocking stream reads and periodic claims depend on timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from targets.fanout.reports import delivery_report
from targets.fanout.worker import Worker, drain
from targets.stores.connections import Stores
from targets.strategies.push import PushStrategy
from tests.benchmarks.conftest import FOLLOWERS, PUBLISHER, Feed
from tests.benchmarks.costs import measure

ROUNDS = 30
LOOSE = ("worker_redis_round_trips", "worker_redis_commands")


@pytest.fixture(scope="module")
def async_push(runner: asyncio.Runner, feed: Feed) -> Iterator[tuple[PushStrategy, Stores]]:
    """A push strategy in async mode over the feed's connections, and a running worker's stores."""
    settings = feed.stores.settings.with_(fanout_mode="async")
    author_side = Stores(settings, feed.stores.redis, feed.stores.pg, feed.stores.counters)
    worker_stores = runner.run(Stores.connect(settings, create=False))
    worker = Worker(worker_stores)

    async def start() -> asyncio.Task[None]:
        return asyncio.create_task(worker.run())

    task = runner.run(start())  # keeps running whenever the runner's loop does
    try:
        yield PushStrategy(author_side), worker_stores
    finally:

        async def stop() -> None:
            worker.stop()
            await task
            await worker_stores.close()

        runner.run(stop())


@pytest.mark.benchmark(group="publish")
def test_push_publish_async_fanout_10k(
    benchmark, runner: asyncio.Runner, async_push: tuple[PushStrategy, Stores], record_costs
) -> None:
    push, worker_stores = async_push

    async def publish_and_drain() -> int:
        receipt = await push.publish(PUBLISHER, "timed")
        await drain(push.stores)
        return receipt.post_id

    runner.run(publish_and_drain())  # loads the scripts and creates the consumer group

    async def counted() -> dict[str, int]:
        worker_before = worker_stores.counters.snapshot()
        author, receipt = await measure(push.stores, lambda: push.publish(PUBLISHER, "measured"))
        await drain(push.stores)
        worker = worker_stores.counters.since(worker_before)
        report = await delivery_report(push.stores, receipt.post_id, push.name)
        assert receipt.entries_written == 0 and report.complete and report.delivered == len(FOLLOWERS)
        return {
            **author,
            **{f"worker_{k}": v for k, v in vars(worker).items()},
            "fanout_batches": report.delivered_batches,
            "timeline_writes": report.written,
        }

    record_costs(runner.run(counted()), loose=LOOSE)

    benchmark.pedantic(lambda: runner.run(publish_and_drain()), rounds=ROUNDS, warmup_rounds=1)
