"""One strategy's load from several driver processes (``fanout bench --driver-processes N``).

Each process connects to the stores, opens the same binding (the strategy in process, or the service over HTTP),
builds the same seeded workload and scenario, warms up at its share of the rate, and issues its share of the arrivals
(:mod:`bench.driver_processes`). It sends back its measurements, its publish receipts, the times its writes landed
(sync fan-out) and the follow edges it changed; :func:`drive_in_processes` merges them, so the run goes on exactly as
after a single driver: the same deliveries, undo and oracle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.bindings.factory import open_binding
from bench.bindings.operations import Tally
from bench.bindings.receipts import Published
from bench.driver import DriveResult, merge_results, result_from_wire, result_to_wire
from bench.driver_processes import Gate, run_in_processes
from bench.scenarios.base import BenchConfig
from bench.scenarios.registry import SCENARIOS
from bench.workload import Mix
from graphs.info import GraphInfo
from targets.config import Settings
from targets.errors import FanoutError
from targets.stores.connections import Stores

if TYPE_CHECKING:
    from bench.scenarios.run import WriteLog


@dataclass(frozen=True)
class ShareJob:
    """What every driver process of one strategy's run is given."""

    settings: Settings
    strategy: str
    config: BenchConfig
    graph: GraphInfo


@dataclass
class Shared:
    """What the driver processes measured and did, merged."""

    drive: DriveResult
    published: list[Published]
    #: post id -> [(perf_counter when written, entries)]: the clock is the machine's monotonic one, as the receipts'.
    batches: dict[int, list[tuple[float, int]]]
    churn: list[tuple[int, int, int]]
    #: The workload block (every process walks the whole stream; the first one's tally is the run's).
    workload: dict[str, Any]
    #: Why a driver process failed (None: none did); the figures and changes above are the others'.
    failure: str | None = None


async def _drive_share(job: ShareJob, index: int, processes: int, gate: Gate) -> dict[str, Any]:
    """One driver process (module level: spawned processes import it by name)."""
    from bench.scenarios.run import WriteLog, make_driver, make_workload, warm_up

    config = job.config
    scenario = SCENARIOS[config.scenario](config, job.graph)
    writes = WriteLog()
    churn: list[tuple[int, int, int]] = []
    async with await Stores.connect(job.settings) as stores:
        async with open_binding(
            config.target, job.strategy, stores, config.page_size, churn, writes, config.max_in_flight
        ) as binding:
            mix = Mix(config.read_ratio, config.churn_ratio, config.user_timeline_ratio)
            model = make_workload(config, job.graph, mix, config.seed, scenario.quiet_authors())
            workload = Tally(model.next_op)
            await warm_up(binding.target, dataclasses.replace(config, rate=config.rate / processes), job.graph)
            driver = make_driver(binding.target, workload, config, scenario, share=(index, processes))
            await gate.wait()
            result = await driver.run()
            return {
                "drive": result_to_wire(result),
                "published": binding.published,
                "batches": dict(writes.batches),
                "churn": churn,
                "workload": workload.summary(),
            }


async def drive_in_processes(
    stores: Stores, strategy: str, config: BenchConfig, graph: GraphInfo, on_start: Callable[[], None]
) -> Shared:
    """Run one strategy's load from ``config.driver_processes`` processes and merge what they measured."""
    job = ShareJob(stores.settings, strategy, config, graph)
    parts, interrupted, failure = await run_in_processes(_drive_share, job, config.driver_processes, on_start)
    if not parts:  # nothing was measured, and no process can say what it changed
        raise FanoutError(failure or "no driver process returned a result")
    batches: dict[int, list[tuple[float, int]]] = {}
    for part in parts:
        batches.update(part["batches"])  # a post is published, and its writes timed, by one process
    drive = merge_results([result_from_wire(p["drive"]) for p in parts])
    drive.interrupted = drive.interrupted or interrupted
    return Shared(
        drive=drive,
        published=[p for part in parts for p in part["published"]],
        batches=batches,
        churn=[edge for part in parts for edge in part["churn"]],
        workload=parts[0]["workload"],
        failure=failure,
    )


def merge_writes(writes: WriteLog, batches: dict[int, list[tuple[float, int]]]) -> None:
    """Add the driver processes' write timings to the run's write log."""
    for post_id, landed in batches.items():
        writes.batches[post_id].extend(landed)
