"""One post's fan-out through the real path (queue, worker processes, batched Lua writes), timed by Redis's clock.

Shared by ``fanout perf fanout`` (a star graph against redis-benchmark) and ``fanout perf graph`` (the loaded graph's
celebrity, beside the load's own timeline step).
"""

from __future__ import annotations

import asyncio
import time

from targets.errors import FanoutError
from targets.fanout.processes import start_workers, stop_workers
from targets.fanout.queue import FanoutQueue
from targets.fanout.reports import delivery_report
from targets.stores.connections import Stores
from targets.stores.server_info import cpu_seconds, summed_info
from targets.strategies.push import PushStrategy

START_TIMEOUT_S = 60.0
FANOUT_TIMEOUT_S = 600.0


async def redis_cpu_s(stores: Stores) -> float:
    """CPU seconds the Redis server has used (user + system), from INFO: how busy a run kept it, whatever the wall
    clock says on a shared machine."""
    return cpu_seconds(await summed_info(stores.redis, "cpu"))


async def fanout_once(stores: Stores, processes: int, author_id: int, followers: int) -> dict:
    """Start worker processes, wait until all consume, publish one post by ``author_id``, wait for its completion.

    ``stores.settings`` must ask for asynchronous fan-out. Returns the figures of the post's delivery report
    (``entries_per_s`` counts the entries Redis reported written) and the Redis CPU seconds used meanwhile; raises
    :class:`FanoutError` unless all ``followers`` got the post.
    """
    queue = FanoutQueue(stores.redis, stores.settings)
    await queue.ensure_group()
    pubsub = stores.redis.pubsub()
    await pubsub.subscribe(queue.ready_channel, queue.completed_channel)
    children = start_workers(stores.settings, processes)
    try:
        await _messages(pubsub, queue.ready_channel, processes)
        cpu = await redis_cpu_s(stores)
        receipt = await PushStrategy(stores).publish(author_id, f"one post to {followers:,} followers")
        await _messages(pubsub, queue.completed_channel, 1, f"push:{receipt.post_id}")
        cpu = await redis_cpu_s(stores) - cpu
    finally:
        await pubsub.aclose()
        await asyncio.to_thread(stop_workers, children)
    report = await delivery_report(stores, receipt.post_id)
    if report.written != followers or report.fanout_seconds is None:
        raise FanoutError(f"the fan-out wrote {report.written} entries for {followers} followers")
    return {
        "workers": processes,
        "seconds": report.fanout_seconds,
        "followers_per_s": followers / report.fanout_seconds,
        "entries_per_s": report.written / report.fanout_seconds,
        "written": report.written,
        "batches": report.batches,
        "lag_p50_ms": report.lag_us.get_value_at_percentile(50) / 1000,
        "lag_p99_ms": report.lag_us.get_value_at_percentile(99) / 1000,
        "lag_max_ms": report.lag_us.get_max_value() / 1000,
        "redis_cpu_s": cpu,
    }


async def _messages(pubsub, channel: str, count: int, payload: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """Wait for ``count`` messages on ``channel`` (with ``payload``, when given)."""
    deadline = time.monotonic() + (START_TIMEOUT_S if payload is None else FANOUT_TIMEOUT_S)
    seen = 0
    while seen < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FanoutError(f"timed out waiting for {count - seen} message(s) on {channel}")
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
        if message and message["channel"].decode() == channel:
            seen += payload is None or message["data"].decode() == payload
