"""Closed-loop throughput runs: the open-loop driver offered far more than a target serves, so its in-flight bound
sets the pace, stopped after a fixed time; what ``fanout perf read`` and ``fanout perf http`` measure with."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from bench.driver import Driver, DriveResult, Schedule

#: Offered rate, far above what one Python process serves: the in-flight bound then sets the pace.
OFFERED_RATE = 100_000.0
Op = TypeVar("Op")


def saturating_schedule(duration: float) -> Schedule:
    """A schedule twice as long as the run: the run is stopped at ``duration``, long before it is spent."""
    return Schedule(OFFERED_RATE, 2 * duration)


async def saturate(driver: Driver[Op], duration: float) -> DriveResult:
    """Run the driver for ``duration`` seconds, then stop it (as Ctrl-C would) and keep what it measured."""
    task = asyncio.create_task(driver.run())
    await asyncio.sleep(duration)
    task.cancel()
    return await task


def figures(result: DriveResult) -> dict[str, Any]:
    """A row's figures: reads/s, reads, errors and service-time percentiles (ms) of the ``read`` kind."""
    summary = result.summary("read", corrected=False)
    return {
        "reads_per_s": round(result.achieved_rate, 1),
        "reads": summary["count"],
        "errors": result.errors,
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
    }
