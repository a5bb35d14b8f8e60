"""What `fanout bench` prints and writes besides its table: interval lines, the latency spectrum, HdrHistogram interval
logs, CSV, and the workers' logs (counts and invariants only, never timings)."""

from __future__ import annotations

import csv
import itertools
import logging
import logging.handlers
from pathlib import Path
from typing import Any

from hdrh.log import HistogramLogReader
from rich.console import Console
from rich.progress import Progress

from bench.driver import Driver, DriveResult, IntervalStatus, LiveStatus, Schedule
from bench.output import (
    IntervalLines,
    WorkerLogs,
    interval_line,
    live_text,
    progress_columns,
    status,
    worth_a_line,
)
from bench.report.csvfile import series_path, write_csv
from bench.report.hdrlog import write_hdr_logs
from bench.report.latency import latency_report
from bench.report.tables import strategies_side_by_side
from targets.histograms import new_histogram
from tests.result_factory import sample_result
from tests.test_report import RUN

KINDS = ("read", "read", "read", "post", "spike")


async def _drive(every: int = 0) -> tuple[Driver[str], DriveResult, list[Any]]:
    """A no-op target under 400 ops/s for 1.5 s (windows of 0.25 s); with ``every``, the target takes an interval
    status every ``every`` operations, so the intervals depend on counts, not on the clock."""
    statuses: list[Any] = []
    calls = itertools.count(1)
    driver: Driver[str]

    async def target(op: str) -> None:
        if every and next(calls) % every == 0:
            statuses.append(driver.interval())
        if op == "post" and len(statuses) % 2:
            raise RuntimeError("an error to count")

    kinds = itertools.cycle(KINDS)
    driver = Driver(target, lambda: next(kinds), Schedule(400.0, 1.5), kind_of=lambda op: op, window_s=0.25)
    result = await driver.run()
    return driver, result, statuses


async def test_intervals_account_for_every_operation_once() -> None:
    driver, result, statuses = await _drive(every=97)
    statuses.append(driver.interval())  # the rest, as IntervalLines.stop() prints it
    assert len(statuses) > 3
    assert sum(s.completed for s in statuses) == result.completed == result.issued
    assert sum(s.errors for s in statuses) == result.errors > 0
    assert all(s.p50_ms <= s.p99_ms for s in statuses)
    assert all(s.span_s >= 0 and s.offered_rate >= 0 for s in statuses)


async def test_interval_lines_print_the_last_interval_and_fit_80_columns() -> None:
    console = Console(record=True, width=80, force_terminal=False)
    driver, result, _ = await _drive()
    lines = IntervalLines(console, "hybrid", 5.0, announce="hybrid: load running")
    lines._driver = driver  # attached after the run: stop() prints what the run did as one interval
    lines.stop()
    text = console.export_text().splitlines()
    assert len(text) == 1 and text[0].startswith("hybrid ") and f"errors {result.errors}" in text[0]
    wide = driver.interval().__class__(999.9, 5.0, 9999.4, 9999.4, 999.4, 9999.4, 99999, 999)
    assert len(interval_line("hybrid", wide)) <= 80


async def test_hdr_logs_read_back_to_the_results_counts(tmp_path: Path) -> None:
    _, result, _ = await _drive()
    paths = write_hdr_logs(tmp_path, "push", result, publish_kinds=("spike",))
    assert sorted(p.name for p in paths) == ["push-publish.hlog", "push-read.hlog"]
    counts = {"read": result.kinds["read"].count, "publish": result.kinds["post"].count + result.kinds["spike"].count}
    windows = max(result.kinds["read"].windows) + 1
    for path in paths:
        reader = HistogramLogReader(str(path), new_histogram())
        intervals = list(iter(reader.get_next_interval_histogram, None))
        reader.close()
        assert len(intervals) == windows  # one interval per driver window, empty ones included
        starts = [h.get_start_time_stamp() for h in intervals]
        assert starts == sorted(starts) and starts[0] >= result.started_unix_s * 1000 - 1
        operation = path.stem.split("-", 1)[1]
        assert sum(h.get_total_count() for h in intervals) == counts[operation] > 0, path.name


def test_latency_prints_wrk2s_percentiles_and_the_spectrum() -> None:
    doc = sample_result(dict(RUN))
    text = latency_report(doc)
    for name, figures in doc["strategies"].items():
        for operation in ("read", "publish"):
            assert f"{name} {operation}: {figures[operation]['count']:,} operations" in text
    blocks = text.count("Latency Distribution (HdrHistogram - Recorded Latency)")
    assert blocks == text.count("Detailed Percentile spectrum:") == 2 * len(doc["strategies"])
    for percentile in (" 50.000", " 75.000", " 90.000", " 99.000", " 99.900", " 99.990", "100.000"):  # wrk2's
        assert text.count(f"\n{percentile}%  ") == blocks, percentile
    push_read = doc["strategies"]["push"]["read"]
    assert f"{push_read['p99_ms']:8.3f}ms" in text.split("push publish")[0]
    assert f"TotalCount     = {float(push_read['count']):12.3f}" in text


def test_csv_holds_the_table_and_the_series(tmp_path: Path) -> None:
    doc = sample_result(dict(RUN))
    table, series = write_csv(doc, tmp_path / "run.csv")
    assert series == series_path(table) == tmp_path / "run.series.csv"
    rows = list(csv.reader(table.open()))
    assert rows[0] == ["section", "metric", *doc["strategies"]]
    assert [r[1] for r in rows[1:]] == strategies_side_by_side(doc).labels()
    p99 = next(r for r in rows if r[1] == "read p99 (ms)")
    assert [float(v) for v in p99[2:]] == [s["read"]["p99_ms"] for s in doc["strategies"].values()]
    points = list(csv.DictReader(series.open()))
    assert len(points) == sum(len(s["series"]) for s in doc["strategies"].values())
    assert {p["strategy"] for p in points} == set(doc["strategies"])


def test_worker_log_records_reach_the_file(tmp_path: Path) -> None:
    logs = WorkerLogs(Console(), tmp_path / "workers.log")
    child = logging.getLogger("tests.worker")  # what a worker process does with its QueueHandler
    handler = logging.handlers.QueueHandler(logs.queue)
    child.addHandler(handler)
    child.setLevel(logging.INFO)
    try:
        child.info("fan-out worker %s consuming", "w1")
    finally:
        child.removeHandler(handler)
        logs.close()
    assert "fan-out worker w1 consuming" in (tmp_path / "workers.log").read_text()


def test_a_stall_gets_its_line_and_the_time_after_the_load_does_not() -> None:
    def interval(span: float, completed: int) -> IntervalStatus:
        return IntervalStatus(20.0, span, 0.0, 0.0, 0.0, 0.0, completed, 0)

    assert worth_a_line(interval(5.0, 1250), 5.0) and worth_a_line(interval(0.2, 3), 5.0)
    assert worth_a_line(interval(5.0, 0), 5.0)  # nothing completed for a whole interval of the load: a stall
    assert not worth_a_line(interval(0.0, 0), 5.0) and not worth_a_line(interval(0.001, 0), 5.0)  # after the load


def test_the_operations_finishing_after_the_schedule_get_counts_not_rates() -> None:
    tail = IntervalStatus(20.0, 0.02, 0.0, 450.0, 31.9, 90.8, 9, 0)  # 9 in flight at the end, done within 20 ms
    line = interval_line("pull", tail, tail=True)
    assert "offered" not in line and "+ 9 op(s) in flight at the end" in line and "p99 90.8 ms" in line
    assert len(line) <= 80
    short = IntervalStatus(20.0, 0.5, 250.0, 249.0, 1.0, 3.0, 124, 0)  # an ordinary line of --interval 0.5
    assert "offered   250/s" in interval_line("pull", short)
    console = Console(record=True, width=80, force_terminal=False)
    lines = IntervalLines(console, "pull", 5.0)

    class Ended:  # a driver whose schedule ended 20 ms before its last completion
        def interval(self) -> IntervalStatus:
            return tail

    lines._driver = Ended()  # type: ignore[assignment]
    lines.stop()
    assert "in flight at the end" in console.export_text()


def test_live_line_fits_80_columns_whole() -> None:
    live = LiveStatus(elapsed_s=12.3, offered_rate=2500.0, achieved_rate=2499.5, p99_ms=123.4, errors=17, in_flight=256)
    for width in (80, 160):
        console = Console(width=width, record=True, force_terminal=True)
        progress = Progress(*progress_columns(console), console=console, auto_refresh=False)
        progress.add_task("hybrid", total=20.0, completed=12.3, status=live_text(live, console))
        console.print(progress.get_renderable())
        lines = [line for line in console.export_text().splitlines() if line.strip()]
        assert len(lines) == 1 and len(lines[0]) <= width, lines
        assert lines[0].rstrip().endswith("17") and "…" not in lines[0]  # the errors, last, are not cut off


def test_status_is_a_line_without_a_terminal() -> None:
    console = Console(width=80, record=True, force_terminal=False)
    with status(console, "loading g.txt"):
        pass
    assert console.export_text() == "loading g.txt ...\n"
