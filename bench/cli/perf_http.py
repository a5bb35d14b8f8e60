"""``fanout perf http``: push timeline reads/s in process, through one service process by the driver, and by Locust.

Three measurements on the same loaded graph, one after another, each with the same number of reads in flight:

1. in process: the open-loop driver calls ``PushStrategy.home_timeline`` directly;
2. over HTTP: the driver sends the same reads to ``fanout serve --strategy push`` (one process) with aiohttp;
3. Locust: ``bench/locustfile.py`` with ``--read-ratio 1`` against the same service, as many users.

**The loop is closed**, on purpose: the question is how many reads one process sustains, so each of the three keeps
``--concurrency`` reads in flight and sends the next one only when one returns (the driver offers far more than can
be served and its in-flight bound sets the pace; Locust's users wait for their answers). The achieved rate is what
the target sustains; the latency columns are service times (from the moment a read was sent), which hide any
stall, since nothing is sent while the target is stuck. For latency at a fixed offered rate, free of coordinated
omission, use the open-loop ``fanout bench --target URL`` instead. Everything shares this machine's cores, Locust and
the driver included.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bench.bindings.http import HttpTarget
from bench.bindings.inprocess import InProcessTarget
from bench.cli.options import settings_from
from bench.driver import Driver
from bench.locust.run import locust_command, summarize
from bench.perf.saturate import figures, saturate, saturating_schedule
from bench.service_process import ServiceProcess
from bench.workload import Mix, Workload
from graphs.generate import GraphSpec
from graphs.info import GraphInfo, graph_info
from graphs.load import load_generated
from targets.config import Settings
from targets.eventloop import run
from targets.service import routes
from targets.stores.connections import Stores
from targets.stores.post_cache import PostCache
from targets.strategies.push import PushStrategy

#: Printed under the table: what a closed loop measures, and where to measure latency instead.
CLOSED_LOOP_NOTE = (
    "Closed loop: a read is sent only when one returns, so this measures throughput, and the latencies are service "
    "times that hide stalls. For latency at a fixed rate (open loop): fanout bench --target URL."
)
TIMELINE = routes.request_name("GET", routes.TIMELINE)


def _workload(info: GraphInfo, seed: int) -> Workload:
    return Workload(info.user_ids, info.follower_counts, Mix(read_ratio=1.0), seed)


async def _prepare(settings: Settings, users: int | None, posts_per_user: int, seed: int) -> GraphInfo:
    async with await Stores.connect(settings) as stores:
        if users:
            await load_generated(stores, GraphSpec("scale-free", users, seed=seed), posts_per_user, seed)
        info = await graph_info(stores)
        if len(info.user_ids) < 2:
            raise click.UsageError("no graph is loaded: pass --users N to generate and load one")
        await PostCache.of(stores).warm(stores.social)
        return info


async def _in_process(settings: Settings, info: GraphInfo, duration: float, concurrency: int, page: int, seed: int):  # type: ignore[no-untyped-def]
    async with await Stores.connect(settings.with_(pool_size=max(10, concurrency))) as stores:
        target = InProcessTarget(PushStrategy(stores), page)
        driver = Driver(target, _workload(info, seed).next_op, saturating_schedule(duration), max_in_flight=concurrency)
        return await saturate(driver, duration)


async def _over_http(url: str, info: GraphInfo, duration: float, concurrency: int, page: int, seed: int):  # type: ignore[no-untyped-def]
    async with HttpTarget(url, page, connections=concurrency) as target:
        driver = Driver(target, _workload(info, seed).next_op, saturating_schedule(duration), max_in_flight=concurrency)
        return await saturate(driver, duration)


def _locust(url: str, duration: float, concurrency: int, page: int, processes: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fanout-perf-http-") as tmp:
        out = str(Path(tmp) / "locust")
        extra = ("--read-ratio", "1.0", "--page-size", str(page), "--stop-timeout", "5")
        command = locust_command(
            url,
            out,
            users=concurrency,
            spawn_rate=float(concurrency),
            run_time=f"{duration:g}s",
            processes=processes,
            extra=extra,
        )
        subprocess.run(command, check=True, capture_output=True)
        row = summarize(out)[TIMELINE]
    return {
        "reads_per_s": round(row["per_s"], 1),
        "reads": row["requests"],
        "errors": row["failures"],
        "p50_ms": row["p50_ms"],
        "p99_ms": row["p99_ms"],
    }


@click.command("http")
@click.option("--users", type=click.IntRange(min=2), help="Generate and load a scale-free graph first (else: loaded).")
@click.option("--posts-per-user", default=10, show_default=True, type=click.IntRange(min=0), help="With --users.")
@click.option("--duration", default=10.0, show_default=True, type=click.FloatRange(min=1), help="Seconds per run.")
@click.option("--concurrency", default=32, show_default=True, type=click.IntRange(min=1), help="Reads in flight.")
@click.option(
    "--page-size", "page", default=50, show_default=True, type=click.IntRange(1, 1000), help="Posts per timeline read."
)
@click.option("--locust/--no-locust", "with_locust", default=True, show_default=True)
@click.option("--locust-processes", type=click.IntRange(min=1), help="Locust worker processes (default: one process).")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--output", default="results/perf-http.json", show_default=True, type=click.Path(dir_okay=False))
@click.pass_context
def http_perf(
    ctx: click.Context,
    users: int | None,
    posts_per_user: int,
    duration: float,
    concurrency: int,
    page: int,
    with_locust: bool,
    locust_processes: int | None,
    seed: int,
    output: str,
) -> None:
    """Timeline reads/s with push, closed loop: in process, one service process over HTTP, and Locust.

    Each keeps --concurrency reads in flight (a throughput measurement); for open-loop latency use
    `fanout bench --target URL`.
    """
    settings = settings_from(ctx)
    console = Console(stderr=True)
    info = run(_prepare(settings, users, posts_per_user, seed))
    console.print(f"graph: {len(info.user_ids)} users, {info.follows} follows, {info.posts} posts")
    rows: dict[str, dict[str, Any]] = {}
    rows["in process (driver -> PushStrategy)"] = figures(
        run(_in_process(settings, info, duration, concurrency, page, seed))
    )
    with ServiceProcess(settings, "push") as service:
        rows["over HTTP (driver -> fanout serve, 1 process)"] = figures(
            run(_over_http(service.url, info, duration, concurrency, page, seed))
        )
        if with_locust:
            label = f"Locust ({locust_processes or 1} process{'es' * bool(locust_processes)}) -> fanout serve"
            rows[label] = _locust(service.url, duration, concurrency, page, locust_processes)
    table = Table(
        title=f"push timeline reads, closed loop: {concurrency} in flight, page {page}, {duration:g} s each",
        caption=CLOSED_LOOP_NOTE,
    )
    for column in ("measured", "reads/s", "reads", "errors", "p50 ms (service)", "p99 ms (service)"):
        table.add_column(column, justify="left" if column == "measured" else "right")
    for name, r in rows.items():
        table.add_row(
            name,
            f"{r['reads_per_s']:.0f}",
            str(r["reads"]),
            str(r["errors"]),
            f"{r['p50_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
        )
    Console().print(table)
    result = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "graph": {"users": len(info.user_ids), "follows": info.follows, "posts": info.posts},
        "parameters": {"duration_s": duration, "concurrency": concurrency, "page": page, "seed": seed},
        "loop": "closed",
        "latency": "service time (from the moment each read was sent)",
        "runs": rows,
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(result, indent=2) + "\n")
    click.echo(f"results written to {output}")
