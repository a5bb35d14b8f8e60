"""``fanout perf read``: timeline reads of push, hybrid and pull against the same Redis commands from a minimal client.

A thin wrapper over :mod:`bench.perf.read`: prepares one loaded graph (``--users N`` generates and loads one like
``fanout bench --users N``), samples readers once, measures every row at each in-flight bound, prints one table per
bound and writes ``results/perf_read_<time>.json``.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bench.cli.options import setting_options, settings_from, start_cluster_option
from bench.perf.cluster_read import ReadComparison, compare_reads
from bench.perf.read import FLOOR, Readers, measure, perf_graph, pick_readers, redis_benchmark
from graphs.info import graph_info
from graphs.load import load_generated
from targets.config import Settings
from targets.eventloop import run
from targets.stores.connections import Stores
from targets.stores.materialise import rebuild_timelines
from targets.stores.post_cache import PostCache
from targets.strategies.registry import timeline_owners


async def _prepare(
    settings: Settings, users: int | None, posts_per_user: int, sample: int, seed: int, console: Console
) -> tuple[dict[str, Any], Readers]:
    async with await Stores.connect(settings) as stores:
        if users:
            with console.status(f"generating and loading a {users:,}-user graph"):
                await load_generated(stores, perf_graph(users, seed), posts_per_user, seed)
        else:
            # The graph was loaded earlier, perhaps with another cap or threshold: derive its state with these.
            with console.status("rebuilding push and hybrid derived state"):
                await rebuild_timelines(stores, timeline_owners(["push", "hybrid"]))
        info = await graph_info(stores)
        if len(info.user_ids) < 2 or not info.posts:
            raise click.UsageError("no graph with posts is loaded: pass --users N to generate and load one")
        with console.status("vacuuming the tables and warming the post cache"):
            await stores.social.vacuum_analyze()
            await PostCache.of(stores).warm(stores.social)
        readers = await pick_readers(stores, sample, seed)
        graph = {"users": len(info.user_ids), "follows": info.follows, "posts": info.posts}
        return graph, readers


async def _measure_all(
    settings: Settings,
    readers: Readers,
    page: int,
    duration: float,
    bounds: list[int],
    repeat: int,
    seed: int,
    console: Console,
) -> dict[str, Any]:
    async with await Stores.connect(settings.with_(pool_size=max(10, *bounds))) as stores:
        runs: dict[str, Any] = {}
        references = []
        for bound in bounds:
            with console.status(f"{bound} in flight: measuring each row for {duration:g} s, {repeat} round(s)"):
                runs[str(bound)] = await measure(stores, readers, page, duration, bound, seed, repeat)
            reference = await redis_benchmark(stores, readers.all[0], page, int(5_000 * duration), bound)
            if reference is not None:
                references.append(reference)
        return {"runs": runs, "redis_benchmark": references}


def _print(result: dict[str, Any], page: int) -> None:
    console = Console() if sys.stdout.isatty() else Console(width=120)  # logs keep whole rows
    for bound, rows in result["runs"].items():
        table = Table(title=f"timeline reads, page {page}, {bound} in flight (service time)")
        columns = ("measured", "readers", "reads/s", "p50 ms", "p99 ms", "p50 / floor", "reads/s / floor", "p50 / push")
        for column in columns:
            table.add_column(column, justify="left" if column == "measured" else "right")
        for name, r in rows.items():
            table.add_row(
                name,
                str(r["readers"]),
                f"{r['reads_per_s']:,.0f}",
                f"{r['p50_ms']:.3f}",
                f"{r['p99_ms']:.3f}",
                f"{r['p50_vs_floor']:.2f}" if r["p50_vs_floor"] is not None else "-",
                f"{r['reads_per_s_vs_floor']:.2f}",
                f"{r['p50_vs_push']:.2f}" if "p50_vs_push" in r else "",
            )
        for ref in result["redis_benchmark"]:
            if str(ref["clients"]) == bound:
                floor = rows[FLOOR]
                table.add_row(
                    f"redis-benchmark: push's script (user {ref['user']})",
                    "1",
                    f"{ref['reads_per_s']:,.0f}",
                    f"{ref['p50_ms']:.3f}",
                    f"{ref['p99_ms']:.3f}",
                    f"{ref['p50_ms'] / floor['p50_ms']:.2f}" if floor["p50_ms"] else "-",
                    f"{ref['reads_per_s'] / floor['reads_per_s']:.2f}",
                    "",
                )
        console.print(table)


@click.command("read")
@click.option("--users", type=click.IntRange(min=2), help="Generate and load a graph first (else: the loaded one).")
@click.option("--posts-per-user", default=40, show_default=True, type=click.IntRange(min=1), help="With --users.")
@setting_options("timeline_cap", "celebrity_threshold", timeline_cap=100, celebrity_threshold=2_000)
@click.option("--sample", default=1_000, show_default=True, type=click.IntRange(min=1), help="Readers sampled.")
@click.option("--duration", default=5.0, show_default=True, type=click.FloatRange(min=0.5), help="Seconds per row.")
@click.option("--concurrency", default="1,32", show_default=True, help="Reads in flight, comma-separated bounds.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(min=1), help="Rounds; best p50 kept.")
@click.option(
    "--page-size", "page", default=50, show_default=True, type=click.IntRange(1, 1000), help="Posts per timeline read."
)
@click.option("--seed", default=1, show_default=True, type=int)
@start_cluster_option("push's reads (with --users; at the first --concurrency bound)")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="[results/perf_read_<time>.json]")
@click.pass_context
def read_perf(
    ctx: click.Context,
    users: int | None,
    posts_per_user: int,
    sample: int,
    duration: float,
    concurrency: str,
    repeat: int,
    page: int,
    seed: int,
    primaries: int,
    output: Path | None,
) -> None:
    """Push, hybrid and pull reads in process against the floor (the same Redis commands from a minimal client)."""
    try:
        bounds = [int(b) for b in concurrency.split(",") if b.strip()]
    except ValueError:
        raise click.UsageError(f"--concurrency {concurrency!r} is not a list of integers such as 1,32") from None
    if not bounds or min(bounds) < 1:
        raise click.UsageError("--concurrency needs positive in-flight bounds such as 1,32")
    if primaries:
        if not users:
            raise click.UsageError("--redis-cluster loads a graph of its own: pass --users N")
        plan = ReadComparison(primaries, users, posts_per_user, sample, page, duration, bounds[0], seed, repeat)
        _cluster_reads(settings_from(ctx), plan, output)
        return
    settings = settings_from(ctx)
    console = Console(stderr=True)
    started = datetime.now(UTC)
    graph, readers = run(_prepare(settings, users, posts_per_user, sample, seed, console))
    console.print(
        f"graph: {graph['users']:,} users, {graph['follows']:,} follows, {graph['posts']:,} posts; readers: "
        f"{len(readers.all)} ({len(readers.celebrity)} following a celebrity, {len(readers.ordinary)} none)"
    )
    began = time.perf_counter()
    measured = run(_measure_all(settings, readers, page, duration, bounds, repeat, seed, console))
    result = {
        "benchmark": "read",
        "time": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - began, 1),
        "graph": graph,
        "parameters": {
            "users": users,
            "posts_per_user": posts_per_user if users else None,
            "timeline_cap": settings.timeline_cap,
            "threshold": settings.celebrity_threshold,
            "sample": sample,
            "duration_s": duration,
            "concurrency": bounds,
            "repeat": repeat,
            "page": page,
            "seed": seed,
        },
        "readers": {"all": len(readers.all), "celebrity": len(readers.celebrity), "ordinary": len(readers.ordinary)},
        **measured,
    }
    _print(result, page)
    output = output or Path("results") / f"perf_read_{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    click.echo(f"results written to {output}")


def _cluster_reads(base: Settings, plan: ReadComparison, output: Path | None) -> None:
    settings = base.with_(prefix=f"{base.prefix}perfc:", schema=f"{base.schema}_perfc")
    console = Console(stderr=True)
    what = f"push reads on one Redis and on a {plan.primaries}-primary cluster ({plan.users:,}-user graph)"
    with console.status(what):
        result = compare_reads(settings, plan)
    path = output or Path(f"results/perf_read_cluster_{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"time": datetime.now(UTC).isoformat(timespec="seconds"), **result}, indent=2) + "\n")
    table = Table(title=f"push reads, {plan.concurrency} in flight, {plan.sample} readers, page {plan.page}")
    for column in ("Redis", "round", "reads/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="right")
    for name in ("single", "cluster"):
        for i, r in enumerate(result["runs"][name], 1):
            label = "one server" if name == "single" else f"{plan.primaries} primaries"
            row = (
                label,
                str(i),
                f"{r['reads_per_s']:,.0f}",
                f"{r['p50_ms']:.3f}",
                f"{r['p99_ms']:.3f}",
                str(r["errors"]),
            )
            table.add_row(*row)
    Console().print(table)
    single, cluster = result["best"]["single"], result["best"]["cluster"]
    click.echo(f"results written to {path}")
    click.echo(
        f"best p50/p99: one server {single['p50_ms']:.3f}/{single['p99_ms']:.3f} ms, "
        f"cluster {cluster['p50_ms']:.3f}/{cluster['p99_ms']:.3f} ms"
    )
