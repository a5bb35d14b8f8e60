"""Open-loop load driver: operations start on a schedule, however slow the earlier ones are.

Arrivals follow a :class:`Schedule` (constant spacing or a seeded Poisson process). Each operation's latency is
measured from its *intended* start, so a stall that delays later operations shows in their latencies (no coordinated
omission); the uncorrected service time (from the moment the operation was actually started) is recorded beside it.
In-flight operations are bounded by a semaphore: when the bound is reached the driver waits for a free slot, counts
the hit, and the waiting shows in the corrected latency only. The target is any async callable taking one operation;
the driver knows nothing of stores.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Generic, Literal, TypeVar

from hdrh.histogram import HdrHistogram

from targets.eventloop import handled_cancel
from targets.histograms import decode, encode, merged, new_histogram, percentile_ms, record_seconds, summary

Op = TypeVar("Op")
Arrival = Literal["constant", "poisson"]
ARRIVALS: tuple[Arrival, ...] = ("constant", "poisson")
DEFAULT_MAX_IN_FLIGHT = 256
#: Upper bounds checked before anything runs: one asyncio driver process offers well under 100,000 operations/s
#: (`fanout bench --calibrate` measures what this machine sustains), and a run of more than a day is a typo.
MAX_RATE = 100_000.0
MAX_DURATION_S = 86_400.0
MAX_IN_FLIGHT = 65_536
#: How long an interrupted run waits for its in-flight operations before cancelling them.
INTERRUPT_GRACE_S = 2.0


@dataclass(frozen=True)
class Schedule:
    """When operations are meant to start: ``rate`` per second for ``duration`` seconds."""

    rate: float
    duration: float
    arrival: Arrival = "constant"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate {self.rate} ops/s is not positive: pass a rate above 0")
        if not self.duration > 0:
            raise ValueError(f"duration {self.duration} s is not positive: pass a duration above 0")
        if self.rate > MAX_RATE:
            raise ValueError(
                f"rate {self.rate:,.0f} ops/s is more than one driver process can offer (at most {MAX_RATE:,.0f}):"
                " measure what this machine sustains with `fanout bench --calibrate --rate R`"
            )
        if self.duration > MAX_DURATION_S:
            raise ValueError(
                f"duration {self.duration:,.0f} s is more than a day (at most {MAX_DURATION_S:,.0f}): pass seconds"
            )
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival {self.arrival!r} is not one of {', '.join(ARRIVALS)}")

    def offsets(self) -> Iterator[float]:
        """Intended start times, in seconds from the start of the run, in order."""
        if self.arrival == "constant":
            count = int(self.rate * self.duration)
            return (i / self.rate for i in range(count))
        return self._poisson()

    def _poisson(self) -> Iterator[float]:
        rng = random.Random(self.seed)
        t = rng.expovariate(self.rate)
        while t < self.duration:
            yield t
            t += rng.expovariate(self.rate)


@dataclass
class KindStats:
    """What was measured for one kind of operation."""

    #: Corrected latency: completion minus intended start.
    latency: HdrHistogram = field(default_factory=new_histogram)
    #: Uncorrected service time: completion minus actual start.
    service: HdrHistogram = field(default_factory=new_histogram)
    errors: Counter[str] = field(default_factory=Counter)
    #: Corrected latency per window of intended start (window index -> histogram).
    windows: dict[int, HdrHistogram] = field(default_factory=dict)
    #: Successful completions per window of completion time.
    completions: Counter[int] = field(default_factory=Counter)
    #: Errors per window of completion time.
    window_errors: Counter[int] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        """Operations that completed without error."""
        return self.latency.get_total_count()

    def window_latency(self, first: int, last: int) -> HdrHistogram:
        """Corrected latency of the operations meant to start in windows ``first``..``last`` (inclusive)."""
        return merged(h for w, h in self.windows.items() if first <= w <= last)


@dataclass(frozen=True)
class LiveStatus:
    """A running run's headline numbers, for progress displays."""

    elapsed_s: float
    offered_rate: float
    achieved_rate: float
    p99_ms: float
    errors: int
    in_flight: int


@dataclass(frozen=True)
class IntervalStatus:
    """What happened since the previous interval status: wrk2/memtier's periodic line."""

    elapsed_s: float
    #: Length of the interval in seconds.
    span_s: float
    offered_rate: float
    achieved_rate: float
    #: Corrected latency of the operations completed in the interval (0.0 when none completed).
    p50_ms: float
    p99_ms: float
    completed: int
    errors: int


@dataclass
class DriveResult:
    """Everything one run of the driver measured."""

    schedule: Schedule
    kinds: dict[str, KindStats]
    window_s: float
    scheduled: int
    issued: int
    completed: int
    errors: int
    elapsed_s: float
    in_flight_bound: int
    bound_hits: int
    max_in_flight: int
    #: Largest delay between an operation's intended start and the moment the driver started it.
    max_start_delay_s: float
    interrupted: bool
    #: Wall-clock time (Unix seconds) of the load's start, to which windows are relative (interval logs).
    started_unix_s: float = 0.0
    #: Subsets of the operations measured once more under a name of their own (``Driver.subset_of``); their
    #: operations are counted in ``kinds`` too, and only there.
    subsets: dict[str, KindStats] = field(default_factory=dict)

    @property
    def offered_rate(self) -> float:
        """Operations issued per second of schedule (what the driver offered)."""
        span = min(self.schedule.duration, self.elapsed_s) if self.interrupted else self.schedule.duration
        return self.issued / span if span > 0 else 0.0

    @property
    def achieved_rate(self) -> float:
        """Operations completed without error per second, from the start to the last completion."""
        return (self.completed - self.errors) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self, kind: str, *, corrected: bool = True) -> dict[str, Any]:
        """Latency figures (ms; None when nothing was measured) of one kind, corrected (default) or uncorrected."""
        stats = self.kinds.get(kind) or KindStats()
        return summary(stats.latency if corrected else stats.service)

    def series(self, kinds: Sequence[str] | None = None) -> list[dict[str, float | int]]:
        """Per-window throughput (completions/s), corrected p99 (ms) and errors, over the chosen kinds."""
        chosen = [self.kinds[k] for k in (kinds or list(self.kinds)) if k in self.kinds]
        last = max((max([*s.windows, *s.completions, 0]) for s in chosen), default=-1)
        rows = []
        for w in range(last + 1):
            hist = merged(s.windows[w] for s in chosen if w in s.windows)
            rows.append(
                {
                    "t_s": round(w * self.window_s, 3),
                    "throughput": round(sum(s.completions[w] for s in chosen) / self.window_s, 3),
                    "p99_ms": percentile_ms(hist, 99.0),  # 0.0 for an empty window
                    "errors": sum(s.window_errors[w] for s in chosen),
                }
            )
        return rows


class Driver(Generic[Op]):
    """Drives ``target`` with operations from ``source`` on a schedule (open loop).

    ``kind_of`` names an operation's kind (default: its ``kind`` attribute). ``extra`` adds operations at fixed
    offsets on top of the schedule (e.g. a burst of celebrity posts); they are recorded like the others.
    ``subset_of`` names a subset an operation also belongs to (or None): its latency is recorded there as well (a
    returning user's first read is a read, and is also looked at on its own).
    """

    def __init__(
        self,
        target: Callable[[Op], Awaitable[Any]],
        source: Callable[[], Op],
        schedule: Schedule,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        kind_of: Callable[[Op], str] | None = None,
        extra: Sequence[tuple[float, Op]] = (),
        window_s: float = 1.0,
        on_record: Callable[[str, float, str | None], None] | None = None,
        subset_of: Callable[[Op], str | None] | None = None,
        share: tuple[int, int] = (0, 1),
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight {max_in_flight} must be at least 1")
        if window_s <= 0:
            raise ValueError(f"window {window_s} s must be positive")
        self.target = target
        self.source = source
        self.schedule = schedule
        self.max_in_flight = max_in_flight
        self.kind_of = kind_of or (lambda op: str(getattr(op, "kind", "op")))
        self.extra = sorted(extra, key=lambda e: e[0])
        self.window_s = window_s
        #: Told ``(kind, seconds from the start when it ended, error name or None)`` of every operation once it is
        #: recorded, outside its timing: a listener (the fault report) needs no wrapper around the target.
        self.on_record = on_record
        self.subset_of = subset_of
        self.subsets: dict[str, KindStats] = {}
        index, processes = share
        if not 0 <= index < processes:
            raise ValueError(f"share {index} of {processes} processes: pass 0 <= index < processes")
        #: (k, n): this driver issues arrivals k, k+n, k+2n... of the whole sequence (one of n driver processes).
        self.share = share
        total = sum(1 for _ in schedule.offsets()) + len(self.extra)
        #: Operations the schedule (and ``extra``) asks of this driver.
        self.planned = len(range(index, total, processes))
        self.kinds: dict[str, KindStats] = {}
        self._start = 0.0
        self._issued = 0
        self._completed = 0
        self._errors = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._bound_hits = 0
        self._max_start_delay = 0.0
        self._last_done = 0.0
        self._running = False
        # Latencies of the current and the previous completion window, for a running p99.
        self._recent_window = 0
        self._recent = new_histogram(4)
        self._previous = new_histogram(4)
        # Latencies and counters since the last interval() call, for periodic status lines.
        self._interval = new_histogram(4)
        self._interval_mark = (0.0, 0, 0, 0)  # (elapsed, issued, completed, errors) at the last call
        self._wall_start = 0.0

    # -- running ----------------------------------------------------------------------------------------------
    async def run(self) -> DriveResult:
        """Issue every scheduled operation, wait for all to finish, and return what was measured.

        A cancelled run (Ctrl-C) stops issuing, gives in-flight operations a short grace period, and returns what
        it measured with ``interrupted`` set.
        """
        slots = asyncio.Semaphore(self.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        interrupted = False
        self._start = time.perf_counter()
        self._wall_start = time.time()
        self._running = True
        try:
            for offset, op in self._arrivals():
                intended = self._start + offset
                delay = intended - time.perf_counter()
                # Yield even when behind schedule, so started operations make progress.
                await asyncio.sleep(max(0.0, delay))
                if slots.locked():
                    self._bound_hits += 1
                await slots.acquire()
                now = time.perf_counter()
                self._max_start_delay = max(self._max_start_delay, now - intended)
                self._issued += 1
                task = asyncio.create_task(self._one(op, intended, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            interrupted = True
            handled_cancel()  # the load stops here; what it measured is returned
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=INTERRUPT_GRACE_S)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            self._running = False
        return self.result(interrupted)

    def _arrivals(self) -> Iterator[tuple[float, Op]]:
        """This driver's share of the scheduled operations merged with the extra ones, by intended start.

        Every scheduled operation is taken from the source, also those another process issues, so that each
        process's seeded source yields the very stream a single driver would.
        """
        index, processes = self.share
        scheduled = ((t, 0, i, None) for i, t in enumerate(self.schedule.offsets()))
        extra = ((t, 1, i, op) for i, (t, op) in enumerate(self.extra))
        for j, (t, source, _, op) in enumerate(heapq.merge(scheduled, extra)):
            if source == 0:
                op = self.source()
            if j % processes == index:
                yield t, op

    async def _one(self, op: Op, intended: float, slots: asyncio.Semaphore) -> None:
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        began = time.perf_counter()
        error: str | None = None
        try:
            await self.target(op)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is measured, by kind, and the run goes on
            error = type(exc).__name__
        finally:
            self._in_flight -= 1
            slots.release()
        done = time.perf_counter()
        self._record(self.kind_of(op), intended, began, done, error)
        subset = self.subset_of(op) if self.subset_of is not None else None
        if subset is not None and error is None:
            stats = self.subsets.setdefault(subset, KindStats())
            record_seconds(stats.latency, done - min(intended, began))
            record_seconds(stats.service, done - began)

    def _record(self, kind: str, intended: float, began: float, done: float, error: str | None) -> None:
        stats = self.kinds.get(kind)
        if stats is None:
            stats = self.kinds[kind] = KindStats()
        self._completed += 1
        self._last_done = max(self._last_done, done)
        done_window = int((done - self._start) / self.window_s)
        if self.on_record is not None:
            self.on_record(kind, done - self._start, error)
        if error is not None:
            self._errors += 1
            stats.errors[error] += 1
            stats.window_errors[done_window] += 1
            return
        # Event-loop timers (uvloop's are millisecond-grained) can wake an operation slightly before its intended
        # start; measuring from the earlier of the two keeps corrected latency >= service time, never below it.
        latency = done - min(intended, began)
        record_seconds(stats.latency, latency)
        record_seconds(stats.service, done - began)
        start_window = max(0, int((intended - self._start) / self.window_s))
        window = stats.windows.get(start_window)
        if window is None:
            window = stats.windows[start_window] = new_histogram(4)
        record_seconds(window, latency)
        stats.completions[done_window] += 1
        if done_window != self._recent_window:
            self._previous, self._recent = self._recent, self._previous
            self._recent.reset()
            self._recent_window = done_window
        record_seconds(self._recent, latency)
        record_seconds(self._interval, latency)

    # -- reporting --------------------------------------------------------------------------------------------
    def live(self) -> LiveStatus:
        """Headline numbers of the run so far."""
        elapsed = time.perf_counter() - self._start if self._running else self._last_done - self._start
        recent = self._previous if self._previous.get_total_count() else self._recent
        return LiveStatus(
            elapsed_s=max(0.0, elapsed),
            offered_rate=self._issued / elapsed if elapsed > 0 else 0.0,
            achieved_rate=(self._completed - self._errors) / elapsed if elapsed > 0 else 0.0,
            p99_ms=percentile_ms(recent, 99.0),
            errors=self._errors,
            in_flight=self._in_flight,
        )

    def interval(self) -> IntervalStatus:
        """Numbers of the interval since the previous call (or since the start), then start a new interval.

        After the load the interval ends at the last completion, as :meth:`live`'s elapsed time does.
        """
        now = time.perf_counter() if self._running else self._last_done
        elapsed = max(0.0, now - self._start)
        was_elapsed, was_issued, was_completed, was_errors = self._interval_mark
        span = elapsed - was_elapsed
        completed, errors = self._completed - was_completed, self._errors - was_errors
        status = IntervalStatus(
            elapsed_s=elapsed,
            span_s=span,
            offered_rate=(self._issued - was_issued) / span if span > 0 else 0.0,
            achieved_rate=(completed - errors) / span if span > 0 else 0.0,
            p50_ms=percentile_ms(self._interval, 50.0),
            p99_ms=percentile_ms(self._interval, 99.0),
            completed=completed,
            errors=errors,
        )
        self._interval.reset()
        self._interval_mark = (elapsed, self._issued, self._completed, self._errors)
        return status

    def result(self, interrupted: bool = False) -> DriveResult:
        """What was measured so far."""
        return DriveResult(
            schedule=self.schedule,
            kinds=self.kinds,
            subsets=self.subsets,
            window_s=self.window_s,
            scheduled=self.planned,
            issued=self._issued,
            completed=self._completed,
            errors=self._errors,
            elapsed_s=max(0.0, self._last_done - self._start),
            in_flight_bound=self.max_in_flight,
            bound_hits=self._bound_hits,
            max_in_flight=self._max_in_flight,
            max_start_delay_s=self._max_start_delay,
            interrupted=interrupted,
            started_unix_s=self._wall_start,
        )


# -- driver processes ----------------------------------------------------------------------------------------------
def stats_to_wire(stats: KindStats) -> dict[str, Any]:
    """One kind's figures as plain data (histograms in HdrHistogram's encoding), to cross a process boundary."""
    return {
        "latency": encode(stats.latency),
        "service": encode(stats.service),
        "errors": dict(stats.errors),
        "windows": {w: encode(h) for w, h in stats.windows.items()},
        "completions": dict(stats.completions),
        "window_errors": dict(stats.window_errors),
    }


def stats_from_wire(data: dict[str, Any]) -> KindStats:
    """:func:`stats_to_wire` undone."""
    return KindStats(
        latency=decode(data["latency"]),
        service=decode(data["service"]),
        errors=Counter(data["errors"]),
        windows={int(w): decode(h) for w, h in data["windows"].items()},
        completions=Counter({int(w): n for w, n in data["completions"].items()}),
        window_errors=Counter({int(w): n for w, n in data["window_errors"].items()}),
    )


def result_to_wire(result: DriveResult) -> dict[str, Any]:
    """A driver's result as plain data (picklable, JSON-able): what a driver process sends its parent."""
    data = {f.name: getattr(result, f.name) for f in fields(result) if f.name not in ("kinds", "subsets")}
    data["kinds"] = {kind: stats_to_wire(s) for kind, s in result.kinds.items()}
    data["subsets"] = {name: stats_to_wire(s) for name, s in result.subsets.items()}
    return data


def result_from_wire(data: dict[str, Any]) -> DriveResult:
    """:func:`result_to_wire` undone."""
    plain = {k: v for k, v in data.items() if k not in ("kinds", "subsets")}
    kinds = {kind: stats_from_wire(s) for kind, s in data["kinds"].items()}
    subsets = {name: stats_from_wire(s) for name, s in data["subsets"].items()}
    return DriveResult(**plain, kinds=kinds, subsets=subsets)


def _merged_stats(parts: Sequence[KindStats]) -> KindStats:
    total = KindStats()
    for s in parts:
        total.latency.add(s.latency)
        total.service.add(s.service)
        total.errors.update(s.errors)
        total.completions.update(s.completions)
        total.window_errors.update(s.window_errors)
        for w, h in s.windows.items():
            total.windows.setdefault(w, new_histogram(4)).add(h)
    return total


def merge_results(results: Sequence[DriveResult]) -> DriveResult:
    """The results of the driver processes that shared one schedule, as one: histograms added value for value
    (exact, so the merged count is the sum of the counts), counters summed, the run spanning from the first start to
    the last completion. Windows are counted from each process's start, which a barrier aligns.

    ``in_flight_bound`` and ``max_in_flight`` are sums over the processes: each had its own bound.
    """
    if not results:
        raise ValueError("no driver results to merge")
    first_start = min(r.started_unix_s for r in results)
    kinds = {k for r in results for k in r.kinds}
    subsets = {k for r in results for k in r.subsets}
    return DriveResult(
        schedule=results[0].schedule,
        kinds={k: _merged_stats([r.kinds[k] for r in results if k in r.kinds]) for k in sorted(kinds)},
        subsets={k: _merged_stats([r.subsets[k] for r in results if k in r.subsets]) for k in sorted(subsets)},
        window_s=results[0].window_s,
        scheduled=sum(r.scheduled for r in results),
        issued=sum(r.issued for r in results),
        completed=sum(r.completed for r in results),
        errors=sum(r.errors for r in results),
        elapsed_s=max(r.started_unix_s + r.elapsed_s for r in results) - first_start,
        in_flight_bound=sum(r.in_flight_bound for r in results),
        bound_hits=sum(r.bound_hits for r in results),
        max_in_flight=sum(r.max_in_flight for r in results),
        max_start_delay_s=max(r.max_start_delay_s for r in results),
        interrupted=any(r.interrupted for r in results),
        started_unix_s=first_start,
    )
