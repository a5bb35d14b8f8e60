"""Fan-out workers as operating-system processes (``fanout worker --processes N``, ``fanout bench``, ``perf fanout``).

Each process runs one :class:`~targets.fanout.worker.Worker` on its own event loop and connections until SIGINT or
SIGTERM, then finishes the jobs it holds and leaves the group, so stopping a worker never loses a job.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import multiprocessing
import os
import signal
from multiprocessing.process import BaseProcess
from typing import Any

from targets.config import Settings
from targets.eventloop import run
from targets.fanout.worker import Worker
from targets.stores.connections import Stores

log = logging.getLogger(__name__)


def run_fanout_worker(settings: Settings, log_queue: Any = None, stop_on_sigint: bool = True) -> None:
    """Run one fan-out worker in this process until SIGINT or SIGTERM, then finish its jobs and leave the group.

    With ``log_queue`` (a multiprocessing queue) its log records go to the parent, which decides where they are shown
    (a live display must not be written into); otherwise to stderr. ``stop_on_sigint`` False: only SIGTERM stops
    it, so a terminal's Ctrl-C (sent to the whole process group) reaches the parent alone, which stops its workers
    when it is done with them.
    """
    if not stop_on_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_queue is not None:
        handler = logging.handlers.QueueHandler(log_queue)
        handler.setFormatter(logging.Formatter("%(processName)s: %(message)s"))  # time and level: the parent's
        logging.basicConfig(level=logging.INFO, handlers=[handler])
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(levelname)s %(message)s")

    async def _run() -> None:
        async with await Stores.connect(settings) as stores:
            worker = Worker(stores)
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM) if stop_on_sigint else (signal.SIGTERM,):
                loop.add_signal_handler(signum, worker.stop)
            log.info("fan-out worker %s consuming %sfanout:*", worker.consumer, settings.prefix)
            await worker.run()
            log.info("fan-out worker %s stopped: %s", worker.consumer, worker.counts)

    run(_run())


def start_workers(
    settings: Settings, count: int, log_queue: Any = None, *, stop_on_sigint: bool = True
) -> list[BaseProcess]:
    """Start ``count`` fan-out worker processes (spawned, so each has its own event loop and connections).

    ``log_queue`` and ``stop_on_sigint``: see :func:`run_fanout_worker`.
    """
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=run_fanout_worker, args=(settings, log_queue, stop_on_sigint), name=f"fanout-worker-{i}")
        for i in range(count)
    ]
    for child in children:
        child.start()
    return children


def stop_workers(children: list[BaseProcess], timeout: float = 30.0) -> None:
    """SIGTERM the workers (they finish their current jobs), then wait; kill any that do not stop in time."""
    for child in children:
        if child.is_alive():
            child.terminate()
    for child in children:
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()


def supervise(children: list[BaseProcess]) -> None:
    """Wait for the workers until they exit or Ctrl-C; a SIGTERM to this process stops them cleanly (a supervisor
    stopping us must not orphan them)."""

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    try:
        for child in children:
            child.join()
    except KeyboardInterrupt:
        pass  # the children got SIGINT from the terminal too
    finally:
        stop_workers(children)
