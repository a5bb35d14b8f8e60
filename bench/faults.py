"""Faults as part of a benchmark: ``--fault redis-restart@15s`` crashes a store or a worker at a set time of the load.

Kinds (:data:`KINDS`):

- ``redis-restart``: SIGKILL the private redis-server, start it again on the same port. Without persistence it comes
  back empty: queue, timelines and post cache are gone (the run rebuilds them, :mod:`bench.recovery`).
- ``pg-restart``: SIGQUIT the private postmaster (immediate shutdown, as a crash) and start it again; it runs crash
  recovery, which resets its statistics (the run's per-operation Postgres figures are then marked invalid).
- ``kill-worker``: SIGKILL one of the run's fan-out worker processes mid-delivery and start a replacement; the jobs
  it held are claimed by a live worker after ``fanout_claim_idle_ms``.
- ``redis-primary-kill``: on the Redis Cluster ``fanout up --redis-cluster N --replicas 1`` started, SIGKILL the
  primary serving slot 0; its replica takes over (the cluster client follows the failover, retrying with back-off),
  and the killed node is started again as the new primary's replica. Its action time is the failover's.
- ``redis-pause=700ms``: SIGSTOP the private redis-server for that long, then SIGCONT (a stall: a long command, a
  fork, a VM pause). Nothing fails; every operation in flight or arriving meanwhile waits, and the open-loop driver
  charges the wait to each of them.

Store faults act only on servers ``fanout up`` started from this directory (:func:`devservers.manager.crash_restart`
refuses any other, before the run starts), unless ``--fault-exec KIND=COMMAND`` names the command that does it to an
external server (``redis-restart='systemctl restart redis-server'``): then that command runs at the fault's time.
``@every-Ns`` repeats a fault (each occurrence is injected and reported on its own).

:class:`FaultRun` injects the faults at their times, measured from the load's start, and watches every operation's
outcome from outside the target (it wraps the target, as the driver sees it); :meth:`FaultRun.block` then says per
fault what the operations saw and how long recovery took.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shlex
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from bench.driver import DriveResult
from devservers.manager import CLUSTER_KEY, crash_restart, kill_cluster_primary, pause
from targets.config import Settings
from targets.errors import FanoutError
from targets.histograms import merged, percentile_ms

KINDS = ("redis-restart", "pg-restart", "kill-worker", "redis-pause", "redis-primary-kill")
#: The private server each store fault acts on (the state file's key).
SERVER_OF = {
    "redis-restart": "redis",
    "pg-restart": "postgres",
    "redis-pause": "redis",
    "redis-primary-kill": CLUSTER_KEY,
}
#: Kinds that last a while (``KIND=DURATION@TIME``); the others are instants.
LASTING = frozenset({"redis-pause"})
#: "Back to steady": read p99 of a one-second window at most this multiple of the p99 before the fault, or at most
#: ``STEADY_SLACK_MS`` above it (a window holds a few hundred reads: its p99 rests on a handful of them, so a tighter
#: bound would call noise an outage).
STEADY_FACTOR = 2.0
STEADY_SLACK_MS = 2.0

_TIME = r"\d+(?:\.\d+)?(?:ms|s)?"
_SPEC = re.compile(rf"^(?P<kind>[a-z-]+)(?:=(?P<length>{_TIME}))?@(?P<every>every-)?(?P<at>{_TIME})$")


@dataclass(frozen=True)
class Fault:
    """One fault: what, and when (seconds after the load's start)."""

    kind: str
    at_s: float
    #: How long a lasting fault lasts (a pause), None for an instant one.
    length_s: float | None = None
    #: Repeated every so many seconds (from ``at_s`` = the first time on), None for once.
    every_s: float | None = None

    @property
    def label(self) -> str:
        """As it is written on the command line."""
        length = f"={self.length_s * 1000:g}ms" if self.length_s is not None else ""
        at = f"every-{self.every_s:g}s" if self.every_s is not None else f"{self.at_s:g}s"
        return f"{self.kind}{length}@{at}"

    def times(self, duration: float) -> list[float]:
        """When it happens during a load of ``duration`` seconds."""
        if self.every_s is None:
            return [self.at_s]
        return [self.every_s * i for i in range(1, math.ceil(duration / self.every_s)) if self.every_s * i < duration]


def parse_fault(text: str) -> Fault:
    """``KIND@TIME`` or, for a lasting kind, ``KIND=DURATION@TIME`` (times in s or ms); ValueError with a one-line
    message naming the fix."""
    match = _SPEC.match(text.strip())
    if match is None or match["kind"] not in KINDS:
        raise ValueError(
            f"fault {text!r} is not KIND@SECONDS (e.g. redis-restart@15s, redis-pause=700ms@10s) with KIND one of "
            f"{', '.join(KINDS)}"
        )
    kind = match["kind"]
    if (match["length"] is None) == (kind in LASTING):
        form = f"{kind}=DURATION@TIME (e.g. {kind}=700ms@10s)" if kind in LASTING else f"{kind}@TIME"
        raise ValueError(f"fault {text!r}: write it as {form}")
    length = _seconds(match["length"]) if match["length"] is not None else None
    if length is not None and not length > 0:
        raise ValueError(f"fault {text!r}: its duration must be above 0")
    at = _seconds(match["at"])
    every = at if match["every"] else None
    if every is not None and not (every > 0 and every > (length or 0)):
        raise ValueError(f"fault {text!r}: its period must be above 0 and longer than its duration")
    return Fault(kind, at, length, every)


def _seconds(text: str) -> float:
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text.removesuffix("s"))


def parse_exec(text: str) -> tuple[str, str]:
    """``KIND=COMMAND`` of ``--fault-exec``; ValueError naming the fix."""
    kind, sep, command = text.partition("=")
    if not sep or kind not in SERVER_OF or not command.strip():
        raise ValueError(
            f"--fault-exec {text!r} is not KIND=COMMAND with KIND one of {', '.join(SERVER_OF)} "
            "(e.g. redis-restart='systemctl restart redis')"
        )
    return kind, command.strip()


def check_faults(faults: Sequence[Fault], duration: float) -> None:
    """Every fault falls inside the load (ValueError naming the fault and the fix otherwise)."""
    for fault in faults:
        if not 0 < fault.at_s < duration:
            if fault.every_s is not None:
                raise ValueError(
                    f"fault {fault.label} never happens in the {duration:g}s load: repeat it more often than that"
                )
            raise ValueError(
                f"fault {fault.label} is not inside the {duration:g}s load: give a time between 0 and the --duration"
            )


#: What carries out a fault: returns a short description of what it did.
Action = Callable[[Fault], Awaitable[str]]
#: How long a --fault-exec command may take.
FAULT_COMMAND_TIMEOUT_S = 300.0


def fault_actions(
    settings: Settings, fault_exec: dict[str, str], kill_worker: Callable[[], str], announce: Callable[[str], None]
) -> Action:
    """What carries out each kind: a store fault on the private server ``fanout up`` started (or the user's
    ``--fault-exec`` command), ``kill-worker`` by ``kill_worker``; ``announce`` is told each fault as it starts."""

    async def act(fault: Fault) -> str:
        announce(f"fault: {fault.label}")
        if fault.kind == "kill-worker":
            return kill_worker()
        command = fault_exec.get(fault.kind)
        if command is not None:
            return await asyncio.to_thread(run_fault_command, fault.kind, command)
        key = SERVER_OF[fault.kind]
        url = settings.database_url if key == "postgres" else settings.redis_url
        if fault.kind == "redis-primary-kill":
            return await asyncio.to_thread(kill_cluster_primary, url)
        if fault.length_s is not None:
            await asyncio.to_thread(pause, key, url, fault.length_s)
            return f"paused the private {key} server for {fault.length_s:g}s"
        entry = await asyncio.to_thread(crash_restart, key, url)
        return f"crashed and restarted the private {key} server (now pid {entry['pid']})"

    return act


def run_fault_command(kind: str, command: str) -> str:
    """Run the user's command for a fault on an external server; its output is not kept (it may hold secrets)."""
    try:
        done = subprocess.run(
            shlex.split(command), capture_output=True, text=True, timeout=FAULT_COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FanoutError(f"the --fault-exec command for {kind} did not run ({type(exc).__name__})") from None
    if done.returncode != 0:
        raise FanoutError(f"the --fault-exec command for {kind} exited with {done.returncode}")
    return f"ran the --fault-exec command for {kind} (exit 0)"


def replace_worker(workers: list[BaseProcess], start_one: Callable[[], BaseProcess]) -> str:
    """SIGKILL the first live fan-out worker of ``workers``, as a crash would, and put ``start_one()`` in its place."""
    victim = next((w for w in workers if w.is_alive() and w.pid is not None), None)
    if victim is None or victim.pid is None:
        raise FanoutError("no live fan-out worker to kill")
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    replacement = start_one()
    workers[workers.index(victim)] = replacement
    return f"killed fan-out worker pid {victim.pid}, started pid {replacement.pid}"


@dataclass
class _Injected:
    fault: Fault
    began_s: float
    done_s: float | None = None
    detail: str = ""
    error: str | None = None


class FaultRun:
    """Injects faults during one strategy's load and records what every operation saw, for :meth:`block`."""

    def __init__(self, faults: Sequence[Fault], act: Action, duration: float) -> None:
        # A repeated fault is one injection per time (each with its own block).
        self.faults = sorted(
            (Fault(f.kind, t, f.length_s) for f in faults for t in f.times(duration)), key=lambda f: f.at_s
        )
        self.act = act
        self.origin = 0.0
        self.injected: list[_Injected] = []
        #: (seconds from the load's start when it finished, kind of operation, error name or None), from about the
        #: first fault's time on (nothing earlier is looked at; a timer may wake the injection a little early).
        self.outcomes: list[tuple[float, str, str | None]] = []
        self._from = max(0.0, self.faults[0].at_s - 1.0) if self.faults else 0.0
        self._task: asyncio.Task[None] | None = None

    def record(self, kind: str, at_s: float, error: str | None) -> None:
        """The driver's ``on_record`` listener: one operation ended ``at_s`` seconds into the load."""
        if at_s >= self._from:
            self.outcomes.append((at_s, kind, error))

    def start(self) -> None:
        """The load starts now: schedule the faults."""
        self.origin = time.perf_counter()
        self._task = asyncio.create_task(self._inject())

    async def settle(self) -> None:
        """Wait until every fault due during the load has been carried out (a restart under way completes)."""
        if self._task is not None:
            await self._task

    def cancel(self) -> None:
        """Ctrl-C: inject nothing more (a restart under way is a thread; it completes on its own)."""
        if self._task is not None:
            self._task.cancel()

    async def _inject(self) -> None:
        for fault in self.faults:
            delay = self.origin + fault.at_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            record = _Injected(fault, time.perf_counter() - self.origin)
            self.injected.append(record)
            try:
                record.detail = await self.act(fault)
            except Exception as exc:  # the fault could not be carried out: say so, and go on measuring
                record.error = f"{type(exc).__name__}: {exc}"[:300]
            record.done_s = time.perf_counter() - self.origin

    def block(self, drive: DriveResult, publish_kinds: Sequence[str]) -> list[dict[str, Any]]:
        """Per fault: errors by operation and kind, recovery times, p99 during and after (see the module doc)."""
        blocks = []
        ends = [r.began_s for r in self.injected[1:]] + [drive.elapsed_s]
        w = drive.window_s
        for i, (record, end) in enumerate(zip(self.injected, ends, strict=True)):
            # Up to the next fault, whole windows before it; up to the end, the last (partly filled) window too.
            last = math.ceil(end / w) - 1 if i == len(ends) - 1 else int(end / w) - 1
            blocks.append(self._one(record, end, last, drive, publish_kinds))
        return blocks

    def _one(
        self, record: _Injected, end: float, last: int, drive: DriveResult, publish_kinds: Sequence[str]
    ) -> dict[str, Any]:
        start = record.began_s
        seen = [(t, kind, err) for t, kind, err in self.outcomes if start <= t < end]
        errors: dict[str, Counter[str]] = {}
        for _t, kind, err in seen:
            if err is not None:
                errors.setdefault(kind, Counter())[err] += 1
        error_times = [t for t, _k, err in seen if err is not None]
        last_error = max(error_times, default=None)
        # From the fault until operations succeed again for good: the first success after its last error (0 when
        # nothing failed; None when nothing succeeded after).
        recovered: float | None = 0.0
        if last_error is not None:
            first_success = min((t for t, _k, err in seen if err is None and t > last_error), default=None)
            recovered = None if first_success is None else round(first_success - start, 3)
        steady_w = _steady_window(drive, start, last)
        w = drive.window_s
        first_w, end_w = int(start / w), max(int(start / w), last)
        reads = ("read",)
        publishes = ("post", *publish_kinds)
        during_last = (steady_w - 1) if steady_w is not None else end_w
        after_first = steady_w if steady_w is not None else end_w + 1

        def p99(kinds: Sequence[str], first: int, last: int) -> float | None:
            hists = [drive.kinds[k].window_latency(first, last) for k in kinds if k in drive.kinds]
            counts = sum(h.get_total_count() for h in hists)
            if not counts:
                return None
            return round(percentile_ms(merged(hists), 99.0), 3)

        return {
            "fault": record.fault.label,
            "injected_s": round(start, 3),
            "action_s": round((record.done_s or start) - start, 3),
            "action": record.detail,
            **({"action_error": record.error} if record.error else {}),
            "errors": {kind: dict(c) for kind, c in errors.items()},
            "error_count": len(error_times),
            "first_error_s": round(min(error_times) - start, 3) if error_times else None,
            "last_error_s": round(last_error - start, 3) if last_error is not None else None,
            "recovered_s": recovered,
            # From the fault until read p99 is back within the steady bound, error-free, to the next fault or the end.
            # (0 when the fault's own window already was: a fault injected a hair before a window's start lands
            # in the window before it.)
            "steady_s": round(max(0.0, steady_w * w - start), 3) if steady_w is not None else None,
            "read_p99_during_ms": p99(reads, first_w, during_last),
            "read_p99_after_ms": p99(reads, after_first, end_w),
            "publish_p99_during_ms": p99(publishes, first_w, during_last),
            "publish_p99_after_ms": p99(publishes, after_first, end_w),
        }


def _steady_window(drive: DriveResult, start: float, last: int) -> int | None:
    """The first window from the fault's on whose read p99 stays within the steady bound, error-free, up to window
    ``last``.

    The bound is :data:`STEADY_FACTOR` times the read p99 of the windows before the fault (None without them).
    """
    w = drive.window_s
    first = int(start / w)
    reads = drive.kinds.get("read")
    if reads is None or first < 1 or last < first:
        return None
    before = reads.window_latency(0, first - 1)
    if not before.get_total_count():
        return None
    base = percentile_ms(before, 99.0)
    bound = max(base * STEADY_FACTOR, base + STEADY_SLACK_MS)
    errors = Counter[int]()
    for stats in drive.kinds.values():
        errors.update(stats.window_errors)
    steady = None
    for window in range(last, first - 1, -1):  # from the end back: the last run of good windows
        hist = reads.windows.get(window)
        good = errors[window] == 0 and (hist is None or percentile_ms(hist, 99.0) <= bound)
        if not good:
            break
        steady = window
    return steady
