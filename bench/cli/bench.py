"""``fanout bench``: the main job. Push, pull and hybrid under the same open-loop load, side by side.

The options are :func:`bench.cli.options.bench_options`; what runs is :mod:`bench.runner`.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from bench.calibration import print_highest_rates, print_overhead
from bench.cli.options import bench_options, plan_from
from bench.output import print_extras
from bench.runner import exit_as_run_ended, run_plan


@click.command()
@bench_options
@click.pass_context
def bench(ctx: click.Context, **options: Any) -> None:
    """Run the strategies one after another under the same open-loop load and compare them."""
    if options.pop("calibrate_only"):
        console = Console()
        rate, in_flight, processes = options["rate"], options["max_in_flight"], options["driver_processes"]
        print_overhead(rate, options["duration"], in_flight, processes, console)
        print_highest_rates(rate, in_flight, processes, console)
        return
    plan = plan_from(ctx, options)
    console = Console()
    outcome = run_plan(plan, console)
    console.print(outcome.table)
    print_extras(console, outcome.doc, plan.output)
    exit_as_run_ended(outcome, console)
