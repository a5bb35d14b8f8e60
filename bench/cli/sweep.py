"""``fanout sweep threshold`` and ``fanout sweep rate``: one setting swept over one graph and one seeded workload.

Both take the options of ``fanout bench`` (graph, load, scenario, ``--repeat``; not those the sweep sets itself),
run every point as one "strategy" of a benchmark run, then add the sweep's figures, intervals and verdict
(:mod:`bench.sweep`) to the result file and print them. ``threshold``: hybrid at a range of celebrity thresholds
between pure pull and pure push, and the cheapest point within the SLOs. ``rate``: each strategy at rising rates
until it no longer keeps up or breaks the SLO, and its highest sustained rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import click
from rich.console import Console

from bench.capacity import parse_rates, parse_read_sources, rate_block, rate_points, rate_skip
from bench.cli.options import bench_options, plan_from
from bench.report.sweep import print_sweep
from bench.results import load_result, write_result
from bench.runner import exit_as_run_ended, run_plan
from bench.sweep import (
    Point,
    auto_thresholds,
    parse_slo,
    parse_thresholds,
    parse_weights,
    sweep_block,
    sweep_points,
)
from graphs.info import GraphInfo

#: The options of ``fanout bench``, as click parameters (a sweep takes them, less those it sets itself).
BENCH_PARAMS: list[click.Parameter] = bench_options(click.Command("bench")).params
#: Options of ``fanout bench`` each sweep sets itself (or that do not apply to it).
NOT_SWEPT = {"strategies", "threshold", "calibrate_only"}
NOT_RATE_SWEPT = {"rate", "calibrate_only"}


def _parsed(parse: Any) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: str) -> Any:
        try:
            return parse(value or "")
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


_SLO_OPTION = dict(
    default="",
    callback=_parsed(parse_slo),
    metavar="FIGURE=LIMIT,...",
    help="Service-level objectives, e.g. read-p99=10ms,publish-p99=50ms,delivery-p99=5s (any subset of "
    "read-p50, read-p99, read-p999, publish-p99, delivery-p99, spike-read-p99).",
)


@click.group()
def sweep() -> None:
    """Sweep a setting over one graph and one seeded workload, and recommend a value."""


@sweep.command(
    "threshold",
    params=[
        *(p for p in BENCH_PARAMS if p.name not in NOT_SWEPT),
        click.Option(
            ["--thresholds"],
            default="auto",
            show_default=True,
            callback=_parsed(parse_thresholds),
            help="Hybrid thresholds (followers), comma-separated, or auto: 1, then 6 log-spaced from the graph's "
            "median to one above its maximum follower count. Pull and push are always the two ends.",
        ),
        click.Option(["--slo"], **_SLO_OPTION),  # type: ignore[arg-type]
        click.Option(
            ["--adaptive"],
            is_flag=True,
            help="Add adaptive (push or pull per follow edge, by rates) as a point, run beside every threshold.",
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
    adaptive: bool = options.pop("adaptive")
    options.update(strategies=("pull", "hybrid", "push", *(("adaptive",) if adaptive else ())), threshold=None)

    def points(graph: GraphInfo) -> Sequence[Point]:
        return sweep_points(thresholds or auto_thresholds(graph.follower_counts), adaptive=adaptive)

    plan = dataclasses.replace(plan_from(ctx, options), points=points)
    _run_and_finish(plan, lambda doc, swept: sweep_block(doc, swept, slos, weights))


@sweep.command(
    "rate",
    params=[
        *(p for p in BENCH_PARAMS if p.name not in NOT_RATE_SWEPT),
        click.Option(
            ["--rates"],
            required=True,
            callback=_parsed(parse_rates),
            metavar="250,500,1000,...",
            help="Target rates (operations per second), each a run of every strategy still keeping up.",
        ),
        click.Option(["--slo"], **_SLO_OPTION),  # type: ignore[arg-type]
        click.Option(
            ["--read-sources"],
            default="",
            callback=_parsed(parse_read_sources),
            metavar="primary,replica",
            help="Run every strategy once reading from each (PostgreSQL primary, streaming replicas) at every rate, "
            "as separate curves in one run; needs replicas (`fanout up --pg-replicas 1` or --replica-urls).",
        ),
    ],
)
@click.pass_context
def rate(ctx: click.Context, **options: Any) -> None:
    """Each strategy at rising rates: read p50/p99 against achieved rate, and its highest sustained rate (with
    --read-sources, each strategy reading from each source).

    A strategy stops at the first rate it does not sustain: achieved below 95% of the rate, or an SLO broken.
    """
    rates: list[float] = options.pop("rates")
    slos: dict[str, float] = options.pop("slo")
    sources: list[str] = options.pop("read_sources")
    options["rate"] = rates[0]
    base = plan_from(ctx, options)
    if sources:  # the replicas are connected (and checked) once; each point reads from its own source
        base = dataclasses.replace(base, settings=base.settings.with_(read_from="replica"))
    chosen = rate_points(base.strategies, rates, sources)
    plan = dataclasses.replace(base, points=lambda graph: chosen, skip=rate_skip(chosen, slos))
    _run_and_finish(plan, lambda doc, swept: rate_block(doc, swept, slos))


def _run_and_finish(plan: Any, block: Callable[[dict[str, Any], list[Point]], dict[str, Any]]) -> None:
    """Run the sweep's plan, add its ``sweep`` block to the result file, print its table; exit as ``fanout bench``."""
    console = Console()
    outcome = run_plan(plan, console)
    doc = load_result(outcome.path)
    swept = [Point.from_json(p) for p in doc["run"]["parameters"]["points"]]
    doc["sweep"] = block(doc, swept)
    write_result(doc, outcome.path)
    print_sweep(doc, console)
    exit_as_run_ended(outcome, console)
