"""``fanout sweep threshold``: hybrid at a range of celebrity thresholds between pull and push, and which to pick.

It takes every option of ``fanout bench`` (graph, load, scenario, ``--repeat``; not ``--strategy`` and
``--threshold``, which the sweep sets), runs every point as one "strategy" of a benchmark run, then adds the sweep's
figures, intervals and recommendation (:mod:`bench.sweep`) to the result file and prints them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console

from bench.cli.bench import bench as bench_command
from bench.cli.bench import plan_from, run_plan
from bench.report.sweep import print_sweep
from bench.results import load_result, write_result
from bench.sweep import Point, auto_thresholds, parse_slo, parse_thresholds, parse_weights, sweep_block, sweep_points
from graphs.info import GraphInfo

#: Options of ``fanout bench`` the sweep sets itself (or that do not apply to it).
NOT_SWEPT = {"strategies", "threshold", "calibrate_only"}


def _parsed(parse: Any) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: str) -> Any:
        try:
            return parse(value or "")
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


@click.group()
def sweep() -> None:
    """Sweep a setting over one graph and one seeded workload, and recommend a value."""


@sweep.command(
    "threshold",
    params=[
        *(p for p in bench_command.params if p.name not in NOT_SWEPT),
        click.Option(
            ["--thresholds"],
            default="auto",
            show_default=True,
            callback=_parsed(parse_thresholds),
            help="Hybrid thresholds (followers), comma-separated, or auto: 1, then 6 log-spaced from the graph's "
            "median to one above its maximum follower count. Pull and push are always the two ends.",
        ),
        click.Option(
            ["--slo"],
            default="",
            callback=_parsed(parse_slo),
            metavar="FIGURE=LIMIT,...",
            help="Service-level objectives, e.g. read-p99=10ms,publish-p99=50ms,delivery-p99=5s (any subset of "
            "read-p50, read-p99, read-p999, publish-p99, delivery-p99, spike-read-p99).",
        ),
        click.Option(
            ["--weights"],
            default="",
            callback=_parsed(parse_weights),
            metavar="redis-cpu=1,pg-rows=2",
            help="Store cost per operation = redis-cpu x Redis CPU µs + pg-rows x Postgres rows read [1 and 2].",
        ),
    ],
)
@click.pass_context
def threshold(ctx: click.Context, **options: Any) -> None:
    """Hybrid at each threshold, plus pull and push: figures with intervals, and the cheapest point within the SLOs."""
    thresholds: list[int] | None = options.pop("thresholds")
    slos: dict[str, float] = options.pop("slo")
    weights: dict[str, float] = options.pop("weights")
    options.update(strategies=("pull", "hybrid", "push"), threshold=None)

    def points(graph: GraphInfo) -> Sequence[Point]:
        return sweep_points(thresholds or auto_thresholds(graph.follower_counts))

    plan = dataclasses.replace(plan_from(ctx, options), points=points)
    console = Console()
    outcome = run_plan(plan, console)
    doc = load_result(outcome.path)
    swept = [Point(p["name"], p["strategy"], p["threshold"]) for p in doc["run"]["parameters"]["points"]]
    doc["sweep"] = sweep_block(doc, swept, slos, weights)
    write_result(doc, outcome.path)
    print_sweep(doc, console)
    console.print(f"result: {outcome.path}", soft_wrap=True, highlight=False)
    if outcome.interrupted:
        console.print("[yellow]interrupted: the result holds what was measured and is marked incomplete[/]")
        sys.exit(130)
    if outcome.oracle_failed:
        console.print("[red]the oracle failed: a strategy returned pages that differ from Postgres's[/]")
        sys.exit(1)
