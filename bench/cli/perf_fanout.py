"""``fanout perf fanout``: one post to 1,000,000 followers, end to end, against redis-benchmark on the same Redis.

The fan-out time runs from the job being queued to the last timeline written, both stamped by Redis's own clock in
the Lua calls (see :mod:`targets.fanout.reports`). The reference is ``redis-benchmark -P 32`` doing as many ZADDs
into random keys of the harness's namespace. The followers live in a perf namespace of their own (schema
``<schema>_perf``, prefix ``<prefix>perf:``), loaded by COPY and dropped afterwards. Each worker count runs in fresh
worker processes on empty timelines.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import click
from rich.console import Console
from rich.table import Table

from bench.cli.options import setting_options, settings_from, start_cluster_option
from bench.perf.cluster_fanout import compare
from bench.perf.fanout_path import fanout_once, redis_cpu_s
from graphs.star import load_star
from targets.config import Settings
from targets.errors import FanoutError
from targets.eventloop import run
from targets.stores.connections import Stores
from targets.stores.schema import create_schema
from targets.stores.timelines import home_pattern
from targets.strategies.push import PushStrategy
from targets.urls import split_password

AUTHOR = 0
#: Where redis-cli (and redis-benchmark, in the versions that read it) takes a password from.
REDISCLI_AUTH_VAR = "REDISCLI_AUTH"


@click.command()
@click.option("--followers", default=1_000_000, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default="1,2,4", show_default=True, help="Worker process counts to time, comma-separated.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(min=1), help="Rounds of measurements.")
@setting_options("fanout_batch", "worker_inflight", "timeline_cap")
@start_cluster_option("one post's fan-out (one declared-keys Lua call per shard) [results/perf-fanout-cluster.json]")
@click.option("--output", default="results/perf-fanout.json", show_default=True, type=click.Path(dir_okay=False))
@click.pass_context
def fanout_perf(ctx: click.Context, followers: int, workers: str, repeat: int, primaries: int, output: str) -> None:
    """Time one post's fan-out to FOLLOWERS against redis-benchmark doing as many ZADDs; last line `ratio: X`.

    Each round runs redis-benchmark, then the fan-out with each worker count (fresh processes, empty timelines).
    The ratio is the best fan-out time over the best redis-benchmark time: on a shared machine the least disturbed
    run of each is the closest to what the code can do.
    """
    if primaries:
        if ctx.get_parameter_source("output") == click.core.ParameterSource.DEFAULT:
            output = "results/perf-fanout-cluster.json"
        _cluster_perf(settings_from(ctx), primaries, followers, repeat, Path(output))
        return
    counts = _worker_counts(workers)
    tool = shutil.which("redis-benchmark")
    if tool is None:
        raise click.UsageError("redis-benchmark is not on PATH: install it (apt install redis-tools) and retry")
    base = settings_from(ctx)
    settings = base.with_(prefix=f"{base.prefix}perf:", schema=f"{base.schema}_perf", fanout_mode="async")
    console = Console() if sys.stdout.isatty() else Console(width=110)  # logs keep whole rows
    result = run(_measure(console, settings, followers, counts, repeat, tool))
    best = min(result["fanout"], key=lambda r: r["seconds"])
    reference = min(result["redis_benchmark"], key=lambda r: r["seconds"])
    result["ratio"] = best["seconds"] / reference["seconds"]
    result["ratio_workers"] = best["workers"]
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(result, indent=2) + "\n")

    table = Table(title=f"fan-out of one post to {followers:,} followers (batch {settings.fanout_batch})")
    for column in ("round", "run", "seconds", "per second", "lag p50 ms", "lag p99 ms", "Redis CPU s"):
        table.add_column(column, justify="right")
    for r in result["redis_benchmark"]:
        row = (r["round"], "redis-bench", f"{r['seconds']:.3f}", f"{r['rps']:,.0f}", "", "", f"{r['redis_cpu_s']:.2f}")
        table.add_row(*map(str, row))
    for r in result["fanout"]:
        lag = (f"{r['lag_p50_ms']:.1f}", f"{r['lag_p99_ms']:.1f}", f"{r['redis_cpu_s']:.2f}")
        row = (r["round"], f"{r['workers']} worker(s)", f"{r['seconds']:.3f}", f"{r['followers_per_s']:,.0f}", *lag)
        table.add_row(*map(str, row))
    console.print(table)
    runs = len(result["fanout"])
    click.echo(f"fan-out: {best['seconds']:.3f} s ({best['workers']} worker(s), best of {runs} runs)")
    click.echo(f"redis-benchmark -P 32: {reference['seconds']:.3f} s for {followers:,} ZADDs (best of {repeat})")
    click.echo(f"results written to {output}")
    click.echo(f"ratio: {result['ratio']:.2f}")


def _cluster_perf(settings: Settings, primaries: int, followers: int, repeat: int, output: Path) -> None:
    console = Console() if sys.stdout.isatty() else Console(width=110)
    batch, inflight, cap = settings.fanout_batch, settings.worker_inflight, settings.timeline_cap
    with console.status(f"fan-out to {followers:,} followers on one Redis and on a {primaries}-primary cluster"):
        result = compare(primaries, followers, batch, inflight, cap, repeat)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"at": datetime.now(UTC).isoformat(timespec="seconds"), **result}, indent=2) + "\n")
    shards = result["runs"]["cluster"][0]["shards"] if result["runs"]["cluster"] else 0
    title = f"one post to {followers:,} followers: batch {batch}, {inflight} in flight, {shards} shards on the cluster"
    table = Table(title=title)
    for column in ("round", "Redis", "seconds", "followers/s", "CPU s", "µs/follower"):
        table.add_column(column, justify="right")
    for name in ("single", "cluster"):
        for r in result["runs"][name]:
            cpu, per = r["redis_cpu_s"], r["redis_cpu_us_per_follower"]
            label = "one server" if name == "single" else f"{primaries} primaries"
            total = sum(cpu.values())
            table.add_row(
                str(r["round"]),
                label,
                f"{r['seconds']:.3f}",
                f"{r['followers_per_s']:,.0f}",
                f"{total:.2f}",
                f"{total * 1e6 / followers:.2f}",
            )
            if name == "cluster":  # each primary's own share: how evenly the shards spread the work
                for node in cpu:
                    table.add_row("", node, "", "", f"{cpu[node]:.2f}", f"{per[node]:.2f}")
    console.print(table)
    spread = result["primary_cpu_spread"]
    click.echo(f"results written to {output}")
    click.echo(f"per-primary CPU spread (max/min - 1, best cluster run): {'-' if spread is None else f'{spread:.1%}'}")
    click.echo(f"cluster/single time ratio (best of {repeat} each): {result['time_ratio']:.2f}")


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
    console: Console, settings: Settings, followers: int, counts: list[int], repeat: int, tool: str
) -> dict:
    stores = await Stores.connect(settings, create=False)
    try:
        with console.status(f"loading {followers:,} follows by COPY into {settings.schema}"):
            await stores.drop()
            async with stores.pg.acquire() as conn:
                await create_schema(conn, settings.schema, indexes=False)
            await load_star(stores.pg, settings.schema, AUTHOR, range(1, followers + 1), indexes=True)
        runs: list[dict] = []
        references: list[dict] = []
        for round_ in range(1, repeat + 1):
            with console.status(f"round {round_}: redis-benchmark -P 32, {followers:,} ZADDs"):
                references.append({"round": round_, **await _redis_benchmark(stores, tool, followers)})
            for n in counts:
                with console.status(f"round {round_}: fan-out with {n} worker process(es)"):
                    await stores.delete_keys(home_pattern(PushStrategy.name))
                    runs.append({"round": round_, **await fanout_once(stores, n, AUTHOR, followers)})
        await stores.delete_keys(home_pattern(PushStrategy.name))
        return {
            "benchmark": "fanout",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "followers": followers,
            "batch": settings.fanout_batch,
            "inflight": settings.worker_inflight,
            "timeline_cap": settings.timeline_cap,
            "fanout": runs,
            "redis_benchmark": references,
        }
    finally:
        await stores.drop()
        await stores.close()


async def _redis_benchmark(stores: Stores, tool: str, requests: int) -> dict:
    """``redis-benchmark -P 32`` doing ``requests`` ZADDs into random keys under ``<prefix>bench:``, then cleaned up."""
    bare, password = split_password(stores.settings.redis_url)
    url = urlsplit(bare)
    command = [tool, "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379), "-P", "32"]
    env = dict(os.environ)
    if password is not None:
        # Through the environment, never `-a`: anyone can read a command line.
        env[REDISCLI_AUTH_VAR] = password
        if url.username:
            command += ["--user", unquote(url.username)]
    if url.path.strip("/"):
        command += ["--dbnum", url.path.strip("/")]
    key = f"{stores.settings.prefix}bench:{{__rand_int__}}"
    command += ["-n", str(requests), "-r", str(requests), "--csv", "zadd", key, "__rand_int__", "__rand_int__"]
    try:
        cpu = await redis_cpu_s(stores)
        started = time.perf_counter()
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - started
        cpu = await redis_cpu_s(stores) - cpu
    finally:
        await stores.delete_keys("bench:*")
    if done.returncode != 0 or "NOAUTH" in done.stderr:
        why = " / ".join(line for line in done.stderr.splitlines() if line.strip())[-300:] or f"exit {done.returncode}"
        if password is not None and "NOAUTH" in why:
            why += (
                f"; this redis-benchmark does not read {REDISCLI_AUTH_VAR}, and fanout never puts a password on a "
                "command line: use a redis-benchmark that reads it, or a Redis without a password for perf fanout"
            )
        raise FanoutError(f"redis-benchmark failed ({why})")
    rps = float(done.stdout.strip().splitlines()[-1].split(",")[1].strip('"'))
    return {
        "command": " ".join(command),  # holds no password (see above)
        "requests": requests,
        "rps": rps,
        "seconds": requests / rps,
        "wall_s": wall,
        "redis_cpu_s": cpu,
    }
