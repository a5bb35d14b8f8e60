"""``fanout bench``: the main job. Push, pull and hybrid under the same open-loop load, side by side.

The options are :func:`bench.cli.options.bench_options`; what runs is :mod:`bench.runner`.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from bench.cli.options import bench_options, plan_from
from bench.output import print_extras
from bench.runner import calibrate_driver, exit_as_run_ended, run_plan


@click.command()
@bench_options
@click.pass_context
def bench(ctx: click.Context, **options: Any) -> None:
    """Run the strategies one after another under the same open-loop load and compare them."""
    if options.pop("calibrate_only"):
        calibrate_driver(options["rate"], options["duration"], options["max_in_flight"])
        return
    plan = plan_from(ctx, options)
    console = Console()
    outcome = run_plan(plan, console)
    console.print(outcome.table)
    print_extras(console, outcome.doc, plan.output)
    exit_as_run_ended(outcome, console)
