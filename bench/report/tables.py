"""The side-by-side tables of result documents: one model, rendered to rich (terminal) and to HTML.

``fanout bench`` prints :func:`strategies_side_by_side` of the result it just wrote, and ``fanout report`` prints the
same table for one result file, so the two always show the same rows with the same units. Several files give one
table per strategy with the runs side by side and each run's change from the first (:func:`runs_side_by_side`).

Units: latencies in ms, memory in MB (10^6 bytes), rates in ops/s. A row is shown when at least one column has a
value; the best numeric value of a row is marked when lower or higher is better.

Two layouts of the same model: wide (every label says what and in which unit) and compact (short labels, the unit of a
section's latencies in its title, no cell wrapped: three strategies fit 80 columns); both show a cell's notes (its
interval, a tail's sample count) on lines under it. :func:`fitted_table` picks the
wide one when it fits the console, else the compact one.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from bench.disturbance import warnings as disturbance_warnings
from bench.stats import Interval, differences, median_interval, tail_samples

Figures = dict[str, Any]
#: (run label, result document) pairs, in the order the report lists them.
Labelled = Sequence[tuple[str, dict[str, Any]]]


# -- what the tables show -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """One row: how to read it from a strategy's figures, its unit, and whether lower or higher is better."""

    name: str
    get: Callable[[Figures], Any]
    better: str | None = "lower"  # "lower", "higher" or None (neither)
    unit: str = "ms"
    #: The compact layout's label (ms is in the section's title there, other units stay in the label).
    short: str | None = None
    #: For a tail percentile: how many samples it summarises, and the percentile (its cells say what it rests on).
    tail: tuple[Callable[[Figures], Any], float] | None = None

    @property
    def label(self) -> str:
        """The row's label: the name with its unit."""
        return f"{self.name} ({self.unit})" if self.unit else self.name

    @property
    def short_label(self) -> str:
        """The row's label in the compact layout."""
        return self.short or self.name


def _at(*keys: str) -> Callable[[Figures], Any]:
    def get(figures: Figures) -> Any:
        node: Any = figures
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    return get


def _latency(
    prefix: str, *keys: str, percentiles: Sequence[str] = ("p50", "p99", "p999", "max"), short: str = ""
) -> list[Metric]:
    names = {"p50": "p50", "p90": "p90", "p99": "p99", "p999": "p99.9", "max": "max"}
    tails = {"p99": 99.0, "p999": 99.9}
    return [
        Metric(
            f"{prefix} {names[p]}",
            _at(*keys, f"{p}_ms"),
            short=f"{short} {names[p]}".strip(),
            tail=(_at(*keys, "count"), tails[p]) if p in tails else None,
        )
        for p in percentiles
    ]


def _mb(*keys: str) -> Callable[[Figures], float | None]:
    def get(figures: Figures) -> float | None:
        value = _at(*keys)(figures)
        return None if value is None else value / 1e6

    return get


def _pg_bytes(figures: Figures) -> float | None:
    tables = _at("memory", "pg_table_bytes")(figures)
    return None if tables is None else sum(tables.values()) / 1e6


def _driver_commands_per_op(figures: Figures) -> float | None:
    """Redis commands the harness's own clients sent per operation (exact; the server's count includes Lua's)."""
    counters = figures.get("store_counters") or {}
    sent = (counters.get("client") or {}).get("redis_commands")
    return None if sent is None else sent / max(1, counters.get("operations") or 0)


def _counter(store: str, *keys: str) -> Callable[[Figures], Any]:
    """A server-counter figure, or "invalid" when ``store`` restarted during the run (its counters began again)."""
    get = _at("store_counters", *keys)

    def counter(figures: Figures) -> Any:
        if store in (_at("store_counters", "invalid")(figures) or {}):
            return "invalid"
        return get(figures)

    return counter


#: Faults whose figures a cell lists one by one; more (a repeated fault) are summarised by the worst.
MAX_FAULTS_SHOWN = 3


def _per_fault(key: str, missing: str = "–") -> Callable[[Figures], Any]:
    """A figure of each injected fault: the value for one fault, values joined by " / " for several (``missing``
    where a fault has none: "never" for a recovery that did not happen within the run)."""

    def get(figures: Figures) -> Any:
        faults = figures.get("faults")
        if not faults:
            return None
        values = [f.get(key) for f in faults]
        if len(values) == 1:
            return values[0] if values[0] is not None else missing
        if len(values) > MAX_FAULTS_SHOWN:  # a repeated fault: the worst of them
            if any(v is None for v in values) and missing == "never":
                return f"{missing} ({len(values)} faults)"
            known = [v for v in values if v is not None]
            return f"max {number(max(known))} ({len(values)} faults)" if known else missing
        return " / ".join(missing if v is None else number(v) for v in values)

    return get


def _rebuilds(figures: Figures) -> int | None:
    recovery = figures.get("recovery")
    return None if recovery is None else len(recovery.get("rebuilds") or [])


def _errors(figures: Figures) -> int | None:
    errors = figures.get("errors")
    return None if errors is None else sum(errors.values())


def _error_kinds(figures: Figures) -> str | None:
    errors = figures.get("errors")
    return ", ".join(f"{kind} {n}" for kind, n in errors.items()) if errors else None


def _oracle(figures: Figures) -> str:
    oracle = figures.get("oracle")
    if oracle is None:  # a strategy cut short, or a run without the check
        return "not run"
    text = f"{oracle['verdict']} ({oracle['users_checked']} users)"
    return text if oracle["verdict"] != "fail" else f"FAIL {text[5:]}"


def _user_timeline_share(figures: Figures) -> float | None:
    """Fraction of the workload's reads that were user-timeline reads (one account's own posts)."""
    mix = _at("workload", "read_mix")(figures)
    return None if not mix else mix.get("user_timeline")


def _mean_pages(figures: Figures) -> float | None:
    """Pages each read asked for, on average (1 when every read is a first page)."""
    pages = _at("workload", "read_pages")(figures)
    total = sum(pages.values()) if pages else 0
    return None if not total else sum(int(depth) * n for depth, n in pages.items()) / total


def _mentions_per_post(figures: Figures) -> float | None:
    """Mentions the published bodies held, per post (None before mentions were recorded, or with no posts)."""
    mentions, posts = _at("workload", "mentions", "total")(figures), _at("workload", "body_bytes", "count")(figures)
    return None if mentions is None or not posts else mentions / posts


#: The rows of every table, in sections.
SECTIONS: list[tuple[str, list[Metric]]] = [
    (
        "reads",
        [
            Metric("reads", _at("read", "count"), None, "", short="count"),
            *_latency("read", "read", percentiles=("p50", "p90", "p99", "p999", "max")),
            Metric("read p99 uncorrected", _at("read", "uncorrected", "p99_ms"), short="p99 uncorrected"),
        ],
    ),
    (
        "user-timeline reads",
        [
            Metric("user-timeline reads", _at("user_timeline", "count"), None, "", short="count"),
            *_latency("user-timeline", "user_timeline", percentiles=("p50", "p99", "p999", "max")),
        ],
    ),
    (
        "publishes",
        [
            Metric("posts", _at("publish", "count"), None, "", short="count"),
            *_latency("publish", "publish", percentiles=("p50", "p99", "max")),
            *_latency("delivery lag", "delivery_lag", percentiles=("p50", "p99", "max"), short="lag"),
            Metric("write amplification", _at("write_amplification"), "lower", "entries/post", short="entries/post"),
        ],
    ),
    (
        "policy",
        [
            Metric("returning first reads", _at("returning_read", "count"), None, "", short="returning reads"),
            *_latency("returning first read", "returning_read", percentiles=("p50", "p99"), short="returning"),
            Metric(
                "deliveries skipped (inactive)",
                _at("policy", "deliveries_skipped_inactive"),
                None,
                "",
                short="skipped inactive",
            ),
            Metric("timelines regenerated", _at("policy", "timelines_regenerated"), None, "", short="regenerated"),
            Metric(
                "deliveries skipped (pulled edge)",
                _at("policy", "deliveries_skipped_pulled"),
                None,
                "",
                short="skipped pulled",
            ),
            Metric("edges pushed", _at("policy", "edges_pushed_fraction"), None, "", short="edges pushed"),
        ],
    ),
    (
        "workload",
        [
            Metric("post body mean", _at("workload", "body_bytes", "mean"), None, "bytes", short="body (bytes)"),
            Metric("user-timeline share of reads", _user_timeline_share, None, "", short="user-timeline share"),
            Metric("pages per read", _mean_pages, None, "", short="pages/read"),
            Metric("mentions per post", _mentions_per_post, None, "", short="mentions/post"),
        ],
    ),
    (
        "load and stores",
        [
            Metric("offered rate", _at("load", "offered_rate"), None, "ops/s", short="offered (ops/s)"),
            Metric("achieved rate", _at("load", "achieved_rate"), "higher", "ops/s", short="achieved (ops/s)"),
            Metric("in-flight bound", _at("load", "in_flight_limit"), None, "", short="in-flight bound"),
            Metric("in-flight bound hits", _at("load", "in_flight_limit_hits"), "lower", "", short="bound hits"),
            Metric(
                "Redis commands/op (server)",
                _counter("redis", "redis_commands_per_op"),
                "lower",
                "",
                short="Redis cmd/op server",
            ),
            Metric("Redis commands/op (driver)", _driver_commands_per_op, "lower", "", short="Redis cmd/op driver"),
            Metric("PG rows read/op", _counter("postgres", "pg_rows_read_per_op"), "lower", ""),
            Metric("PG rows written/op", _counter("postgres", "pg_rows_written_per_op"), "lower", ""),
            Metric(
                "Redis CPU/op (server)",
                _counter("redis", "redis_cpu_us_per_op"),
                "lower",
                "µs",
                short="Redis CPU/op (µs)",
            ),
            Metric(
                "Redis used memory", _mb("memory", "redis_used_memory_bytes"), "lower", "MB", short="Redis mem (MB)"
            ),
            Metric("timelines memory", _mb("memory", "timelines_bytes"), "lower", "MB", short="timelines mem (MB)"),
            Metric("PG tables", _pg_bytes, None, "MB", short="PG tables (MB)"),
        ],
    ),
    (
        "celebrity spike",
        [
            *(
                m
                for phase in ("before", "during", "after")
                for m in _latency(
                    f"others' read {phase}",
                    "spike",
                    "reads",
                    phase,
                    percentiles=("p50", "p99", "p999"),
                    short=f"others' {phase}",
                )
            ),
            Metric("celebrity publish p99", _at("spike", "publish", "p99_ms"), short="publish p99"),
            *_latency("spike delivery lag", "spike", "delivery_lag", percentiles=("p50", "p99", "max"), short="lag"),
            Metric("time to full delivery", _at("spike", "time_to_full_delivery_ms"), short="full delivery"),
            Metric(
                "spike write amplification",
                _at("spike", "write_amplification"),
                "lower",
                "entries/post",
                short="entries/post",
            ),
            Metric(
                "Redis memory growth",
                _mb("spike", "redis_memory_growth_bytes"),
                "lower",
                "MB",
                short="Redis mem +(MB)",
            ),
            Metric(
                "timelines memory growth",
                _mb("spike", "timelines_memory_growth_bytes"),
                "lower",
                "MB",
                short="timelines mem +(MB)",
            ),
        ],
    ),
    (
        "faults",  # per fault in the order injected (the title names them), "a / b" for several
        [
            Metric("errors after fault", _per_fault("error_count"), "lower", "", short="fault errors"),
            Metric("recovered after", _per_fault("recovered_s", "never"), "lower", "s", short="recovered (s)"),
            Metric("steady p99 after", _per_fault("steady_s", "never"), "lower", "s", short="steady (s)"),
            Metric("read p99 during fault", _per_fault("read_p99_during_ms"), "lower", short="read p99 during"),
            Metric("read p99 after fault", _per_fault("read_p99_after_ms"), "lower", short="read p99 after"),
            Metric("timelines rebuilt", _rebuilds, None, "", short="rebuilt"),
            Metric("posts lost", _at("recovery", "posts_lost", "posts_lost"), "lower", ""),
        ],
    ),
    (
        "correctness",  # last, so the oracle's verdict is the table's last row
        [
            Metric("errors", _errors, "lower", ""),
            Metric("error kinds", _error_kinds, None, ""),
            Metric("oracle", _oracle, None, ""),
        ],
    ),
]
#: The compact layout's section titles: the unit of the section's latency rows is said once, here.
COMPACT_TITLES = {
    "reads": "home reads (ms)",
    "user-timeline reads": "user reads (ms)",
    "publishes": "publishes (ms)",
    "celebrity spike": "celebrity spike (ms)",
}


# -- the table model ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """A rendered value; ``tone`` is "best", "better", "worse", "bad" or None; ``notes`` are printed under it."""

    text: str
    tone: str | None = None
    #: A row label's text in the compact layout.
    short: str | None = None
    notes: tuple[str, ...] = ()


@dataclass
class Comparison:
    """One table: a title, column headers, rows grouped in sections, and a caption saying how to read it."""

    title: str
    columns: list[str]
    sections: list[tuple[str, list[list[Cell]]]] = field(default_factory=list)
    caption: str | None = None
    #: Runs that were disturbed (:mod:`bench.disturbance`), one line each, printed under the table.
    warnings: list[str] = field(default_factory=list)

    def labels(self) -> list[str]:
        """The row labels, in order."""
        return [row[0].text for _, rows in self.sections for row in rows]


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


def title(doc: dict[str, Any]) -> str:
    """A result's table title: scenario and graph, and INCOMPLETE when the run stopped early."""
    graph = doc["graph"]
    state = "" if doc["complete"] else " — INCOMPLETE"
    faults = doc.get("run", {}).get("parameters", {}).get("faults")
    injected = f", faults {', '.join(faults)}" if faults else ""
    return f"{doc['scenario']} run, {graph['users']:,} users, {graph['follows']:,} follows{injected}{state}"


def visible(metrics: list[Metric], figures: Iterable[Figures]) -> list[Metric]:
    """The metrics of which at least one of ``figures`` has a value (the rows a table shows)."""
    figures = list(figures)
    return [m for m in metrics if any(m.get(f) is not None for f in figures)]


def strategies_side_by_side(doc: dict[str, Any]) -> Comparison:
    """One result: a row per metric, a column per strategy; the best numeric value of each row marked.

    A result of several rounds shows each figure's median over rounds with its 95% interval under it, and a last
    column naming the pairs of strategies whose intervals do not overlap ("no clear difference" when none). Tail
    percentiles say how many samples they rest on.
    """
    strategies = doc["strategies"]
    rounds = [r["strategies"] for r in doc.get("rounds") or []]
    repeated = len(rounds) > 1
    columns = ["", *(name + _cut(figures) for name, figures in strategies.items())]
    comparison = Comparison(title(doc), columns + (["differences"] if repeated else []))
    comparison.caption = (
        f"Median of {len(rounds)} rounds (strategy order rotated each round), under it its 95% bootstrap interval "
        f"over rounds (none: the same in every round). {DIFFERENCES_SENTENCE}"
        if repeated
        else "one round: no intervals (--repeat N gives medians over N rounds with 95% intervals)"
    )
    comparison.warnings = disturbance_warnings(doc)
    for section, metrics in SECTIONS:
        rows = []
        for metric in visible(metrics, strategies.values()):
            values = [metric.get(figures) for figures in strategies.values()]
            intervals = _intervals(metric, strategies, rounds) if repeated else {}
            values = [intervals[n].median if n in intervals else v for n, v in zip(strategies, values, strict=True)]
            numeric = [v for v in values if _numeric(v)]
            best = None
            if metric.better and len(numeric) > 1 and min(numeric) != max(numeric):
                best = min(numeric) if metric.better == "lower" else max(numeric)
            row = [_label(metric)]
            for (name, figures), value in zip(strategies.items(), values, strict=True):
                notes = []
                interval = intervals.get(name)
                if interval is not None and interval.low != interval.high:
                    notes.append(f"{number(interval.low)}–{number(interval.high)}")
                if metric.tail and _numeric(value):
                    samples = tail_samples(metric.tail[0](figures), metric.tail[1])
                    if samples is not None:
                        notes.append(f"{samples:,} sample{'' if samples == 1 else 's'}")
                cell = _cell(value, best)
                row.append(Cell(cell.text, cell.tone, notes=tuple(notes)))
            if repeated:
                row.append(Cell(_differences_text(intervals)))
            rows.append(row)
        if rows:
            comparison.sections.append((section, rows))
    return comparison


#: How the caption explains the differences column, and how the compact layout (which has no room for that column
#: and lists a row's differences under its label instead) says it.
DIFFERENCES_SENTENCE = (
    "Differences: the pairs whose intervals do not overlap (a<b); pairs not listed show no clear difference."
)
COMPACT_DIFFERENCES_SENTENCE = (
    "Under a row's label: the pairs whose intervals do not overlap (a<b); pairs not listed show no clear difference."
)


def _label(metric: Metric) -> Cell:
    return Cell(metric.label, short=metric.short_label)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _intervals(metric: Metric, strategies: dict[str, Figures], rounds: list[dict[str, Figures]]) -> dict[str, Interval]:
    """Each strategy's median and 95% interval of ``metric`` over the rounds (strategies without numbers left out)."""
    out = {}
    for name in strategies:
        values = [v for v in (metric.get(r[name]) for r in rounds if name in r) if _numeric(v)]
        interval = median_interval(values)
        if interval is not None:
            if all(isinstance(v, int) for v in values):  # counts stay whole numbers
                interval = Interval(
                    *(round(x) for x in (interval.median, interval.low, interval.high)), interval.rounds
                )
            out[name] = interval
    return out


def _differences_text(intervals: dict[str, Interval]) -> str:
    """``hybrid<push`` for each pair whose intervals do not overlap, one per line; "no clear difference" when none."""
    if len(intervals) < 2:
        return ""
    clear = [f"{d.lower}<{d.higher}" for d in differences(intervals) if d.clear]
    return "\n".join(clear) if clear else "no clear difference"


def _cut(figures: Figures | None) -> str:
    """A column-header mark for a strategy that was cut short (or did not run at all)."""
    if figures is None:
        return " (not run)"
    return " (cut short)" if figures.get("complete") is False else ""


def _cell(value: Any, best: float | None) -> Cell:
    if isinstance(value, str) and value.startswith("FAIL"):
        return Cell(value, "bad")
    return Cell(number(value), "best" if best is not None and value == best else None)


def runs_side_by_side(runs: Labelled, strategy: str) -> Comparison:
    """Several results, one strategy: a column per run, each later run with its change from the first.

    Runs of several rounds carry each figure's 95% interval under it; a change whose interval overlaps the
    baseline's is marked "no clear difference" (not toned better or worse).
    """
    figures = [doc["strategies"].get(strategy) for _, doc in runs]
    rounds = [[r["strategies"] for r in doc.get("rounds") or []] for _, doc in runs]
    headers = [
        label + (" (baseline)" if i == 0 else "") + _cut(f)
        for i, ((label, _), f) in enumerate(zip(runs, figures, strict=True))
    ]
    comparison = Comparison(strategy, ["", *headers])
    comparison.warnings = [
        f"run {label}: {line}" for label, doc in runs for line in disturbance_warnings(doc) if f", {strategy}: " in line
    ]
    present = [f for f in figures if f is not None]
    for section, metrics in SECTIONS:
        rows = []
        for metric in visible(metrics, present):
            base = metric.get(figures[0]) if figures[0] is not None else None
            intervals = [
                _intervals(metric, {strategy: f}, r).get(strategy) if f is not None and len(r) > 1 else None
                for f, r in zip(figures, rounds, strict=True)
            ]
            row = [_label(metric)]
            for i, f in enumerate(figures):
                value = intervals[i].median if intervals[i] is not None else metric.get(f) if f is not None else None
                if i == 0 and intervals[0] is not None:
                    base = intervals[0].median
                cell = _cell(value, None) if i == 0 else _delta_cell(metric, base, value)
                interval = intervals[i]
                if interval is not None and interval.low != interval.high:
                    overlap = i > 0 and intervals[0] is not None and intervals[0].overlaps(interval)
                    note = f"{number(interval.low)}–{number(interval.high)}"
                    if overlap:
                        cell = Cell(cell.text, None)
                        note += ", no clear difference"
                    cell = Cell(cell.text, cell.tone, notes=(note,))
                row.append(cell)
            rows.append(row)
        if rows:
            comparison.sections.append((section, rows))
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


def comparisons(runs: Labelled) -> list[Comparison]:
    """The tables of a report: strategies side by side for one result, runs side by side per strategy for several."""
    if len(runs) == 1:
        return [strategies_side_by_side(runs[0][1])]
    names = list(dict.fromkeys(name for _, doc in runs for name in doc["strategies"]))
    return [runs_side_by_side(runs, name) for name in names]


# -- rendering ------------------------------------------------------------------------------------------------------
STYLES = {"best": "bold green", "better": "green", "worse": "red", "bad": "bold red"}


#: Widths of the compact layout's label and value columns: a label column and three strategies fit 80 columns.
COMPACT_LABEL = 20
COMPACT_VALUE = 16
COMPACT_WIDTH = 80


def compact_value_width(values: int) -> int:
    """The compact layout's value columns: 16 wide for up to three strategies, narrower for more (two columns of
    padding each), so that a label column and every value column still fit 80 columns."""
    return min(COMPACT_VALUE, (COMPACT_WIDTH - COMPACT_LABEL) // max(1, values) - 2)


def rich_table(comparison: Comparison, *, compact: bool = False) -> Table:
    """The comparison as a rich table (a section title row, then its rows; a cell's notes dim under its value),
    wide or compact (see the module).

    Both keep a cell's notes under it (a figure of repeated rounds without its interval, or a tail percentile without
    the samples it rests on, would say more than was measured). Of several rounds the compact layout lists a row's
    clear differences under its label, as 80 columns have no room for a column of them.
    """
    repeated = comparison.columns[-1] == "differences"
    fold_differences = compact and repeated
    text = comparison.caption or ""
    if fold_differences:
        text = text.replace(DIFFERENCES_SENTENCE, COMPACT_DIFFERENCES_SENTENCE)
    caption = Text(text)
    for line in comparison.warnings:
        caption.append(("\n" if caption else "") + "WARNING " + line, style="bold yellow")
    table = Table(
        title=comparison.title,
        title_style="bold",
        header_style="bold",
        caption=caption if caption else None,
        caption_justify="left",
        # Compact: no padding at the table's edges; the two columns it saves let three 16-column values fit in 80.
        **({"box": box.SIMPLE_HEAD, "pad_edge": False} if compact else {}),
    )
    # Labels wrap only beside a column of differences (several rounds), which needs the room.
    wrap_labels = repeated
    columns = comparison.columns[:-1] if fold_differences else comparison.columns
    value_width = compact_value_width(len(columns) - 1)
    for i, column in enumerate(columns):
        if not compact:
            table.add_column(
                column,
                justify="left" if i == 0 else "right",
                no_wrap=i == 0 and not wrap_labels,
                overflow="ellipsis" if i == 0 else "fold",  # a narrow figure column wraps rather than hides digits
            )
        elif i == 0:
            table.add_column(column, no_wrap=not wrap_labels, min_width=COMPACT_LABEL)
        else:  # never wrapped: a text too long for its column (a list of error kinds) ends in an ellipsis instead
            table.add_column(
                column.replace(" (cut short)", " (cut)"), justify="right", no_wrap=True, max_width=value_width
            )
    for section, rows in comparison.sections:
        table.add_row(Text(COMPACT_TITLES.get(section, section) if compact else section, style="bold cyan"))
        for row in rows:
            label, *values = row
            if fold_differences:
                *values, diff = values
                clear = "" if diff.text == "no clear difference" else diff.text.replace("\n", " ")
                cell = _rich_cell(label, compact)
                if clear:
                    cell.append("\n" + clear, style="dim")
                table.add_row(cell, *(_rich_cell(c, compact) for c in values))
                continue
            table.add_row(_rich_cell(label, compact), *(_rich_cell(c, compact) for c in values))
        table.add_section()
    return table


UNBOUNDED_WIDTH = 10_000


class FittedTable:
    """A comparison that renders wide when that fits the width it is given, else compact (rich renderable)."""

    def __init__(self, comparison: Comparison) -> None:
        self.comparison = comparison

    def layout(self, console: Console, width: int) -> Table:
        """The table this comparison renders as in ``width`` columns."""
        wide = rich_table(self.comparison)
        # Measured without a width limit: a table's measurement is otherwise clamped to the width it is given.
        unbounded = console.options.update_width(UNBOUNDED_WIDTH)
        if Measurement.get(console, unbounded, wide).maximum <= width:
            return wide
        return rich_table(self.comparison, compact=True)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.layout(console, options.max_width)


def fitted_table(comparison: Comparison) -> FittedTable:
    """The comparison, wide where there is room and compact in a narrow terminal (80 columns and fewer)."""
    return FittedTable(comparison)


def _rich_cell(cell: Cell, compact: bool = False) -> Text:
    """A cell's text (compact: its short form) and its notes under it, dim: an interval, a tail's sample count."""
    text = Text((cell.short or cell.text) if compact else cell.text, style=STYLES.get(cell.tone or "", ""))
    for note in cell.notes:
        text.append("\n" + note, style="dim")
    return text


def html_table(comparison: Comparison) -> str:
    """The comparison as an HTML table under an ``<h2>`` title (tones as CSS classes the page styles)."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in comparison.columns)
    body = []
    for section, rows in comparison.sections:
        body.append(f'<tr class="section"><td colspan="{len(comparison.columns)}">{esc(section)}</td></tr>')
        for row in rows:
            cells = "".join(
                f'<td class="{c.tone}">{_html_text(c)}</td>' if c.tone else f"<td>{_html_text(c)}</td>" for c in row
            )
            body.append(f"<tr>{cells}</tr>")
    caption = f'<p class="caption">{esc(comparison.caption)}</p>\n' if comparison.caption else ""
    caption += "".join(f'<p class="warning">WARNING {esc(line)}</p>\n' for line in comparison.warnings)
    return f"<h2>{esc(comparison.title)}</h2>\n{caption}<table>\n<tr>{head}</tr>\n" + "\n".join(body) + "\n</table>"


def _html_text(cell: Cell) -> str:
    text = html.escape(cell.text).replace("\n", "<br>")
    return text + "".join(f'<br><small class="note">{html.escape(n)}</small>' for n in cell.notes)
