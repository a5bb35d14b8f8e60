"""A fan-out worker outlives a Redis restart: it waits Redis out, re-creates the queue's group, and delivers.

The restart is of a private redis-server this test starts on a free loopback port (never the shared one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from devservers.redis_server import find_redis_server, start_redis, stop_redis
from devservers.support import free_port
from graphs.star import load_star
from targets.fanout.reports import delivery_report
from targets.fanout.worker import drain, running_worker
from targets.stores.connections import Stores
from targets.strategies.push import PushStrategy
from tests.conftest import SESSION_TAG, namespace_settings
from tests.test_fanout import holders

AUTHOR, FOLLOWERS = 0, 500


async def until(check: Callable[[], bool], polls: int = 600) -> None:
    """Wait for a condition, polled every 50 ms, failing after ``polls`` looks (30 s)."""
    for _ in range(polls):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not hold within 30 s")


async def reconnect(stores: Stores) -> None:
    """Drop the client's connections to the old server, then wait until the new one answers."""
    await stores.redis.connection_pool.disconnect()
    await stores.redis.ping()


async def test_a_worker_survives_a_redis_restart_and_delivers_what_is_published_after(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    url = f"redis://127.0.0.1:{port}/0"
    binaries = find_redis_server("auto")
    # The devservers helpers run their own event loop: from this test's loop, in a thread.
    entry = await asyncio.to_thread(start_redis, url, "127.0.0.1", port, binaries, 30, tmp_path / "redis")
    settings = namespace_settings(
        redis_url=url, prefix=f"fanout_{SESSION_TAG}_rr:", schema=f"fanout_{SESSION_TAG}_rr"
    ).with_(fanout_mode="async", fanout_batch=100)
    try:
        async with await Stores.connect(settings) as stores:
            try:
                await load_star(stores.pg, settings.schema, AUTHOR, range(1, FOLLOWERS + 1))
                push = PushStrategy(stores)
                async with running_worker(stores) as worker:
                    before = await push.publish(AUTHOR, "before the restart")
                    await drain(stores, 60)
                    assert await holders(stores, "push", range(1, FOLLOWERS + 1), before.post_id) == FOLLOWERS
                    # Redis restarts empty (no persistence): the streams and the worker's group are gone.
                    assert worker.state == "running"
                    await asyncio.to_thread(stop_redis, entry, 30)
                    # While Redis is away the worker says so (a service's /healthz turns it into a 503).
                    await until(lambda: worker.state == "reconnecting")
                    entry = await asyncio.to_thread(start_redis, url, "127.0.0.1", port, binaries, 30, tmp_path / "r2")
                    # The test's own pooled connections went stale with the old server: reconnect them first
                    # (a publish that fails half-way, committed in Postgres but not queued, is re-queued by
                    # nothing yet; see the idempotent publish).
                    await reconnect(stores)
                    after = await push.publish(AUTHOR, "after the restart")
                    await drain(stores, 60)
                    assert worker.state == "running"
                assert worker.counts.reconnects >= 1 and worker.state == "stopped"
                assert await holders(stores, "push", range(1, FOLLOWERS + 1), after.post_id) == FOLLOWERS
                report = await delivery_report(stores, after.post_id)
                assert report.complete and (report.delivered, report.written) == (FOLLOWERS, FOLLOWERS)
            finally:
                await stores.drop()
    finally:
        await asyncio.to_thread(stop_redis, entry, 30)
