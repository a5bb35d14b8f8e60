"""``fanout bench --calibrate``: what the load driver itself adds, and the highest rate it sustains.

The driver drives a target that does nothing, so the corrected latency it measures is its own overhead (the event
loop's timers, scheduling, recording). At one rate it prints that overhead; with ``--driver-processes N`` it searches,
for 1 and for N processes, the highest rate whose driver-added p99 stays under :data:`ADDED_P99_LIMIT_MS` with at
least :data:`SUSTAINED_FRACTION` of the rate achieved: the most a benchmark on this machine can offer and still
measure latency to a fraction of a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.driver import MAX_RATE, Driver, DriveResult, Schedule, merge_results, result_from_wire, result_to_wire
from bench.driver_processes import Gate, run_in_processes
from targets.errors import FanoutError
from targets.eventloop import run

#: A rate is sustained while the driver adds less than this at p99 ...
ADDED_P99_LIMIT_MS = 1.0
#: ... and completes at least this fraction of it.
SUSTAINED_FRACTION = 0.95
#: Bisection steps between the last sustained and the first unsustained doubling.
REFINE_STEPS = 3
#: Seconds each rate is driven during the search.
STEP_DURATION_S = 3.0


async def _noop(op: object) -> None:
    return None


@dataclass(frozen=True)
class _Job:
    rate: float
    duration: float
    max_in_flight: int


async def _drive_share(job: _Job, index: int, processes: int, gate: Gate) -> dict[str, Any]:
    """One driver process's share of a no-op load (a module-level function: spawned processes import it)."""
    driver: Driver[str] = Driver(
        _noop,
        lambda: "noop",
        Schedule(job.rate, job.duration),
        max_in_flight=job.max_in_flight,
        kind_of=lambda op: op,
        share=(index, processes),
    )
    await gate.wait()
    return result_to_wire(await driver.run())


async def drive_noop(rate: float, duration: float, max_in_flight: int, processes: int = 1) -> DriveResult:
    """A no-op load at ``rate`` for ``duration`` seconds from ``processes`` driver processes, merged."""
    if processes == 1:
        driver: Driver[str] = Driver(
            _noop, lambda: "noop", Schedule(rate, duration), max_in_flight=max_in_flight, kind_of=lambda op: op
        )
        return await driver.run()
    wires, _, failure = await run_in_processes(_drive_share, _Job(rate, duration, max_in_flight), processes)
    if failure is not None:  # a calibration step is all of its processes or nothing
        raise FanoutError(failure)
    return merge_results([result_from_wire(w) for w in wires])


def sustains(result: DriveResult, rate: float) -> bool:
    """Whether a no-op run sustained ``rate``: added p99 under the limit, and enough of the rate achieved."""
    added = result.summary("noop")
    p99 = added["p99_ms"]
    return p99 is not None and p99 < ADDED_P99_LIMIT_MS and result.achieved_rate >= SUSTAINED_FRACTION * rate


@dataclass(frozen=True)
class Step:
    """One rate tried by the search."""

    rate: float
    achieved: float
    p99_ms: float | None
    operations: int
    sustained: bool


async def highest_rate(start: float, max_in_flight: int, processes: int) -> tuple[float | None, list[Step]]:
    """The highest rate ``processes`` driver processes sustain: doubling from ``start`` until one fails, then
    bisecting :data:`REFINE_STEPS` times. Returns it (None when even ``start`` fails) and every step tried."""
    steps: list[Step] = []

    async def attempt(rate: float) -> bool:
        result = await drive_noop(rate, STEP_DURATION_S, max_in_flight, processes)
        ok = sustains(result, rate)
        steps.append(Step(rate, result.achieved_rate, result.summary("noop")["p99_ms"], result.completed, ok))
        return ok

    good: float | None = None
    rate = start
    while rate <= MAX_RATE and await attempt(rate):
        good, rate = rate, rate * 2
    bad = min(rate, MAX_RATE)
    if good is None:
        return None, steps
    for _ in range(REFINE_STEPS):
        middle = round((good + bad) / 2)
        if middle in (good, bad):
            break
        if await attempt(middle):
            good = middle
        else:
            bad = middle
    return good, steps


def print_overhead(rate: float, duration: float, max_in_flight: int, processes: int, console: Console) -> None:
    """The driver's added latency at one rate (``fanout bench --calibrate`` with one driver process)."""
    result = run(drive_noop(rate, min(duration, 10.0), max_in_flight, processes))
    corrected = result.summary("noop")
    service = result.summary("noop", corrected=False)
    table = Table(title=f"driver overhead against a no-op target ({result.completed} ops at {rate:g}/s)")
    for column in ("", "p50 ms", "p99 ms", "p99.9 ms", "max ms"):
        table.add_column(column, justify="right")
    for label, s in (("added latency (from intended start)", corrected), ("target call alone", service)):
        table.add_row(label, *(f"{s[k]:.3f}" for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")))
    console.print(table)
    console.print(
        f"offered {result.offered_rate:.1f}/s, achieved {result.achieved_rate:.1f}/s, "
        f"in-flight bound {result.in_flight_bound} hit {result.bound_hits} times"
    )


def print_highest_rates(start: float, max_in_flight: int, processes: int, console: Console) -> None:
    """The highest sustained rate with 1 and with ``processes`` driver processes, and the steps that found it."""
    table = Table(
        title=f"highest rate with driver-added p99 < {ADDED_P99_LIMIT_MS:g} ms "
        f"(no-op target, {STEP_DURATION_S:g} s per step)"
    )
    for column in ("processes", "rate/s", "achieved/s", "p99 ms", "sustained"):
        table.add_column(column, justify="right")
    found: dict[int, float | None] = {}
    for n in sorted({1, processes}):
        best, steps = run(highest_rate(start, max_in_flight, n))
        found[n] = best
        for s in steps:
            p99 = "-" if s.p99_ms is None else f"{s.p99_ms:.3f}"
            table.add_row(str(n), f"{s.rate:,.0f}", f"{s.achieved:,.0f}", p99, "yes" if s.sustained else "no")
    console.print(table)
    for n, best in found.items():
        what = f"{best:,.0f} ops/s" if best else f"not even {start:,.0f} ops/s (lower --rate)"
        console.print(f"{n} driver process{'es' if n > 1 else ''}: highest sustained rate {what}")
