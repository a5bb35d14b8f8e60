"""``fanout worker``: run fan-out workers; ``fanout drain``: wait until the fan-out queue is empty."""

from __future__ import annotations

import click

from bench.cli.options import setting_options, settings_from
from targets.eventloop import run
from targets.fanout.processes import run_fanout_worker, start_workers, supervise
from targets.fanout.worker import drain as drain_queue
from targets.stores.connections import Stores


@click.command()
@click.option("--processes", default=1, show_default=True, type=click.IntRange(min=1), help="Worker processes.")
@setting_options(
    "worker_inflight",
    "fanout_batch",
    "timeline_cap",
    "fanout_claim_idle_ms",
    "fanout_report_ttl_s",
    "pool_size",
    "active_window_s",  # fan-out skips followers inactive beyond it
)
@click.pass_context
def worker(ctx: click.Context, processes: int) -> None:
    """Deliver queued fan-out jobs into home timelines until interrupted (SIGINT or SIGTERM)."""
    settings = settings_from(ctx)
    if processes == 1:
        run_fanout_worker(settings)
        return
    children = start_workers(settings, processes)
    click.echo(f"{processes} fan-out worker processes started; Ctrl-C stops them after their current jobs")
    supervise(children)


@click.command()
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(min=0), help="Seconds to wait.")
@click.pass_context
def drain(ctx: click.Context, timeout: float) -> None:
    """Wait until no fan-out job is queued or pending (needs a running `fanout worker`)."""
    settings = settings_from(ctx)

    async def _drain() -> None:
        async with await Stores.connect(settings, create=False) as stores:
            await drain_queue(stores, timeout)

    run(_drain())
    click.echo("fan-out queue drained")
