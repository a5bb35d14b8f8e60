"""The open-loop driver: latency from the intended start, so a stall shows in corrected percentiles only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bench.calibration import drive_noop
from bench.driver import Driver, Schedule, merge_results, result_from_wire, result_to_wire
from bench.driver_processes import Gate, run_in_processes

STALL_S = 0.5
RATE = 200.0
DURATION = 3.0
STALL_AT = 200  # the 201st operation, one second into the run


class StallingTarget:
    """Answers at once, except that one known operation holds its connection for STALL_S.

    With one in-flight slot (one connection), every operation meant to start during the stall waits for it: a
    closed-loop tool would time them from when they were finally sent and never see the stall.
    """

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, op: int) -> None:
        self.calls += 1
        if op == STALL_AT:
            await asyncio.sleep(STALL_S)
        else:
            await asyncio.sleep(0)


async def test_corrected_percentiles_show_a_stall_that_uncorrected_ones_hide() -> None:
    counter = iter(range(10**9))
    target = StallingTarget()
    driver = Driver(target, lambda: next(counter), Schedule(RATE, DURATION), max_in_flight=1, kind_of=lambda _: "op")
    result = await driver.run()

    scheduled = int(RATE * DURATION)
    assert result.scheduled == result.issued == result.completed == target.calls == scheduled
    assert result.kinds["op"].count == scheduled
    corrected = result.summary("op")
    uncorrected = result.summary("op", corrected=False)
    # ~100 operations were meant to start during the stall (1/6 of the run): p99 sees it, corrected.
    assert corrected["p99_ms"] >= STALL_S * 1000 / 2
    assert corrected["max_ms"] >= STALL_S * 1000
    # Only the stalled operation itself was slow once started: the max shows it, p99 does not.
    assert uncorrected["max_ms"] >= STALL_S * 1000
    assert uncorrected["p99_ms"] < STALL_S * 1000 / 5
    assert corrected["p99_ms"] > 5 * uncorrected["p99_ms"]
    # The waiting was at the in-flight bound, and the run reports it.
    assert result.in_flight_bound == 1
    assert result.max_in_flight == 1
    assert result.bound_hits > 0
    assert not result.interrupted


async def test_series_and_rates_account_for_every_operation() -> None:
    async def target(op: str) -> None:
        if op == "bad":
            raise RuntimeError("boom")

    ops = iter(["good", "bad"] * 10_000)
    driver = Driver(target, lambda: next(ops), Schedule(100.0, 2.0, "poisson", seed=3), kind_of=lambda op: op)
    result = await driver.run()

    assert result.issued == result.completed == result.scheduled
    assert result.errors == result.kinds["bad"].errors["RuntimeError"] > 0
    assert result.kinds["bad"].count == 0
    assert result.kinds["good"].count + result.errors == result.completed
    series = result.series(["good"])
    assert sum(row["throughput"] * result.window_s for row in series) == pytest.approx(result.kinds["good"].count)
    assert sum(row["errors"] for row in result.series()) == result.errors
    assert result.offered_rate > 0 and result.achieved_rate > 0


async def test_a_subset_is_measured_again_on_its_own_and_counted_once() -> None:
    async def target(op: int) -> None:
        if op % 10 == 9:
            raise RuntimeError("boom")

    ops = iter(range(10_000))
    marked = lambda op: "thirds" if op % 3 == 0 else None  # noqa: E731
    driver = Driver(target, lambda: next(ops), Schedule(200.0, 1.0), kind_of=lambda _: "op", subset_of=marked)
    result = await driver.run()
    sent = range(result.issued)
    assert result.kinds["op"].count + result.errors == result.completed == result.issued  # counted once
    assert set(result.subsets) == {"thirds"}
    assert result.subsets["thirds"].count == sum(1 for op in sent if op % 3 == 0 and op % 10 != 9)  # no failures


async def test_extra_operations_join_the_schedule() -> None:
    seen: list[str] = []

    async def target(op: str) -> None:
        seen.append(op)

    driver = Driver(target, lambda: "tick", Schedule(50.0, 1.0), extra=[(0.5, "burst")] * 3, kind_of=lambda op: op)
    result = await driver.run()
    assert result.scheduled == 53
    assert seen.count("burst") == 3 and seen.count("tick") == 50
    assert 20 <= seen.index("burst") <= 30  # issued around its offset, among the scheduled ones


async def test_cancelled_run_returns_what_it_measured() -> None:
    twenty_done = asyncio.Event()
    calls = 0

    async def target(op: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 21:
            twenty_done.set()

    driver = Driver(target, lambda: 1, Schedule(100.0, 60.0), kind_of=lambda _: "op")
    task = asyncio.create_task(driver.run())
    await twenty_done.wait()
    task.cancel()
    result = await task
    assert result.interrupted
    assert 20 <= result.completed == result.issued < result.scheduled


async def test_calibrate_measures_a_noop_target() -> None:
    result = await drive_noop(rate=500.0, duration=0.5, max_in_flight=16)
    assert result.completed == 250 and result.errors == 0


async def test_shares_issue_every_arrival_once_with_the_single_driver_stream() -> None:
    """Three drivers sharing a schedule issue, together, exactly what one driver issues: each arrival once, with the
    operation a single driver's source would have given it (the source is consumed in step)."""

    def counter() -> Callable[[], int]:
        n = iter(range(1_000_000))
        return lambda: next(n)

    schedule = Schedule(2_000.0, 0.2, "poisson", seed=5)
    extra = [(0.05, -1), (0.1, -2)]
    seen: list[int] = []

    async def target(op: int) -> None:
        seen.append(op)

    alone = await Driver(target, counter(), schedule, extra=extra, kind_of=lambda _: "op").run()
    single, seen[:] = sorted(seen), []
    parts = []
    for k in range(3):
        driver = Driver(target, counter(), schedule, extra=extra, kind_of=lambda _: "op", share=(k, 3))
        parts.append(await driver.run())
        assert driver.planned == parts[-1].issued
    assert sorted(seen) == single and len(seen) == len(set(seen)) == alone.issued
    merged = merge_results([result_from_wire(result_to_wire(p)) for p in parts])
    assert merged.kinds["op"].count == sum(p.kinds["op"].count for p in parts) == alone.completed
    assert merged.scheduled == merged.issued == alone.scheduled


async def test_driver_processes_merge_to_the_operations_sent() -> None:
    """Two spawned driver processes: the merged histogram counts every operation the schedule sent, no more."""
    result = await drive_noop(rate=400.0, duration=0.5, max_in_flight=16, processes=2)
    assert result.issued == result.scheduled == 200
    assert result.kinds["noop"].count == result.kinds["noop"].latency.get_total_count() == 200
    assert result.in_flight_bound == 32


@pytest.mark.parametrize(("rate", "duration", "arrival"), [(0, 1, "constant"), (1, -1, "constant"), (1, 1, "burst")])
def test_bad_schedules(rate: float, duration: float, arrival: str) -> None:
    with pytest.raises(ValueError):
        Schedule(rate, duration, arrival)  # type: ignore[arg-type]


def test_an_operation_started_early_is_timed_from_its_actual_start() -> None:
    """uvloop's millisecond timers can wake an operation up to 1 ms before its intended start (seen: a third of the
    operations of a 1,000/s run). Its corrected latency must then count from when it really began, never be shorter
    than its service time."""
    driver = Driver(lambda op: asyncio.sleep(0), lambda: 0, Schedule(1.0, 1.0), kind_of=lambda _: "op")
    driver._start = 100.0
    driver._record("op", intended=101.0, began=100.999, done=101.002, error=None)  # 1 ms early, 3 ms of service
    corrected = driver.result(False).summary("op")
    uncorrected = driver.result(False).summary("op", corrected=False)
    assert corrected["max_ms"] == pytest.approx(3.0, rel=0.01)
    assert corrected["max_ms"] >= uncorrected["max_ms"]


async def _second_fails_mid_load(payload: int, index: int, processes: int, gate: Gate) -> int:
    await gate.wait()
    if index == 1:
        raise RuntimeError("boom")
    return payload + index


async def test_a_failing_driver_process_leaves_the_others_results() -> None:
    """One process failing after the load started costs only its own share: the others' values come back, with the
    failure named in one line (the run then keeps their figures and undoes their changes)."""
    values, interrupted, failure = await run_in_processes(_second_fails_mid_load, 10, 3)
    assert values == [10, 12] and not interrupted
    assert failure == "driver process 1: RuntimeError: boom"
