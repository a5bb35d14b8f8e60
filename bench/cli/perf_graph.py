"""``fanout perf graph``: generate and load a million-user graph, against a plain ``psql \\copy`` of the same rows.

Generation runs in a child process so each step's peak memory (RSS) is its own; the load runs here, into a
namespace of the run's own that is dropped at the end. The reference copies the same edge rows with psql into an
unindexed UNLOGGED table, as the loader's own COPY target is. Figures go to ``results/perf_graph_<time>.json``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import click
from rich.console import Console

from bench.cli.options import settings_from
from bench.perf.fanout_path import fanout_once
from graphs.console import load_progress, write_graph
from graphs.generate import GraphSpec
from targets.eventloop import run
from targets.stores.connections import Stores
from targets.urls import split_password

#: A scale-free model with about 5.2 distinct follows per user: one edge per step and a new user on alpha + gamma
#: steps gives 5.9 edges per user; the deltas spread the choices so few of them repeat (delta 0 makes half repeat).
PERF_PARAMS = {"alpha": 0.14, "beta": 0.83, "gamma": 0.03, "delta_in": 1.0, "delta_out": 1.0}
TIME_GOAL_S = 180.0
MEMORY_GOAL_MB = 6 * 1024
COPY_RATIO_GOAL = 1.5
FANOUT_ROUNDS = 3

console = Console()


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


def _generate_in_child(spec: GraphSpec, path: Path) -> dict[str, float]:
    """Runs in a fresh process: generate and write, and report this process's peak RSS."""
    figures = write_graph(spec, path, Console())
    return {**figures, "peak_rss_mb": _peak_rss_mb()}


def _psql_copy(database_url: str, table: str, data: Path) -> float:
    """Seconds psql takes to ``\\copy`` the rows of ``data`` into ``table``."""
    psql = shutil.which("psql")
    if psql is None:
        raise click.ClickException("psql is not on PATH: install the PostgreSQL client to run the reference copy")
    # The password goes through the environment, never on psql's command line, which anyone can read.
    bare, password = split_password(database_url)
    env = {**os.environ, "PGPASSWORD": password} if password is not None else None
    start = time.perf_counter()
    subprocess.run(
        [psql, bare, "-v", "ON_ERROR_STOP=1", "-q", "-c", f"\\copy {table} FROM '{data}' WITH (DELIMITER ' ')"],
        check=True,
        env=env,
    )
    return time.perf_counter() - start


def _data_only(source: Path, target: Path) -> None:
    """The edge rows of ``source`` without its comment lines (psql's COPY text format has no comments)."""
    with open(source, "rb") as src, open(target, "wb") as out:
        for line in src:
            if not line.startswith(b"#"):
                out.write(line)


@click.command("graph")
@click.option("--users", type=click.IntRange(min=2), default=1_000_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--celebrity-reach", type=float, default=0.5, show_default=True, help="Share of users following the celebrity."
)
@click.option(
    "--posts-per-user",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Posts seeded per user, so the load materialises timelines (its entries/s is printed beside the fan-out's).",
)
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), help="Where the edge list goes [a temp dir]."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Result JSON [results/perf_graph_<time>.json].",
)
@click.pass_context
def graph_perf(
    ctx: click.Context,
    users: int,
    seed: int,
    celebrity_reach: float,
    posts_per_user: int,
    workdir: Path | None,
    output: Path | None,
) -> None:
    """Generate + load a scale-free graph with one celebrity; compare the load's rows/s with psql \\copy, and its
    timeline step's entries/s with one celebrity post's fan-out through the workers on the same graph."""
    from graphs.load import load_graph

    started = datetime.now(UTC)
    tag = f"perf_graph_{os.getpid()}"
    settings = settings_from(ctx, schema=f"fanout_{tag}", prefix=f"fanout_{tag}:", fanout_mode="async")
    spec = GraphSpec("scale-free", users, seed=seed, celebrities=1, celebrity_reach=celebrity_reach, params=PERF_PARAMS)
    tmp = Path(tempfile.mkdtemp(prefix="fanout-perf-graph-", dir=workdir))
    edges_file = tmp / "graph.edgelist"
    try:
        console.rule(f"generate: {spec.describe()}")
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            gen = pool.submit(_generate_in_child, spec, edges_file).result()
        gen["wall_s"] = time.perf_counter() - start
        gen["file_bytes"] = edges_file.stat().st_size

        console.rule(f"load into schema {settings.schema}")

        async def load_and_reference() -> tuple[dict, float, dict]:
            stores = await Stores.connect(settings)
            try:
                async with stores:
                    with load_progress(console) as progress:
                        report = await load_graph(
                            stores, edges_file, posts_per_user=posts_per_user, seed=seed, progress=progress
                        )
                    console.rule(f"the fan-out path: {FANOUT_ROUNDS} posts by the most followed account, 1 worker")
                    (celebrity, followers), *_ = await stores.social.most_followed(1)
                    rounds = [await fanout_once(stores, 1, celebrity, followers) for _ in range(FANOUT_ROUNDS)]
                    # The least disturbed round is the closest to what the path can do (as in perf fanout).
                    fanout = max(rounds, key=lambda r: r["entries_per_s"]) | {"rounds": rounds}
                    console.rule("reference: psql \\copy of the same rows")
                    data = tmp / "rows.txt"
                    _data_only(edges_file, data)
                    table = f"{settings.schema}.reference_copy"
                    await stores.pg.execute(f"CREATE UNLOGGED TABLE {table} (follower_id bigint, followee_id bigint)")
                    psql_s = _psql_copy(settings.database_url, table, data)
                    copied = await stores.pg.fetchval(f"SELECT count(*) FROM {table}")
                    if copied != report.lines_read:
                        raise click.ClickException(f"psql copied {copied} rows, the loader read {report.lines_read}")
                    return report.__dict__ | {"total_s": report.total_seconds}, psql_s, fanout
            finally:
                async with await Stores.connect(settings, create=False) as cleanup:
                    await cleanup.drop()  # a 5M-edge schema left behind would slow everyone down

        load, psql_s, fanout = run(load_and_reference())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = load["lines_read"]
    copy_rps = rows / load["seconds"]["copy"]
    load_rps = rows / load["total_s"]
    psql_rps = rows / psql_s
    timeline_s = load["seconds"].get("timelines")
    timeline_eps = load["timeline_entries"] / timeline_s if timeline_s else None
    result = {
        "benchmark": "perf graph",
        "measured_at": started.isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "spec": {
            "model": spec.model,
            "users": spec.users,
            "seed": seed,
            "celebrities": 1,
            "celebrity_reach": celebrity_reach,
            **spec.params,
        },
        "generate": gen,
        "load": {
            **load,
            "peak_rss_mb": _peak_rss_mb(),
            "copy_rows_per_s": copy_rps,
            "load_rows_per_s": load_rps,
            "timeline_entries_per_s": timeline_eps,
        },
        "fanout_path": fanout,
        "psql_copy": {"seconds": psql_s, "rows": rows, "rows_per_s": psql_rps},
        "copy_slowdown_vs_psql": psql_rps / copy_rps,
        "goals": {
            "generate_plus_load_s": gen["wall_s"] + load["total_s"],
            "under_3_minutes": gen["wall_s"] + load["total_s"] < TIME_GOAL_S,
            "peak_rss_mb": max(gen["peak_rss_mb"], _peak_rss_mb()),
            "under_6_gb": max(gen["peak_rss_mb"], _peak_rss_mb()) < MEMORY_GOAL_MB,
            "copy_within_1_5x_of_psql": psql_rps / copy_rps <= COPY_RATIO_GOAL,
            # None without posts: the load then materialises no timelines.
            "timelines_at_fanout_speed": None if timeline_eps is None else timeline_eps >= fanout["entries_per_s"],
        },
    }
    output = output or Path("results") / f"perf_graph_{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    _print(result, output)


def _print(result: dict, output: Path) -> None:
    from rich.table import Table

    gen, load, ref, goals = result["generate"], result["load"], result["psql_copy"], result["goals"]
    table = Table(title=f"fanout perf graph ({result['measured_at']}, {result['machine']['cpus']} CPUs)")
    table.add_column("step")
    table.add_column("figure", justify="right")
    table.add_row("users / edges", f"{gen['users']:,} / {gen['edges']:,}")
    table.add_row("generate (model + write)", f"{gen['wall_s']:.1f} s ({gen['generate_s']:.1f} + {gen['write_s']:.1f})")
    table.add_row("generate peak RSS", f"{gen['peak_rss_mb']:,.0f} MB")
    table.add_row("load total", f"{load['total_s']:.1f} s")
    for phase, seconds in load["seconds"].items():
        table.add_row(f"  {phase}", f"{seconds:.1f} s")
    table.add_row("load peak RSS", f"{load['peak_rss_mb']:,.0f} MB")
    table.add_row("load COPY phase rows/s", f"{load['copy_rows_per_s']:,.0f}")
    table.add_row("load end-to-end rows/s", f"{load['load_rows_per_s']:,.0f}")
    table.add_row("psql \\copy rows/s", f"{ref['rows_per_s']:,.0f} ({ref['seconds']:.1f} s)")
    fanout = result["fanout_path"]
    if load["timeline_entries_per_s"] is None:
        table.add_row("load timeline entries/s", "none written (pass --posts-per-user)")
    else:
        table.add_row(
            "load timeline entries/s", f"{load['timeline_entries_per_s']:,.0f} ({load['timeline_entries']:,} entries)"
        )
    best_of = f"best of {len(fanout['rounds'])} posts to {fanout['written']:,}"
    table.add_row("fan-out path entries/s", f"{fanout['entries_per_s']:,.0f} ({best_of})")
    table.add_row("COPY slowdown vs psql", f"{result['copy_slowdown_vs_psql']:.2f}x (goal <= {COPY_RATIO_GOAL}x)")
    table.add_row("generate + load", f"{goals['generate_plus_load_s']:.1f} s (goal < {TIME_GOAL_S:.0f} s)")
    console.print(table)
    console.print(f"written to {output}")
