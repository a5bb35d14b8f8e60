"""One schedule's arrivals shared among N driver processes (``--driver-processes N``).

One asyncio process offers what one core can; N processes offer N cores' worth. Each process runs the same
coroutine with its index k and the count n; a driver given ``share=(k, n)`` issues arrivals k, k+n, k+2n... of the
whole sequence, so together they issue exactly the schedule one driver would, at its rate and with its distribution.
The processes are spawned (a fork of a process running an event loop is not safe), prepare (connect, warm up), then
meet the parent at a barrier so that their loads start together, and send back what they measured: the parent merges
it (:func:`bench.driver.merge_results`). A Ctrl-C reaches the processes too: each returns what it measured, marked
interrupted, and the parent keeps all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from targets.errors import FanoutError
from targets.eventloop import handled_cancel, run

T = TypeVar("T")
#: What runs in each process: ``main(payload, k, n, gate)``, a module-level coroutine function (spawned processes
#: import it by name), which awaits ``gate.wait()`` when it is ready for the load to start.
Main = Callable[[Any, int, int, "Gate"], Awaitable[T]]
#: How long the processes may take to start and prepare (import, connect, warm up) before the run gives up.
READY_TIMEOUT_S = 120.0
POLL_S = 0.2
MAX_PROCESSES = 64
_CONTEXT = multiprocessing.get_context("spawn")


class Gate:
    """The barrier at which the driver processes (and the parent) meet before the load starts."""

    def __init__(self, barrier: Any) -> None:
        self._barrier = barrier

    async def wait(self) -> None:
        """Wait until every process (and the parent) is ready; raises FanoutError when one of them failed."""
        try:
            await asyncio.to_thread(self._barrier.wait, READY_TIMEOUT_S)
        except threading.BrokenBarrierError:
            raise FanoutError("another driver process failed before the load started") from None


def _process(main: Main[Any], payload: Any, index: int, processes: int, barrier: Any, results: Any) -> None:
    """A driver process: run ``main`` and send back its value, or its error in one line."""
    try:
        value = run(main(payload, index, processes, Gate(barrier)))
    except BaseException as exc:
        barrier.abort()
        results.put((index, None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__))
        return
    results.put((index, value, None))


async def run_in_processes(
    main: Main[T], payload: Any, processes: int, on_start: Callable[[], None] | None = None
) -> tuple[list[T], bool, str | None]:
    """Run ``main`` in ``processes`` spawned processes; returns the values of those that finished (by index), whether
    the run was interrupted (Ctrl-C), and why some process failed, in one line (None when none did). What the others
    measured and did is returned all the same: the caller keeps their figures and undoes their changes."""
    if not 1 <= processes <= MAX_PROCESSES:
        raise FanoutError(f"--driver-processes {processes}: pass 1 to {MAX_PROCESSES}")
    barrier = _CONTEXT.Barrier(processes + 1)
    results = _CONTEXT.Queue()
    procs = [
        _CONTEXT.Process(target=_process, args=(main, payload, i, processes, barrier, results), daemon=True)
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    values: dict[int, T] = {}
    errors: list[str] = []
    interrupted = False
    try:
        try:
            await Gate(barrier).wait()
        except FanoutError:
            pass  # the failing process's own error is collected below
        else:
            if on_start is not None:
                on_start()
        while len(values) + len(errors) < processes:
            try:
                index, value, error = await asyncio.to_thread(results.get, True, POLL_S)
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    errors.append("a driver process exited without a result")
                    break
                continue
            except asyncio.CancelledError:
                # Ctrl-C: the processes return what they measured (a terminal's SIGINT reached them already).
                handled_cancel()
                interrupted = True
                _interrupt(procs)
                continue
            if error is not None:
                errors.append(f"driver process {index}: {error}")
            else:
                values[index] = value
    finally:
        barrier.abort()  # frees a parent thread still waiting at it (a Ctrl-C before the start)
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    failure = None
    if errors:
        # The process that failed first names the cause; the others only saw the barrier break.
        errors.sort(key=lambda e: "another driver process failed" in e)
        failure = errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
    return [values[i] for i in sorted(values)], interrupted, failure


def _interrupt(procs: list[Any]) -> None:
    for p in procs:
        if p.is_alive() and p.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGINT)
