"""``fanout worker``: run fan-out workers; ``fanout drain``: wait until the fan-out queue is empty."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from multiprocessing.process import BaseProcess

import click

from bench.cli.main import settings_from
from targets.config import Settings
from targets.eventloop import run
from targets.fanout.worker import DEFAULT_INFLIGHT, Worker
from targets.fanout.worker import drain as drain_queue
from targets.stores.connections import Stores


@click.command()
@click.option("--processes", default=1, show_default=True, type=click.IntRange(min=1), help="Worker processes.")
@click.option(
    "--inflight",
    default=DEFAULT_INFLIGHT,
    show_default=True,
    type=click.IntRange(min=1),
    help="Jobs each worker handles at once (Lua calls in flight keep Redis busy between batches).",
)
@click.option("--batch", type=click.IntRange(min=1), help="Followers per batch job (default: settings, 1000).")
@click.option(
    "--claim-idle-ms",
    type=click.IntRange(min=1),
    help="Claim jobs another worker left pending this long (XAUTOCLAIM) [default 5000].",
)
@click.pass_context
def worker(ctx: click.Context, processes: int, inflight: int, batch: int | None, claim_idle_ms: int | None) -> None:
    """Deliver queued fan-out jobs into home timelines until interrupted (SIGINT or SIGTERM)."""
    settings = settings_from(ctx, fanout_batch=batch, fanout_claim_idle_ms=claim_idle_ms)
    if processes == 1:
        serve(settings, inflight)
        return
    children = start_processes(settings, inflight, processes)
    click.echo(f"{processes} fan-out worker processes started; Ctrl-C stops them after their current jobs")

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)  # a supervisor's SIGTERM stops the children cleanly, not orphans them
    try:
        for child in children:
            child.join()
    except KeyboardInterrupt:
        pass  # the children got SIGINT from the terminal too
    finally:
        stop_processes(children)


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


def serve(settings: Settings, inflight: int = DEFAULT_INFLIGHT) -> None:
    """Run one worker in this process until SIGINT or SIGTERM, then finish its jobs and leave the group."""

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(levelname)s %(message)s")

    async def _serve() -> None:
        async with await Stores.connect(settings) as stores:
            worker = Worker(stores, inflight=inflight)
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, worker.stop)
            logging.getLogger(__name__).info("fan-out worker %s consuming %sfanout:*", worker.consumer, settings.prefix)
            await worker.run()
            logging.getLogger(__name__).info("fan-out worker %s stopped: %s", worker.consumer, worker.counts)

    run(_serve())


def start_processes(settings: Settings, inflight: int, count: int) -> list[BaseProcess]:
    """Start ``count`` worker processes (spawned, so each has its own event loop and connections)."""
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=serve, args=(settings, inflight), name=f"fanout-worker-{i}") for i in range(count)
    ]
    for child in children:
        child.start()
    return children


def stop_processes(children: list[BaseProcess], timeout: float = 30.0) -> None:
    """SIGTERM the workers (they finish their current jobs), then wait; kill any that do not stop in time."""
    for child in children:
        if child.is_alive():
            child.terminate()
    for child in children:
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
