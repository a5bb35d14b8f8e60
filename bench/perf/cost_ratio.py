"""Adaptive's cost ratio H/L measured: Redis CPU to push one post to one follower over Redis CPU to pull one followee.

Feeding Frenzy's rule pushes an edge when ``reads(c) / posts(p) >= H / L``. Both costs are what the strategies do,
on the real Redis, with their own scripts:

* H: the fan-out script (:meth:`targets.stores.timelines.Timelines.add_to_many`, ZADD and trim per follower) writing
  posts into ``followers`` home timelines; Redis CPU per timeline entry.
* L: the hybrid/adaptive page script (:meth:`targets.stores.pages.PageReader.hybrid`) reading a page for readers whose
  sets name ``pulled`` followees, against readers whose sets name none; the extra Redis CPU per read, per followee.

Redis CPU is the server's own count (``INFO cpu``), so other clients of a shared Redis add to it: each figure is the
median of ``rounds`` rounds, and the result says how busy the server was. Everything lives under a prefix of its own
inside the namespace, deleted at the end.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bench.perf.fanout_path import redis_cpu_s
from targets.stores.authors import AuthorTimelines
from targets.stores.celebrities import CelebritySets
from targets.stores.connections import Stores
from targets.stores.pages import PageReader
from targets.stores.post_cache import PostCache
from targets.stores.postgres import Post
from targets.stores.timelines import Timelines

OWNER = "adaptive"
#: The first synthetic post id (ids only need to be increasing; no Postgres row is made).
FIRST_POST = 10**15


async def _cpu_per(stores: Stores, calls: int, call: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    """Redis CPU (µs) and wall time (µs) per call of ``call(i)`` over ``calls`` calls, one at a time."""
    before, began = await redis_cpu_s(stores), time.perf_counter()
    for i in range(calls):
        await call(i)
    wall, cpu = time.perf_counter() - began, await redis_cpu_s(stores) - before
    return cpu * 1e6 / calls, wall * 1e6 / calls


async def measure(
    stores: Stores, *, followers: int, posts: int, pulled: int, reads: int, page: int, rounds: int
) -> dict[str, Any]:
    """H, L and H/L, each the median over ``rounds`` (see the module)."""
    prefix = f"{stores.settings.prefix}cost:"
    cap = stores.settings.timeline_cap
    timelines = Timelines(stores.redis, prefix, OWNER, cap)
    authors = AuthorTimelines(stores.redis, prefix, OWNER, cap)
    sets = CelebritySets(stores.redis, prefix, OWNER)
    pages = PageReader(stores.redis, prefix, OWNER, cap)
    cache = PostCache(stores.redis, prefix)
    try:
        # Readers 1 and 2 each follow the same accounts; 1 pulls ``pulled`` of them, 2 none. Every account has a
        # full author timeline, every reader a full home timeline, and every post a cached body.
        ids = [FIRST_POST + i for i in range(cap)]
        await cache.put([Post(i, 1, datetime.now(UTC), "x" * 64) for i in ids])
        await authors.replace({a: ids for a in range(10, 10 + pulled)})
        await sets.replace({1: list(range(10, 10 + pulled)), 2: []})
        for reader in (1, 2):
            await timelines.replace(reader, ids)
        followed = [100 + i for i in range(followers)]
        push_rounds, pull_rounds, walls = [], [], []
        for r in range(rounds):
            await stores.redis.unlink(*(timelines.key(u) for u in followed))  # each round's fan-out starts afresh
            first = FIRST_POST + cap + r * posts
            h, _ = await _cpu_per(stores, posts, lambda i, first=first: timelines.add_to_many(followed, first + i))
            push_rounds.append(h / followers)
            with_pulled, wall_pulled = await _cpu_per(stores, reads, lambda _: pages.hybrid(1, page, None))
            without, wall_without = await _cpu_per(stores, reads, lambda _: pages.hybrid(2, page, None))
            pull_rounds.append((with_pulled - without) / pulled)
            walls.append((wall_pulled - wall_without) / pulled)
        h, el = statistics.median(push_rounds), statistics.median(pull_rounds)
        return {
            "push_us_per_entry": round(h, 4),
            "pull_us_per_followee_read": round(el, 4),
            "cost_ratio": round(h / el, 4) if el > 0 else None,
            "pull_wall_us_per_followee_read": round(statistics.median(walls), 4),
            "rounds": {"push_us_per_entry": push_rounds, "pull_us_per_followee_read": pull_rounds},
        }
    finally:
        await stores.delete_keys("cost:*")
