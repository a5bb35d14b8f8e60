"""`fanout report`: comparison tables, deltas between runs, the HTML page with its plots, one-line errors."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from bench.cli.main import main
from bench.report.tables import COMPACT_LABEL, number, strategies_side_by_side
from bench.results import write_result
from bench.runner import comparison_table
from tests.browser import dump_dom, needs_chromium
from tests.result_factory import sample_result

RUN = {
    "started_at": "2026-11-25T10:47:33.120Z",
    "finished_at": "2026-11-25T10:49:01.004Z",
    "git": {"commit": "0" * 40, "dirty": False},
    "harness": {"name": "fanout-bench", "version": "0.1.0"},
    "python": {"version": "3.11.7", "implementation": "CPython"},
    "platform": "Linux-test",
    "cpu_count": 2,
    "redis": {"version": "7.0.15"},
    "postgres": {"version": "15.5", "version_num": 150005},
    "parameters": {"rate": 50.0, "duration": 20.0},
    "seed": 7,
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fanout(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "220"}, catch_exceptions=False)


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path, dict[str, Any], dict[str, Any]]:
    first, second = sample_result(dict(RUN), seed=7), sample_result(dict(RUN), seed=9)
    return write_result(first, tmp_path / "a.json"), write_result(second, tmp_path / "b.json"), first, second


def _row(output: str, label: str) -> list[str]:
    line = next(line for line in output.splitlines() if f" {label} " in line)
    return [cell.strip() for cell in line.strip("│ ").split("│")][1:]


def test_one_run_puts_the_strategies_side_by_side(runs: Any) -> None:
    path, _, doc, _ = runs
    result = fanout("report", str(path))
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "push" in line and "pull" in line)
    assert header.index("push") < header.index("pull") < header.index("hybrid")
    figures = doc["strategies"]
    assert _row(result.output, "read p99 (ms)") == [number(figures[s]["read"]["p99_ms"]) for s in figures]
    assert _row(result.output, "write amplification (entries/post)") == ["30.0", "0", "4.00"]
    spike = [number(figures[s]["spike"]["reads"]["during"]["p99_ms"]) for s in figures]
    assert _row(result.output, "others' read during p99 (ms)") == spike
    assert "pass (50 users)" in result.output


def _labels(text: str) -> list[str]:
    """The first column of every rendered rich table row in ``text`` (section titles included, wrapped lines not)."""
    cells = [line.split("│") for line in text.splitlines() if line.startswith("│")]
    return [row[1].strip() for row in cells if row[1].strip()]


def _bench_table(doc: dict[str, Any], width: int = 220) -> str:
    console = Console(record=True, width=width)
    console.print(comparison_table(doc))
    return console.export_text()


@pytest.mark.parametrize("cut", [False, True])
def test_bench_prints_the_same_table_as_the_report(tmp_path: Path, cut: bool) -> None:
    doc = sample_result(dict(RUN))
    if cut:  # a run stopped during pull: pull lacks what is measured at the end, hybrid never ran
        for part in ("store_counters", "memory", "oracle", "spike"):
            del doc["strategies"]["pull"][part]
        doc["strategies"]["pull"]["complete"] = doc["complete"] = False
        del doc["strategies"]["hybrid"]
        doc["strategies"]["push"]["errors"] = {"ReadTimeout": 3, "ConnectionError": 1}
    path = write_result(doc, tmp_path / "r.json")
    bench = _bench_table(doc)
    result = fanout("report", str(path))
    assert result.exit_code == 0, result.output
    report = result.output
    assert _labels(bench) == _labels(report) and len(_labels(bench)) > 40
    assert _labels(bench)[-1] == "oracle"  # the verdict is the last row, as the README says
    title = "spike run, 3,000 users, 24,000 follows" + (" — INCOMPLETE" if cut else "")
    assert title in bench and title in report
    # What the bench's table showed before the report had it.
    for label in (
        "timelines memory growth (MB)",
        "Redis commands/op (driver)",
        "others' read during p99.9 (ms)",
        "time to full delivery (ms)",
        "in-flight bound",
    ):
        assert label in _labels(bench), label
    assert _row(bench, "Redis commands/op (driver)")[0] == number(2800 / 1000)
    assert _row(bench, "timelines memory growth (MB)")[0] == number(
        doc["strategies"]["push"]["spike"]["timelines_memory_growth_bytes"] / 1e6
    )
    if cut:
        assert _row(bench, "oracle") == _row(report, "oracle") == ["pass (50 users)", "not run"]
        assert "pull (cut short)" in bench
        assert _row(bench, "errors") == _row(report, "errors") == ["4", "0"]
        assert _row(bench, "error kinds") == ["ReadTimeout 3, ConnectionError 1", "–"]
    # One file is named by its run, not labelled "A".
    assert "Run A" not in report and "Spike run of 2026-11-25T10:47:33.120Z" in report
    if cut:
        page = tmp_path / "r.html"
        assert fanout("report", str(path), "--html", str(page)).exit_code == 0
        text = page.read_text()
        assert "<h2>Run A</h2>" not in text and "<h2>Spike run of 2026-11-25T10:47:33.120Z</h2>" in text
        assert "<title>fanout-bench report: r.json</title>" in text


def _worst_case(doc: dict[str, Any]) -> dict[str, Any]:
    """Long cells: a failed oracle, a list of error kinds, a strategy cut short."""
    for name in ("push", "hybrid"):  # the default number of users checked, as a real run prints it
        doc["strategies"][name]["oracle"] = {"verdict": "pass", "users_checked": 100, "mismatched_users": []}
    doc["strategies"]["pull"]["oracle"] = {"verdict": "fail", "users_checked": 100, "mismatched_users": [3]}
    doc["strategies"]["push"]["errors"] = {"ReadTimeout": 3, "ConnectionError": 1}
    doc["strategies"]["hybrid"]["complete"] = False
    return doc


def test_bench_table_is_compact_in_80_columns_and_no_cell_wraps() -> None:
    doc = _worst_case(sample_result(dict(RUN)))
    comparison = strategies_side_by_side(doc)
    text = _bench_table(doc, width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    body = lines[next(i for i, line in enumerate(lines) if "─" in line) + 1 :]  # below the header rule
    if comparison.caption:  # the caption (what the intervals rest on) is below the rows, not one of them
        body = body[: next(i for i, line in enumerate(body) if line.strip().startswith(comparison.caption[:20]))]
    # A note (a tail's sample count) is a line of its own under its value, with nothing in the label column.
    note_lines = [line for line in body if line.strip() and line[:COMPACT_LABEL].strip() == ""]
    rows = [line for line in body if line.strip() and line not in note_lines]
    cells = [row[1:] for _, section in comparison.sections for row in section]
    notes = sum(max((len(c.notes) for c in values), default=0) for values in cells)
    assert len(note_lines) == notes > 0 and all("sample" in line for line in note_lines)
    # One line per section title and per row, and one per note under them: a wrapped cell would add lines.
    assert len(rows) == len(comparison.labels()) + len(comparison.sections)
    labels = [line.strip().split("  ")[0] for line in rows]
    short = [row[0].short for _, section in comparison.sections for row in section]
    assert [label for label in labels if label in short] == short  # every short label whole, in order
    assert all(len(label) <= COMPACT_LABEL for label in short)
    assert "p50" in labels and "home reads (ms)" in labels and "read p99 (ms)" not in text
    p99 = next(line for line in rows if line.split()[0] == "p99")  # the home reads' p99, the first of them
    assert p99.split()[1:] == [number(s["read"]["p99_ms"]) for s in doc["strategies"].values()]
    assert "FAIL (100 users)" in text and text.count("pass (100 users)") == 2 and "hybrid (cut)" in text


def test_bench_table_is_wide_where_there_is_room() -> None:
    doc = _worst_case(sample_result(dict(RUN)))
    text = _bench_table(doc, width=220)
    assert _labels(text) == [
        label
        for section, rows in strategies_side_by_side(doc).sections
        for label in [section] + [r[0].text for r in rows]
    ]
    assert "ReadTimeout 3, ConnectionError 1" in text and "hybrid (cut short)" in text


def test_several_runs_show_changes_from_the_first(runs: Any) -> None:
    a, b, first, second = runs
    result = fanout("report", str(a), str(b))
    assert result.exit_code == 0, result.output
    assert result.output.count("A (baseline)") == 3  # one table per strategy
    before, after = (d["strategies"]["pull"]["read"]["p50_ms"] for d in (first, second))
    change = f"{(after - before) / before:+.0%}"
    pull_table = result.output[result.output.index(" pull ") :]
    assert _row(pull_table, "read p50 (ms)") == [number(before), f"{number(after)} ({change})"]
    assert _row(pull_table, "posts") == ["50", "50 (=)"]


def test_runs_on_differently_configured_postgres_say_how(tmp_path: Path) -> None:
    pg15 = {"version": "15.5", "version_num": 150005, "settings": {"data_checksums": "off", "jit": "on"}}
    pg18 = {"version": "18.6", "version_num": 180006, "settings": {"data_checksums": "on", "jit": "on"}}
    a = write_result(sample_result(RUN | {"postgres": pg15}, seed=7), tmp_path / "a.json")
    b = write_result(sample_result(RUN | {"postgres": pg18}, seed=9), tmp_path / "b.json")
    output = fanout("report", str(a), str(b)).output
    assert "PostgreSQL settings  data_checksums=off, jit=on" in output
    differences = output[output.index("PostgreSQL differs between the runs:") :].splitlines()[1:3]
    assert [line.strip() for line in differences] == ["version: A 15.5, B 18.6", "data_checksums: A off, B on"]
    same = fanout("report", str(a), str(a)).output
    assert "PostgreSQL differs" not in same


def test_html_report_embeds_its_plots_and_writes_them_beside_it(runs: Any, tmp_path: Path) -> None:
    a, b, _, _ = runs
    page = tmp_path / "out" / "report.html"
    result = fanout("report", str(a), str(b), "--html", str(page))
    assert result.exit_code == 0, result.output
    text = page.read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([a-z0-9-]+)"', text)
    assert [alt for _, alt in images] == ["p99-over-time", "percentile-spectrum", "write-amplification", "delivery-lag"]
    for data, alt in images:
        png = (tmp_path / "out" / f"report-{alt}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 5000
        assert base64.b64decode(data) == png  # the page is self-contained: the same image, inlined
    assert "read p99 (ms)" in text and "A (baseline)" in text
    assert "<h2>Run A</h2>" in text and "fanout-bench report: A = a.json, B = b.json" in text
    assert not re.search(r'(src|href)="(https?:|//)', text)  # nothing fetched from elsewhere


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file (give the path `fanout bench` printed)"),
        ("{not json", "not JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        (
            '{"format": "fanout-bench-result", "format_version": 1}',
            "not a valid result file: at top level: 'complete' is a required property",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    runs: Any, tmp_path: Path, content: str | None, problem: str
) -> None:
    good, _, _, _ = runs
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    out = tmp_path / "out"
    result = fanout("report", str(good), str(bad), "--html", str(out / "report.html"))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {bad}: {problem}\n"
    assert not out.exists()


@needs_chromium
def test_page_loads_in_headless_chromium_with_every_plot_decoded(runs: Any, tmp_path: Path) -> None:
    a, _, _, _ = runs
    page = tmp_path / "report.html"
    assert fanout("report", str(a), "--html", str(page)).exit_code == 0
    dom = dump_dom(page)
    # The page's own script counts images with naturalWidth > 0 once everything has loaded.
    assert '<body data-plots-loaded="4/4">' in dom


def test_interrupted_and_steady_runs_are_reported_for_what_they_hold(tmp_path: Path) -> None:
    steady = write_result(sample_result(dict(RUN), scenario="steady"), tmp_path / "steady.json")
    cut_doc = sample_result(dict(RUN), strategies=("push", "pull"))
    for part in ("series", "store_counters", "errors", "memory", "oracle", "spike"):
        del cut_doc["strategies"]["pull"][part]
    cut_doc["strategies"]["pull"]["complete"] = False
    cut_doc["complete"] = False
    cut = write_result(cut_doc, tmp_path / "cut.json")
    alone = fanout("report", str(cut))
    assert alone.exit_code == 0, alone.output
    assert "spike run, 3,000 users, 24,000 follows — INCOMPLETE" in alone.output
    assert "pull (cut short)" in alone.output
    together = fanout("report", str(steady), str(cut), "--html", str(tmp_path / "r.html"))
    assert together.exit_code == 0, together.output
    assert "B (cut short)" in together.output and "B (not run)" in together.output  # pull cut, hybrid never ran
    assert len(list(tmp_path.glob("r-*.png"))) == 4


def test_report_latency_prints_every_files_distributions(runs: Any) -> None:
    a, b, first, _ = runs
    result = fanout("report", str(a), str(b), "--latency")
    assert result.exit_code == 0, result.output
    assert result.output.count("Detailed Percentile spectrum:") == 2 * 2 * len(first["strategies"])
    assert f"push read: {first['strategies']['push']['read']['count']:,} operations" in result.output
