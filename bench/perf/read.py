"""Timeline reads against their floor: the same Redis commands from a minimal client, then push, hybrid and pull.

On one loaded graph and one seeded sample of readers, every row is driven the same way: the open-loop driver
(:mod:`bench.driver`) offers far more reads than can be served, its in-flight bound (1 or 32) sets the pace, and it is
stopped after the duration; latencies are service times (HdrHistogram, µs). Rows:

* the driver with a target that does nothing (its own share of every row);
* the floor: push's read script (range the home timeline and MGET the cached posts, one EVALSHA) called straight
  from redis-py with the keys prepared in advance, no decoding; and the same page as two commands (ZREVRANGEBYSCORE,
  then MGET), the read as it was before one round trip;
* push, hybrid (readers who follow a celebrity, readers who follow none) and pull ``home_timeline`` in process, and
  push again for each of hybrid's two groups of readers, so hybrid is set against push on the same readers
  (``p50_vs_push``).

Readers are drawn uniformly (seeded) from the sample for every row alike; with ``repeat`` the rows run in rounds and
each keeps its best. ``redis-benchmark``, when on PATH, runs the floor's EVALSHA for one reader as the server-side
reference.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from bench.driver import Driver
from bench.perf.saturate import figures, saturate, saturating_schedule
from graphs.generate import GraphSpec
from targets.stores.connections import Stores
from targets.strategies.hybrid import HybridStrategy
from targets.strategies.pull import PullStrategy
from targets.strategies.push import PushStrategy

FLOOR = "floor: push's script (redis-py)"
TWO_COMMANDS = "floor: ZREVRANGEBYSCORE + MGET"
NOOP = "driver only (no-op target)"
Target = Callable[[int], Awaitable[Any]]


@dataclass(frozen=True)
class Readers:
    """A seeded sample of readers (users who follow someone), split by whether they follow a celebrity."""

    all: list[int]
    celebrity: list[int]
    ordinary: list[int]


def perf_graph(users: int, seed: int) -> GraphSpec:
    """The graph ``fanout perf read --users N`` generates: Barabási–Albert (5 follows per new user, 9 in 10 followed
    back) with one celebrity followed by half of the users."""
    return GraphSpec("ba", users, seed=seed, celebrities=1, celebrity_reach=0.5, reciprocity=0.9, params={"m": 5})


async def pick_readers(stores: Stores, n: int, seed: int) -> Readers:
    """About ``n`` users who follow at least one account, and which of them follow a celebrity (Postgres, once)."""
    users = await stores.social.users()
    candidates = [u for u, followees in zip(users.ids, users.followees, strict=True) if followees > 0]
    sample = sorted(random.Random(f"perf-read:{seed}").sample(candidates, min(n, len(candidates))))
    followed = await stores.social.celebrities_followed(sample, stores.settings.celebrity_threshold)
    return Readers(sample, [u for u in sample if followed.get(u)], [u for u in sample if not followed.get(u)])


def targets(stores: Stores, page: int) -> dict[str, Target]:
    """Every row's read, by name (the floor's keys are built once per reader, outside the measured call)."""
    push, hybrid, pull = PushStrategy(stores), HybridStrategy(stores), PullStrategy(stores)
    pages, redis = push.pages, stores.redis
    requests: dict[int, tuple[list[str], list[str | int]]] = {}
    script = pages.push_script  # the very script push's read calls

    def request(user: int) -> tuple[list[str], list[str | int]]:
        found = requests.get(user)
        if found is None:
            found = requests[user] = pages.push_request(user, page)
        return found

    async def noop(user: int) -> None:
        return None

    async def floor(user: int) -> Any:
        keys, args = request(user)
        return await script(keys=keys, args=args)

    async def two_commands(user: int) -> Any:
        ids = await redis.zrevrangebyscore(request(user)[0][0], "+inf", "-inf", start=0, num=page)
        return await redis.mget([pages.post_prefix + i.decode() + "}" for i in ids]) if ids else []

    return {
        NOOP: noop,
        FLOOR: floor,
        TWO_COMMANDS: two_commands,
        "push": lambda u: push.home_timeline(u, page),
        "hybrid": lambda u: hybrid.home_timeline(u, page),
        "pull": lambda u: pull.home_timeline(u, page),
    }


async def drive(target: Target, users: list[int], duration: float, concurrency: int, seed: int) -> dict[str, Any]:
    """Saturate ``target`` with reads of seeded random ``users`` for ``duration`` s, ``concurrency`` in flight."""
    rng = random.Random(seed)
    for user in users:  # unmeasured: scripts loaded, statements prepared, the post memo filled as it would be
        await target(user)
    schedule = saturating_schedule(duration)
    driver: Driver[int] = Driver(
        target, lambda: rng.choice(users), schedule, max_in_flight=concurrency, kind_of=lambda _: "read"
    )
    return figures(await saturate(driver, duration))


async def measure(
    stores: Stores, readers: Readers, page: int, duration: float, concurrency: int, seed: int, repeat: int = 1
) -> dict[str, dict[str, Any]]:
    """Every row at one in-flight bound, with each row's p50 and reads/s relative to the floor's.

    With ``repeat`` > 1 the rows are measured in that many rounds, one row after another in each, so every row sees
    the same drift of a shared machine; a row keeps its round with the lowest p50 (noise only ever adds time) and
    lists every round's figures under ``rounds``.
    """
    reads = targets(stores, page)
    groups = {
        NOOP: readers.all,
        FLOOR: readers.all,
        TWO_COMMANDS: readers.all,
        "push": readers.all,
        "push, celebrity readers": readers.celebrity,
        "hybrid, celebrity readers": readers.celebrity,
        "push, no-celebrity readers": readers.ordinary,
        "hybrid, no-celebrity readers": readers.ordinary,
        "pull": readers.all,
    }
    groups = {name: users for name, users in groups.items() if users}  # e.g. no celebrity readers in the graph
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in groups}
    for _ in range(repeat):
        for name, users in groups.items():
            target = reads[name.split(",")[0]]
            rounds[name].append(await drive(target, users, duration, concurrency, seed))
    rows: dict[str, dict[str, Any]] = {}
    for name, measured in rounds.items():
        best = min(measured, key=lambda r: r["p50_ms"] if r["p50_ms"] is not None else float("inf"))
        rows[name] = {"readers": len(groups[name]), **best, **({"rounds": measured} if repeat > 1 else {})}
    floor = rows[FLOOR]
    for row in rows.values():
        row["p50_vs_floor"] = round(row["p50_ms"] / floor["p50_ms"], 2) if floor["p50_ms"] else None
        row["reads_per_s_vs_floor"] = round(row["reads_per_s"] / floor["reads_per_s"], 2)
    for group in ("celebrity readers", "no-celebrity readers"):
        hybrid, push = rows.get(f"hybrid, {group}"), rows.get(f"push, {group}")
        if hybrid is not None and push is not None and push["p50_ms"]:
            hybrid["p50_vs_push"] = round(hybrid["p50_ms"] / push["p50_ms"], 2)
    return rows


async def redis_benchmark(stores: Stores, user: int, page: int, requests: int, clients: int) -> dict[str, Any] | None:
    """``redis-benchmark`` running the floor's EVALSHA for one reader (None when the tool is not on PATH)."""
    tool = shutil.which("redis-benchmark")
    if tool is None:
        return None
    pages = PushStrategy(stores).pages
    script = pages.push_script
    keys, args = pages.push_request(user, page)
    await script(keys=keys, args=args)  # loaded
    url = urlparse(stores.settings.redis_url)
    command = [tool, "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379), "-c", str(clients)]
    if url.password:
        command += ["-a", url.password]
    if url.path.strip("/"):
        command += ["--dbnum", url.path.strip("/")]
    command += ["-n", str(requests), "--csv", "EVALSHA", script.sha, str(len(keys)), *keys, *map(str, args)]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=True)
    header, values = (line.replace('"', "").split(",") for line in done.stdout.strip().splitlines()[-2:])
    row = dict(zip(header, values, strict=True))
    return {
        "user": user,
        "clients": clients,
        "requests": requests,
        "reads_per_s": float(row["rps"]),
        "p50_ms": float(row["p50_latency_ms"]),
        "p99_ms": float(row["p99_latency_ms"]),
    }
