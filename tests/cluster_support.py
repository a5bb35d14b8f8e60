"""Driving a sharded fan-out through a primary's SIGKILL (tests/test_cluster.py's failover test)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisClusterException, RedisError

from targets.stores.timelines import Timelines

#: Posts delivered before the kill, and after the recovery.
BEFORE, AFTER = 10, 10
#: How long a run may take in all.
LIMIT_S = 60.0
RETRY_S = 0.05


@dataclass
class Failover:
    """What a fan-out through a kill measured."""

    posts: list[int] = field(default_factory=list)
    #: Deliveries that raised (redis-py's cluster client retries internally first, so there may be none).
    errors: int = 0
    #: Seconds from the kill to the first delivery completed after it (to every shard, the killed one's too).
    recovered_s: float | None = None


async def deliver_through_a_kill(timelines: Timelines, followers: list[int], pid: int) -> Failover:
    """Deliver posts one after another to ``followers``, SIGKILL ``pid`` after :data:`BEFORE` of them, retry every
    failed delivery until it succeeds, and stop :data:`AFTER` posts after the recovery."""
    result = Failover()
    killed_at: float | None = None
    post = 1_000
    started = time.monotonic()
    after = 0
    while after < AFTER and time.monotonic() - started < LIMIT_S:
        post += 1
        if len(result.posts) == BEFORE:
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
        while time.monotonic() - started < LIMIT_S:
            try:
                await timelines.add_to_many(followers, post)
            except (RedisError, RedisClusterException, OSError):
                result.errors += 1
                await asyncio.sleep(RETRY_S)  # a client's back-off before it retries the (idempotent) batch
                continue
            if killed_at is not None and result.recovered_s is None:
                result.recovered_s = time.monotonic() - killed_at
            break
        result.posts.append(post)
        if result.recovered_s is not None:
            after += 1
    return result


async def holding(timelines: Timelines, user_ids: list[int], post_id: int) -> int:
    """How many of the users' timelines hold the post (ZSCORE per user, one pipeline)."""
    pipe = timelines.redis.pipeline(transaction=False)
    for u in user_ids:
        pipe.zscore(timelines.key(u), post_id)
    return sum(score is not None for score in await pipe.execute())
