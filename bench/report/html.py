"""Comparison of benchmark runs: rich tables in the terminal and one self-contained HTML page with plots.

One run: a table with the strategies side by side, the best value of each row highlighted. Several runs: one table
per strategy with the runs side by side and each run's change from the first (the baseline). The same table model
renders to rich and to HTML, so the terminal and the page always agree.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import ascii_uppercase
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from bench.report import plots
from bench.results import Document, atomic_write, load_result


@dataclass(frozen=True)
class Run:
    """One loaded result file and the label the report gives it."""

    label: str
    path: Path
    doc: Document


def load_runs(paths: Iterable[Path | str]) -> list[Run]:
    """Load and validate every file first (labelled A, B, ...), so bad input fails before anything is written."""
    paths = list(paths)
    labels = [ascii_uppercase[i] if i < 26 else f"R{i + 1}" for i in range(len(paths))]
    return [Run(label, Path(p), load_result(p)) for label, p in zip(labels, paths, strict=True)]


# -- what the tables show -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """One row: how to read it from a strategy's figures, its unit, and whether lower or higher is better."""

    name: str
    get: Callable[[dict[str, Any]], Any]
    better: str | None = "lower"  # "lower", "higher" or None (neither)
    unit: str = "ms"


def _at(*keys: str) -> Callable[[dict[str, Any]], Any]:
    def get(figures: dict[str, Any]) -> Any:
        node: Any = figures
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    return get


def _latency(prefix: str, *keys: str, percentiles: Sequence[str] = ("p50", "p99", "p999", "max")) -> list[Metric]:
    names = {"p50": "p50", "p90": "p90", "p99": "p99", "p999": "p99.9", "max": "max"}
    return [Metric(f"{prefix} {names[p]}", _at(*keys, f"{p}_ms")) for p in percentiles]


def _errors(figures: dict[str, Any]) -> int | None:
    errors = figures.get("errors")
    return None if errors is None else sum(errors.values())


def _oracle(figures: dict[str, Any]) -> str | None:
    oracle = figures.get("oracle")
    if oracle is None:
        return None
    text = f"{oracle['verdict']} ({oracle['users_checked']} users)"
    return text if oracle["verdict"] != "fail" else f"FAIL {text[5:]}"


def _mb(*keys: str) -> Callable[[dict[str, Any]], float | None]:
    def get(figures: dict[str, Any]) -> float | None:
        value = _at(*keys)(figures)
        return None if value is None else value / 1e6

    return get


def _pg_bytes(figures: dict[str, Any]) -> float | None:
    tables = _at("memory", "pg_table_bytes")(figures)
    return None if tables is None else sum(tables.values()) / 1e6


#: The rows of the comparison, in sections.
SECTIONS: list[tuple[str, list[Metric]]] = [
    (
        "reads",
        [
            Metric("reads", _at("read", "count"), None, ""),
            *_latency("read", "read", percentiles=("p50", "p90", "p99", "p999", "max")),
            Metric("read p99 uncorrected", _at("read", "uncorrected", "p99_ms")),
        ],
    ),
    (
        "publishes",
        [
            Metric("posts", _at("publish", "count"), None, ""),
            *_latency("publish", "publish", percentiles=("p50", "p99", "max")),
            *_latency("delivery lag", "delivery_lag", percentiles=("p50", "p99", "max")),
            Metric("write amplification", _at("write_amplification"), "lower", "entries/post"),
        ],
    ),
    (
        "load and stores",
        [
            Metric("offered rate", _at("load", "offered_rate"), None, "ops/s"),
            Metric("achieved rate", _at("load", "achieved_rate"), "higher", "ops/s"),
            Metric("in-flight bound hits", _at("load", "in_flight_limit_hits"), "lower", ""),
            Metric("Redis commands/op", _at("store_counters", "redis_commands_per_op"), "lower", ""),
            Metric("PG rows read/op", _at("store_counters", "pg_rows_read_per_op"), "lower", ""),
            Metric("PG rows written/op", _at("store_counters", "pg_rows_written_per_op"), "lower", ""),
            Metric("Redis used memory", _mb("memory", "redis_used_memory_bytes"), "lower", "MB"),
            Metric("PG tables", _pg_bytes, None, "MB"),
            Metric("errors", _errors, "lower", ""),
            Metric("oracle", _oracle, None, ""),
        ],
    ),
    (
        "celebrity spike",
        [
            *(
                m
                for phase in ("before", "during", "after")
                for m in _latency(f"others' read {phase}", "spike", "reads", phase, percentiles=("p50", "p99", "p999"))
            ),
            Metric("celebrity publish p99", _at("spike", "publish", "p99_ms")),
            *_latency("spike delivery lag", "spike", "delivery_lag", percentiles=("p50", "p99", "max")),
            Metric("time to full delivery", _at("spike", "time_to_full_delivery_ms")),
            Metric("spike write amplification", _at("spike", "write_amplification"), "lower", "entries/post"),
            Metric("Redis memory growth", _mb("spike", "redis_memory_growth_bytes"), "lower", "MB"),
        ],
    ),
]


# -- the table model ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """A rendered value; ``tone`` is "best", "better", "worse", "bad" or None."""

    text: str
    tone: str | None = None


@dataclass
class Comparison:
    """One table: a title, column headers, and rows grouped in sections."""

    title: str
    columns: list[str]
    sections: list[tuple[str, list[list[Cell]]]] = field(default_factory=list)


def number(value: Any) -> str:
    """A figure as the tables print it (about three significant digits, no exponent)."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if value == 0:
        return "0"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        return f"{value:,.0f}"
    magnitude = abs(value)
    digits = 3 if magnitude < 1 else 2 if magnitude < 10 else 1 if magnitude < 100 else 0
    return f"{value:,.{digits}f}"


def _label(metric: Metric) -> str:
    return f"{metric.name} ({metric.unit})" if metric.unit else metric.name


def _visible(metrics: list[Metric], figures: Iterable[dict[str, Any]]) -> list[Metric]:
    figures = list(figures)
    return [m for m in metrics if any(m.get(f) is not None for f in figures)]


def strategies_side_by_side(run: Run) -> Comparison:
    """One run: a row per metric, a column per strategy; the best numeric value of each row marked."""
    names = list(run.doc["strategies"])
    comparison = Comparison(_title(run), ["", *(n + _cut(run.doc["strategies"][n]) for n in names)])
    for title, metrics in SECTIONS:
        rows = []
        for metric in _visible(metrics, run.doc["strategies"].values()):
            values = [metric.get(run.doc["strategies"][n]) for n in names]
            numeric = [v for v in values if isinstance(v, int | float)]
            best = None
            if metric.better and len(numeric) > 1 and min(numeric) != max(numeric):
                best = min(numeric) if metric.better == "lower" else max(numeric)
            rows.append([Cell(_label(metric)), *(_cell(v, best) for v in values)])
        if rows:
            comparison.sections.append((title, rows))
    return comparison


def _cut(figures: dict[str, Any] | None) -> str:
    """A column-header mark for a strategy that was cut short (or did not run at all)."""
    if figures is None:
        return " (not run)"
    return " (cut short)" if figures.get("complete") is False else ""


def _cell(value: Any, best: float | None) -> Cell:
    if isinstance(value, str) and value.startswith("FAIL"):
        return Cell(value, "bad")
    return Cell(number(value), "best" if best is not None and value == best else None)


def runs_side_by_side(runs: Sequence[Run], strategy: str) -> Comparison:
    """Several runs, one strategy: a column per run, each later run with its change from the first."""
    figures = [r.doc["strategies"].get(strategy) for r in runs]
    headers = [
        r.label + (" (baseline)" if i == 0 else "") + _cut(f)
        for i, (r, f) in enumerate(zip(runs, figures, strict=True))
    ]
    comparison = Comparison(strategy, ["", *headers])
    present = [f for f in figures if f is not None]
    for title, metrics in SECTIONS:
        rows = []
        for metric in _visible(metrics, present):
            base = metric.get(figures[0]) if figures[0] is not None else None
            row = [Cell(_label(metric))]
            for i, f in enumerate(figures):
                value = metric.get(f) if f is not None else None
                row.append(_cell(value, None) if i == 0 else _delta_cell(metric, base, value))
            rows.append(row)
        if rows:
            comparison.sections.append((title, rows))
    return comparison


def _delta_cell(metric: Metric, base: Any, value: Any) -> Cell:
    """``value (+percent)`` against the baseline (``+change`` when the baseline is 0), toned by improvement."""
    if not (isinstance(base, int | float) and isinstance(value, int | float)):
        return _cell(value, None)
    change = value - base
    if change == 0:
        return Cell(f"{number(value)} (=)")
    delta = f"{change / base:+.0%}" if base else ("+" if change > 0 else "-") + number(abs(change))
    tone = None
    if metric.better:
        improved = change < 0 if metric.better == "lower" else change > 0
        tone = "better" if improved else "worse"
    return Cell(f"{number(value)} ({delta})", tone)


def comparisons(runs: Sequence[Run]) -> list[Comparison]:
    """The tables of the report: strategies side by side for one run, runs side by side per strategy for several."""
    if len(runs) == 1:
        return [strategies_side_by_side(runs[0])]
    names = list(dict.fromkeys(name for r in runs for name in r.doc["strategies"]))
    return [runs_side_by_side(runs, name) for name in names]


def _title(run: Run) -> str:
    doc = run.doc
    graph = doc["graph"]
    state = "" if doc["complete"] else " — INCOMPLETE"
    return f"{doc['scenario']} run, {graph['users']:,} users, {graph['follows']:,} follows{state}"


def run_facts(run: Run) -> list[tuple[str, str]]:
    """What ran where, for the header of a report."""
    doc, meta = run.doc, run.doc["run"]
    git = meta["git"]
    commit = (
        "not a git checkout" if git["commit"] is None else git["commit"][:12] + (" (dirty)" if git["dirty"] else "")
    )
    parameters = ", ".join(f"{k}={v}" for k, v in meta["parameters"].items())
    facts = [
        ("file", str(run.path)),
        (
            "scenario",
            doc["scenario"] + ("" if doc["complete"] else f" — incomplete: {doc.get('incomplete_reason', '')}"),
        ),
        ("started", meta["started_at"]),
        ("commit", commit),
        ("harness", f"{meta['harness']['name']} {meta['harness']['version']}"),
        ("servers", f"Redis {meta['redis']['version']}, PostgreSQL {meta['postgres']['version']}"),
        ("machine", f"{meta['cpu_count']} CPUs, Python {meta['python']['version']}, {meta['platform']}"),
        ("graph", ", ".join(f"{k} {number(v)}" for k, v in doc["graph"].items())),
        ("seed", str(meta["seed"])),
        ("parameters", parameters or "–"),
    ]
    if doc.get("note"):
        facts.append(("note", doc["note"]))
    return facts


# -- rendering: terminal --------------------------------------------------------------------------------------------
STYLES = {"best": "bold green", "better": "green", "worse": "red", "bad": "bold red"}


def rich_table(comparison: Comparison) -> Table:
    """The comparison as a rich table."""
    table = Table(title=comparison.title, title_style="bold", header_style="bold")
    for i, column in enumerate(comparison.columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for title, rows in comparison.sections:
        table.add_row(Text(title, style="bold cyan"))
        for row in rows:
            table.add_row(*(Text(c.text, style=STYLES.get(c.tone or "", "")) for c in row))
        table.add_section()
    return table


def print_report(runs: Sequence[Run], console: Console | None = None) -> None:
    """Print the runs' facts and comparison tables."""
    console = console or Console()
    for run in runs:
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold")
        facts.add_column()
        for name, value in run_facts(run):
            facts.add_row(name, value)
        console.print(Group(Text(f"run {run.label}", style="bold underline"), facts), "")
    for comparison in comparisons(runs):
        console.print(rich_table(comparison))


# -- rendering: HTML ------------------------------------------------------------------------------------------------
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1300px; }}
table {{ border-collapse: collapse; margin: 1em 0 2em; }}
th, td {{ padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
tr.section td {{ font-weight: bold; color: #157; padding-top: 0.9em; text-align: left; }}
table.facts td {{ text-align: left; }}
.best {{ color: #080; font-weight: bold; }} .better {{ color: #080; }} .worse {{ color: #b00; }}
.bad {{ color: #b00; font-weight: bold; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 0.9em; }}
</style>
</head>
<body>
<h1>{title}</h1>
{runs}
{tables}
<h2>Plots</h2>
{figures}
<script>
// Marks how many plots decoded, for checks in headless browsers (data-plots-loaded="4/4").
window.addEventListener("load", function () {{
  var images = Array.prototype.slice.call(document.images);
  var decoded = images.filter(function (img) {{ return img.complete && img.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-plots-loaded", decoded + "/" + images.length);
}});
</script>
</body>
</html>
"""


def html_table(comparison: Comparison) -> str:
    """The comparison as an HTML table."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in comparison.columns)
    body = []
    for title, rows in comparison.sections:
        body.append(f'<tr class="section"><td colspan="{len(comparison.columns)}">{esc(title)}</td></tr>')
        for row in rows:
            cells = "".join(
                f'<td class="{c.tone}">{esc(c.text)}</td>' if c.tone else f"<td>{esc(c.text)}</td>" for c in row
            )
            body.append(f"<tr>{cells}</tr>")
    return f"<h2>{esc(comparison.title)}</h2>\n<table>\n<tr>{head}</tr>\n" + "\n".join(body) + "\n</table>"


def _facts_html(run: Run) -> str:
    rows = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>" for k, v in run_facts(run))
    return f'<h2>Run {run.label}</h2>\n<table class="facts">{rows}</table>'


def write_html(runs: Sequence[Run], path: Path | str) -> list[Path]:
    """Write the HTML report and its PNG plots beside it; returns the paths written (the HTML first).

    The page embeds every plot as a data URI, so it is complete on its own; the PNG files are for other uses.
    """
    path = Path(path)
    labelled = [(r.label, r.doc) for r in runs]
    figures, written = [], []
    for suffix, caption, plot in plots.PLOTS:
        image = plot(labelled)
        png_path = path.with_name(f"{path.stem}-{suffix}.png")
        atomic_write(png_path, image)
        written.append(png_path)
        data = base64.b64encode(image).decode("ascii")
        figures.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(suffix)}" id="plot-{suffix}">'
            f"<figcaption>{html.escape(caption)} (also {html.escape(png_path.name)})</figcaption></figure>"
        )
    title = "fanout-bench report: " + ", ".join(f"{r.label} = {r.path.name}" for r in runs)
    page = PAGE.format(
        title=html.escape(title),
        runs="\n".join(_facts_html(r) for r in runs),
        tables="\n".join(html_table(c) for c in comparisons(runs)),
        figures="\n".join(figures),
    )
    atomic_write(path, page.encode("utf-8"))
    return [path, *written]
