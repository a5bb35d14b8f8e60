"""``fanout perf cost-ratio``: adaptive's H/L measured on the real Redis (:mod:`bench.perf.cost_ratio`).

Prints H (Redis CPU per pushed timeline entry), L (Redis CPU per pulled followee per read) and H/L, the value for
``--cost-ratio``, and writes ``results/perf_cost_ratio_<time>.json``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import click

from bench.cli.options import setting_options, settings_from
from bench.perf.cost_ratio import measure
from targets.config import Settings
from targets.eventloop import run
from targets.stores.connections import Stores


async def _measure(settings: Settings, **options: int) -> dict:
    async with await Stores.connect(settings) as stores:
        return await measure(stores, **options)


@click.command("cost-ratio")
@setting_options("timeline_cap", timeline_cap=100)
@click.option("--followers", default=1_000, show_default=True, type=click.IntRange(min=1), help="Per fan-out call.")
@click.option("--posts", default=200, show_default=True, type=click.IntRange(min=1), help="Fan-out calls per round.")
@click.option("--pulled", default=16, show_default=True, type=click.IntRange(min=1), help="Followees pulled per read.")
@click.option("--reads", default=2_000, show_default=True, type=click.IntRange(min=1), help="Reads per round and kind.")
@click.option("--page-size", "page", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(min=1), help="Rounds; medians reported.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="[results/perf_cost_ratio_<time>.json]")
@click.pass_context
def cost_ratio_perf(ctx: click.Context, output: Path | None, **options: int) -> None:
    """Measure adaptive's cost ratio H/L: Redis CPU per pushed entry over Redis CPU per pulled followee per read."""
    settings = settings_from(ctx)
    started = datetime.now(UTC)
    load = os.getloadavg()[0]
    figures = run(_measure(settings, **options))
    result = {
        "benchmark": "cost-ratio",
        "time": started.isoformat(timespec="seconds"),
        "load_average_1m": round(load, 2),
        "parameters": {"timeline_cap": settings.timeline_cap, **options},
        **figures,
    }
    click.echo(f"H: push, Redis CPU per timeline entry        {figures['push_us_per_entry']:.3f} µs")
    click.echo(f"L: pull, Redis CPU per followee per read      {figures['pull_us_per_followee_read']:.3f} µs")
    ratio = figures["cost_ratio"]
    click.echo(f"H/L (--cost-ratio)                            {'-' if ratio is None else f'{ratio:.3f}'}")
    click.echo(f"(load average {load:.2f} at the start; Redis CPU counts every client of this Redis)")
    output = output or Path("results") / f"perf_cost_ratio_{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    click.echo(f"results written to {output}")
