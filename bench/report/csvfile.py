"""A result as CSV for spreadsheets and plotting tools: the side-by-side table and the per-second series.

``FILE`` holds the table: one row per metric (the wide layout's label, units included) and one column per strategy,
with the values unformatted (full precision, empty when not measured). The series goes beside it, in
``<FILE stem>.series.csv``: one row per strategy and window (``strategy, t_s, throughput, p99_ms, read_p99_ms,
errors``), as ``strategies.<name>.series`` of the result holds them.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from bench.report.tables import SECTIONS, visible

SERIES_COLUMNS = ("t_s", "throughput", "p99_ms", "read_p99_ms", "errors")


def series_path(table_path: Path) -> Path:
    """Where the series of a table written to ``table_path`` goes."""
    return table_path.with_name(table_path.stem + ".series.csv")


def write_csv(doc: dict[str, Any], path: Path) -> tuple[Path, Path]:
    """Write the table to ``path`` and the series beside it; returns both paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    strategies = doc["strategies"]
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["section", "metric", *strategies])
        for section, metrics in SECTIONS:
            for metric in visible(metrics, strategies.values()):
                writer.writerow([section, metric.label, *(_value(metric.get(f)) for f in strategies.values())])
    series = series_path(path)
    with series.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["strategy", *SERIES_COLUMNS])
        for name, figures in strategies.items():
            for point in figures.get("series", ()):
                writer.writerow([name, *(_value(point.get(column)) for column in SERIES_COLUMNS)])
    return path, series


def _value(value: Any) -> Any:
    return "" if value is None else value
