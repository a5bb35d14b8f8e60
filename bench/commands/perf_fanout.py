"""``fanout perf fanout``: one post to 1,000,000 followers, end to end, against redis-benchmark on the same Redis.

The fan-out time runs from the job being queued to the last timeline written, both stamped by Redis's own clock in
the Lua calls (see :mod:`targets.fanout_report`). The reference is ``redis-benchmark -P 32`` doing as many ZADDs
into random keys of the harness's namespace. The followers live in a perf namespace of their own (schema
``<schema>_perf``, prefix ``<prefix>perf:``), loaded by COPY and dropped afterwards. Each worker count runs in fresh
worker processes on empty timelines.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import click
from rich.console import Console
from rich.table import Table

from bench.aio import run
from bench.cli import settings_from
from bench.commands.worker import start_processes, stop_processes
from bench.star import load_star
from targets.config import Settings
from targets.errors import FanoutError
from targets.fanout_queue import FanoutQueue
from targets.fanout_report import DeliveryReport, delivery_report
from targets.push import PushStrategy
from targets.schema import create_schema
from targets.stores import Stores
from targets.worker import DEFAULT_INFLIGHT

AUTHOR = 0
START_TIMEOUT_S = 60.0
FANOUT_TIMEOUT_S = 600.0


@click.command()
@click.option("--followers", default=1_000_000, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default="1,2,4", show_default=True, help="Worker process counts to time, comma-separated.")
@click.option("--batch", type=click.IntRange(min=1), help="Followers per batch job [default: settings, 1000].")
@click.option("--inflight", default=DEFAULT_INFLIGHT, show_default=True, type=click.IntRange(min=1))
@click.option("--output", default="results/perf-fanout.json", show_default=True, type=click.Path(dir_okay=False))
@click.pass_context
def fanout_perf(
    ctx: click.Context, followers: int, workers: str, batch: int | None, inflight: int, output: str
) -> None:
    """Time one post's fan-out to FOLLOWERS with 1, 2 and 4 workers, then redis-benchmark; last line `ratio: X`."""
    counts = _worker_counts(workers)
    tool = shutil.which("redis-benchmark")
    if tool is None:
        raise click.UsageError("redis-benchmark is not on PATH: install it (apt install redis-tools) and retry")
    base = settings_from(ctx, fanout_batch=batch)
    settings = base.with_(prefix=f"{base.prefix}perf:", schema=f"{base.schema}_perf", fanout_mode="async")
    console = Console()
    result = run(_measure(console, settings, followers, counts, inflight, tool))
    best = min(result["fanout"], key=lambda r: r["seconds"])
    result["ratio"] = best["seconds"] / result["redis_benchmark"]["seconds"]
    result["ratio_workers"] = best["workers"]
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(result, indent=2) + "\n")

    table = Table(title=f"fan-out of one post to {followers:,} followers (batch {settings.fanout_batch})")
    for column in ("workers", "seconds", "followers/s", "entries written", "lag p50 ms", "lag p99 ms"):
        table.add_column(column, justify="right")
    for r in result["fanout"]:
        table.add_row(
            str(r["workers"]),
            f"{r['seconds']:.3f}",
            f"{r['followers_per_s']:,.0f}",
            f"{r['written']:,}",
            f"{r['lag_p50_ms']:.1f}",
            f"{r['lag_p99_ms']:.1f}",
        )
    console.print(table)
    rb = result["redis_benchmark"]
    click.echo(f"fan-out: {best['seconds']:.3f} s ({best['workers']} worker(s), best of {len(counts)} runs)")
    click.echo(f"redis-benchmark -P 32: {rb['seconds']:.3f} s for {rb['requests']:,} ZADDs ({rb['rps']:,.0f}/s)")
    click.echo(f"results written to {output}")
    click.echo(f"ratio: {result['ratio']:.2f}")


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise click.BadParameter(
            f"{text!r} is not a list of positive worker counts: use e.g. 1,2,4", param_hint="--workers"
        )
    return counts


async def _measure(
    console: Console, settings: Settings, followers: int, counts: list[int], inflight: int, tool: str
) -> dict:
    stores = await Stores.connect(settings, create=False)
    try:
        with console.status(f"loading {followers:,} follows by COPY into {settings.schema}"):
            await stores.drop()
            async with stores.pg.acquire() as conn:
                await create_schema(conn, settings.schema, indexes=False)
            await load_star(stores.pg, settings.schema, AUTHOR, range(1, followers + 1), indexes=True)
        runs = []
        for n in counts:
            with console.status(f"fan-out with {n} worker process(es)"):
                await stores.delete_keys("push:home:*")
                report = await _fanout_once(stores, n, inflight)
            if report.written != followers:
                raise FanoutError(f"the fan-out wrote {report.written} entries for {followers} followers")
            seconds = report.fanout_seconds or 0.0
            runs.append(
                {
                    "workers": n,
                    "seconds": seconds,
                    "followers_per_s": followers / seconds,
                    "written": report.written,
                    "batches": report.batches,
                    "lag_p50_ms": report.lag_us.get_value_at_percentile(50) / 1000,
                    "lag_p99_ms": report.lag_us.get_value_at_percentile(99) / 1000,
                    "lag_max_ms": report.lag_us.get_max_value() / 1000,
                }
            )
        await stores.delete_keys("push:home:*")
        with console.status(f"redis-benchmark -P 32, {followers:,} ZADDs"):
            reference = await _redis_benchmark(stores, tool, followers)
        return {
            "benchmark": "fanout",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "followers": followers,
            "batch": settings.fanout_batch,
            "inflight": inflight,
            "timeline_cap": settings.timeline_cap,
            "fanout": runs,
            "redis_benchmark": reference,
        }
    finally:
        await stores.drop()
        await stores.close()


async def _fanout_once(stores: Stores, processes: int, inflight: int) -> DeliveryReport:
    """Start worker processes, wait until all consume, publish one post, wait for its completion notice."""
    queue = FanoutQueue(stores.redis, stores.settings)
    await queue.ensure_group()
    pubsub = stores.redis.pubsub()
    await pubsub.subscribe(queue.ready_channel, queue.completed_channel)
    children = start_processes(stores.settings, inflight, processes)
    try:
        await _messages(pubsub, queue.ready_channel, processes)
        receipt = await PushStrategy(stores).publish(AUTHOR, "one post to a million followers")
        await _messages(pubsub, queue.completed_channel, 1, f"push:{receipt.post_id}")
    finally:
        await pubsub.aclose()
        await asyncio.to_thread(stop_processes, children)
    return await delivery_report(stores, receipt.post_id)


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


async def _redis_benchmark(stores: Stores, tool: str, requests: int) -> dict:
    """``redis-benchmark -P 32`` doing ``requests`` ZADDs into random keys under ``<prefix>bench:``, then cleaned up."""
    url = urlparse(stores.settings.redis_url)
    command = [tool, "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379), "-P", "32"]
    if url.password:
        command += ["-a", url.password]
    if url.path.strip("/"):
        command += ["--dbnum", url.path.strip("/")]
    key = f"{stores.settings.prefix}bench:{{__rand_int__}}"
    command += ["-n", str(requests), "-r", str(requests), "--csv", "zadd", key, "__rand_int__", "__rand_int__"]
    try:
        started = time.perf_counter()
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - started
    finally:
        await stores.delete_keys("bench:*")
    rps = float(done.stdout.strip().splitlines()[-1].split(",")[1].strip('"'))
    shown = " ".join("***" if url.password and part == url.password else part for part in command)
    return {"command": shown, "requests": requests, "rps": rps, "seconds": requests / rps, "wall_s": wall}
