"""``fanout graph generate | stats | load``: follower graphs from networkx models or real edge lists."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bench.cli.options import format_options, read_options, settings_from
from graphs.console import load_progress, write_graph
from graphs.generate import MODELS, GraphSpec
from targets.eventloop import run
from targets.stores.connections import Stores

console = Console()


@click.group()
def graph() -> None:
    """Follower graphs: generate (networkx models), stats, load into Postgres."""


@graph.command("generate")
@click.argument("model", type=click.Choice(MODELS))
@click.option("--users", "-n", type=click.IntRange(min=2), required=True, help="Users of the model.")
@click.option("--seed", "-s", type=int, default=0, show_default=True, help="Random seed (same seed, same file).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Edge list to write (.gz compresses).",
)
@click.option(
    "--celebrities", type=click.IntRange(min=0), default=0, show_default=True, help="Extra accounts followed by many."
)
@click.option(
    "--celebrity-reach", type=float, default=0.5, show_default=True, help="Fraction of users following each celebrity."
)
@click.option(
    "--reciprocity", type=float, default=0.0, show_default=True, help="Fraction of the model's edges followed back."
)
@click.option(
    "--engine",
    type=click.Choice(["fast", "networkx"]),
    default="fast",
    show_default=True,
    help="scale-free: networkx's process vectorised in numpy (fast), or networkx.scale_free_graph itself.",
)
@click.option("--alpha", type=float, help="scale-free: probability of a new user following an existing one [0.41].")
@click.option("--beta", type=float, help="scale-free: probability of a new edge between existing users [0.54].")
@click.option("--gamma", type=float, help="scale-free: probability of an existing user following a new one [0.05].")
@click.option("--delta-in", type=float, help="scale-free: bias for choosing followees by followers [0.2].")
@click.option("--delta-out", type=float, help="scale-free: bias for choosing followers by followees [0].")
@click.option("--m", "m", type=int, help="ba: follows made by each new user [5].")
@click.option("--k", "k", type=int, help="small-world: ring neighbours of each user [10].")
@click.option("--p", "p", type=float, help="small-world: rewiring probability [0.1].")
def generate_cmd(
    model: str,
    users: int,
    seed: int,
    output: Path,
    celebrities: int,
    celebrity_reach: float,
    reciprocity: float,
    engine: str,
    **params: float | None,
) -> None:
    """Generate a follower graph (edges follower -> followee) from a networkx MODEL and write it as an edge list."""
    spec = GraphSpec(
        model,
        users,
        seed=seed,
        celebrities=celebrities,
        celebrity_reach=celebrity_reach,
        reciprocity=reciprocity,
        engine=engine,
        params={k: v for k, v in params.items() if v is not None},
    )
    write_graph(spec, output, console)


@graph.command("stats")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write the log-log in-degree plot (PNG).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Most-followed accounts listed.")
@format_options
def stats_cmd(file: Path, as_json: bool, plot: Path | None, top: int, **read: Any) -> None:
    """Users, edges, degree distributions, reciprocity, top accounts and power-law exponent of an edge list."""
    from graphs.stats import graph_stats, listed_once_warning, plot_in_degree, read_graph

    with console.status(f"reading {file}"):
        g = read_graph(file, read_options(read))
        stats = graph_stats(file, top=top, graph=g)
    if plot:
        plot_in_degree(g, plot, stats)
    warning = listed_once_warning(stats)
    if warning:
        click.echo(f"warning: {warning}", err=True)  # stderr: --json output stays parseable
    if as_json:
        click.echo(json.dumps(stats.to_json(), indent=2))
        return
    table = Table(title=f"{file} ({stats.format})", show_header=True)
    table.add_column("statistic")
    table.add_column("in-degree (followers)", justify="right")
    table.add_column("out-degree (followees)", justify="right")
    for name in ("mean", "median", "p99", "max"):
        a, b = getattr(stats.in_degree, name), getattr(stats.out_degree, name)
        table.add_row(
            name, f"{a:,.2f}" if isinstance(a, float) else f"{a:,}", f"{b:,.2f}" if isinstance(b, float) else f"{b:,}"
        )
    summary = Table(show_header=False)
    summary.add_row("users", f"{stats.users:,}")
    summary.add_row("edges", f"{stats.edges:,}")
    summary.add_row("lines read", f"{stats.lines:,}")
    summary.add_row("self-follows dropped", f"{stats.self_loops:,}")
    summary.add_row("duplicates dropped", f"{stats.duplicates:,}")
    summary.add_row("reciprocity", f"{stats.reciprocity:.4f}")
    alpha = (
        "n/a (too few followers)"
        if stats.powerlaw_alpha is None
        else f"{stats.powerlaw_alpha:.3f} (k >= {stats.powerlaw_xmin})"
    )
    summary.add_row("power-law exponent of in-degree", alpha)
    tops = Table(title=f"{top} most followed")
    tops.add_column("user", justify="right")
    tops.add_column("followers", justify="right")
    for uid, followers in stats.top_followed:
        tops.add_row(str(uid), f"{followers:,}")
    console.print(summary, table, tops)
    if plot:
        console.print(f"plot written to {plot}")


@graph.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--posts-per-user", type=click.IntRange(min=0), default=0, show_default=True, help="Post history seeded per user."
)
@click.option(
    "--history-days",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Time the seeded posts span, up to now.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the seeded posts' order.")
@format_options
@click.pass_context
def load_cmd(ctx: click.Context, file: Path, posts_per_user: int, history_days: float, seed: int, **read: Any) -> None:
    """Replace the harness's graph in Postgres with the edge list FILE (all or nothing) and rebuild derived state."""
    from graphs.load import load_graph

    settings = settings_from(ctx)
    options = read_options(read)

    async def go():
        async with await Stores.connect(settings) as stores:
            with load_progress(console) as progress:
                return await load_graph(
                    stores,
                    file,
                    posts_per_user=posts_per_user,
                    history=timedelta(days=history_days),
                    seed=seed,
                    progress=progress,
                    read=options,
                )

    report = run(go())
    table = Table(title=f"loaded {file} into schema {settings.schema}", show_header=False)
    table.add_row("format", report.format)
    for label, value in (
        ("lines read", report.lines_read),
        ("self-follows dropped", report.self_loops),
        ("duplicates dropped", report.duplicates),
        ("users", report.users),
        ("follow edges", report.edges),
        ("posts seeded", report.posts),
        ("timeline entries written", report.timeline_entries),
    ):
        table.add_row(label, f"{value:,}")
    table.add_row(
        "seconds", " ".join(f"{k} {v:.1f}" for k, v in report.seconds.items()) + f" (total {report.total_seconds:.1f})"
    )
    console.print(table)
