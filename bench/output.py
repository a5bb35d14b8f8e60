"""What ``fanout bench`` prints while it runs, besides the live display: interval lines and the workers' logs.

Without a terminal (piped, logged, CI) a rich live display renders nothing until it stops, so the run prints one
status line every ``interval`` seconds instead, as wrk2 and memtier_benchmark do (:class:`IntervalLines`). The fan-out
worker processes log through :mod:`logging`; :func:`worker_logs` brings their records into this process, where they
go to a file or through rich's handler, which prints above a live display instead of into it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from logging.handlers import QueueListener
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, ProgressColumn, TextColumn, TimeElapsedColumn

from bench.driver import Driver, IntervalStatus, LiveStatus
from bench.report.csvfile import write_csv
from bench.report.latency import latency_report
from bench.report.tables import number

DEFAULT_INTERVAL_S = 5.0
#: Below this width the live display uses a short bar and a short status, so its line fits (80 columns).
WIDE_CONSOLE = 110


@dataclass(frozen=True)
class OutputOptions:
    """How ``fanout bench`` reports besides its table and result file (none of these changes what is measured)."""

    #: Seconds between status lines when the output is not a terminal.
    interval: float = DEFAULT_INTERVAL_S
    #: Print the percentile distribution (wrk2 ``--latency``) per strategy and operation.
    latency: bool = False
    #: Directory for HdrHistogram interval logs (``.hlog``), one per strategy and operation.
    hdr_log: Path | None = None
    #: CSV file of the table (the per-second series goes beside it, see :mod:`bench.report.csvfile`).
    csv: Path | None = None
    #: File for the fan-out workers' log records (default: printed above the live display).
    worker_log: Path | None = None


#: The last line of a run, when its interval is shorter than this (or than half an interval), covers the operations
#: still in flight when the schedule ended: it gets counts, not rates (9 completions in 20 ms would read "achieved
#: 450/s" with nothing offered).
SHORT_SPAN_S = 1.0


def interval_line(name: str, status: IntervalStatus, *, tail: bool = False) -> str:
    """One status line: elapsed, offered/achieved rate, the interval's p50/p99 (ms), errors; figures as the table
    prints them, so a line fits 80 columns up to 999.9 s, 9,999 ops/s, a p99 of 9,999 ms and 999 errors (with a name
    of up to six letters; a longer name is printed whole, as ``adaptive``, two columns later).

    ``tail``: the line of the operations that completed after the schedule ended (counts instead of rates).
    """
    if tail:
        return (
            f"{name:<6} {status.elapsed_s:5.1f}s + {status.completed:,} op(s) in flight at the end: "
            f"p50 {number(status.p50_ms)} p99 {number(status.p99_ms)} ms errors {status.errors}"
        )
    return (
        f"{name:<6} {status.elapsed_s:5.1f}s offered {number(status.offered_rate):>5}/s "
        f"achieved {number(status.achieved_rate):>5}/s p50 {number(status.p50_ms):>5} "
        f"p99 {number(status.p99_ms):>5} ms errors {status.errors}"
    )


def status(console: Console, text: str) -> AbstractContextManager[Any]:
    """A spinner with ``text`` on a terminal; elsewhere (no live display to show it) the text as one line."""
    if console.is_terminal:
        return console.status(text)
    console.print(f"{text} ...", highlight=False, soft_wrap=True)
    return nullcontext()


def progress_columns(console: Console) -> list[ProgressColumn]:
    """The live display's columns: strategy, bar, elapsed time, status (a short bar in a narrow terminal)."""
    bar = BarColumn() if console.width >= WIDE_CONSOLE else BarColumn(bar_width=10)
    return [TextColumn("{task.description:<7}"), bar, TimeElapsedColumn(), TextColumn("{task.fields[status]}")]


def live_text(live: LiveStatus, console: Console) -> str:
    """The live display's status of a running strategy, short enough for the console's width."""
    if console.width >= WIDE_CONSOLE:
        return (
            f"offered {live.offered_rate:6.1f}/s  achieved {live.achieved_rate:6.1f}/s  "
            f"p99 {live.p99_ms:7.2f} ms  in flight {live.in_flight:3d}  errors {live.errors}"
        )
    return (
        f"{number(live.offered_rate):>5}/{number(live.achieved_rate):<5} ops/s p99 {number(live.p99_ms):>5} ms "
        f"in flight {live.in_flight} err {live.errors}"
    )


def worth_a_line(status: IntervalStatus, interval: float) -> bool:
    """Whether an interval gets its line: any that completed something, and one of the load without completions (a
    stall); not the empty ones after the load, while drain and oracle run (their clock stopped at the last completion).
    """
    return status.completed > 0 or status.span_s >= interval / 2


class IntervalLines:
    """Prints a strategy's :func:`interval_line` every ``interval`` seconds while its driver runs.

    Has the interface of ``fanout bench``'s live watcher (``attach`` the driver, ``stop`` at the end); stopping
    prints the last, partial interval so every completed operation is in some line.
    """

    def __init__(self, console: Console, name: str, interval: float = DEFAULT_INTERVAL_S, announce: str = "") -> None:
        if interval <= 0:
            raise ValueError(f"interval {interval} s is not positive: pass --interval above 0")
        self.console, self.name, self.interval, self.announce = console, name, interval, announce
        self._driver: Driver[Any] | None = None
        self._loop: asyncio.Task[None] | None = None

    def attach(self, driver: Driver[Any]) -> None:
        """Start printing for ``driver`` (its load starts right after this), after the ``announce`` line."""
        if self.announce:
            self.console.print(self.announce, highlight=False, soft_wrap=True)
        self._driver = driver
        self._loop = asyncio.create_task(self._print_every())

    def stop(self) -> None:
        """Stop printing, after a line for the interval in progress (if anything completed in it)."""
        if self._loop is not None:
            self._loop.cancel()
        if self._driver is not None:
            status = self._driver.interval()
            if status.completed:
                self._print(status, tail=status.span_s < min(SHORT_SPAN_S, self.interval / 2))
            self._driver = None

    async def _print_every(self) -> None:
        assert self._driver is not None
        while True:
            await asyncio.sleep(self.interval)
            status = self._driver.interval()
            if worth_a_line(status, self.interval):
                self._print(status)

    def _print(self, status: IntervalStatus, *, tail: bool = False) -> None:
        self.console.print(interval_line(self.name, status, tail=tail), highlight=False, soft_wrap=True)


class WorkerLogs:
    """Worker processes' log records (``start_workers(..., log_queue=logs.queue)``), handled here until :meth:`close`.

    Records go to ``file`` when given, else to rich's handler on ``console``, which prints above a live display.
    """

    def __init__(self, console: Console, file: Path | None = None) -> None:
        self.handler: logging.Handler
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            self.handler = logging.FileHandler(file)
            self.handler.setFormatter(logging.Formatter("%(asctime)s %(processName)s %(levelname)s %(message)s"))
        else:
            self.handler = RichHandler(console=console, show_path=False)
        self.queue: Any = multiprocessing.get_context("spawn").Queue()
        self._listener = QueueListener(self.queue, self.handler, respect_handler_level=True)
        self._listener.start()

    def close(self) -> None:
        """Handle what is still queued, then stop (call after the workers have stopped)."""
        self._listener.stop()
        self.handler.close()


def print_extras(console: Console, doc: dict[str, Any], options: OutputOptions) -> None:
    """After the table: the latency distributions (``--latency``) and the CSV files (``--csv``) of the result."""
    if options.latency:
        console.out(latency_report(doc), highlight=False)
    if options.csv is not None:
        table, series = write_csv(doc, options.csv)
        console.print(f"csv: {table} (table), {series} (per-second series)", soft_wrap=True, highlight=False)
