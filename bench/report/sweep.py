"""A sweep result in the report: its figures per point (median and 95% interval), the SLOs, the recommendation.

The table has the shape of every other report table (:mod:`bench.report.tables`): a row per figure, a column per
sweep point from pull through hybrid's thresholds to push; the SLO's limit is in the row label, and the last rows say
which points meet every SLO and what each costs.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from bench.disturbance import warnings as disturbance_warnings
from bench.report.tables import Cell, Comparison, Labelled, number, rich_table
from bench.sweep import FIGURES

#: Short column headers of the sweep table, by figure key (the result file names every figure in full).
HEADERS = {
    "read-p50": "read p50 ms",
    "read-p99": "read p99 ms",
    "read-p999": "read p99.9 ms",
    "publish-p99": "publish p99 ms",
    "delivery-p99": "lag p99 ms",
    "spike-read-p99": "spike: others' read p99 ms",
    "write-amplification": "entries /post",
    "timelines-mb": "timelines MB",
    "redis-cpu": "Redis CPU µs/op",
    "pg-rows-per-read": "PG rows /read",
    "cost": "store cost /op",
}


#: The figures of the compact table (the terminal's) besides those an SLO bounds.
COMPACT = ("read-p99", "publish-p99", "delivery-p99", "write-amplification")


def sweep_comparison(doc: dict[str, Any], *, compact: bool = False) -> Comparison:
    """The sweep's table: a row per point (pull, hybrid by threshold, push), a column per figure, the verdict last.

    Figures are medians with their 95% interval under them; a figure over its SLO is marked, the recommended point
    is starred and its cost marked best. ``compact`` keeps the SLOs' figures, read and publish p99, delivery lag
    p99 and write amplification (the HTML page and the result file have all of them).
    """
    block = doc["sweep"]
    if block["kind"] == "rate":
        return rate_comparison(doc)
    points = [p for p in block["points"] if p["name"] in block["figures"]]
    recommendation = block["recommendation"]
    slos = block.get("slo_ms", {})
    keys = [f.key for f in FIGURES if any(f.key in block["figures"][p["name"]] for p in points)]
    if compact:
        keys = [k for k in keys if k in slos or k in COMPACT]
    keys.append("cost")
    columns = ["point"]
    for key in keys:
        columns.append(HEADERS.get(key, key) + (f" ≤ {number(slos[key])}" if key in slos else ""))
    rounds = len(doc.get("rounds") or []) or 1
    weights = block["weights"]
    comparison = Comparison(
        f"threshold sweep, {doc['graph']['users']:,} users, {rounds} round(s) per point",
        [*columns, "SLOs"],
    )
    evaluations = recommendation.get("evaluations", {})
    rows = []
    for p in points:
        chosen = p["name"] == recommendation.get("point")
        row = [Cell(p["name"] + (" *" if chosen else ""), "best" if chosen else None)]
        for key in keys:
            value = block["figures"][p["name"]].get(key)
            limit = slos.get(key)
            tone = "bad" if value is not None and limit is not None and value["median"] > limit else None
            row.append(_cell(value, "best" if chosen and key == "cost" else tone))
        verdict = evaluations.get(p["name"], {})
        fails = [f["slo"] for f in verdict.get("fails", [])]
        row.append(Cell("meets") if verdict.get("meets") else Cell("fails " + ", ".join(fails), "bad"))
        rows.append(row)
    comparison.sections = [("points", rows)]
    cost = f"store cost = {number(weights['redis_cpu_us'])} x Redis CPU µs + {number(weights['pg_rows'])} x PG rows"
    comparison.caption = f"Median over rounds, under it the 95% bootstrap interval; {cost} per op. " + (
        f"Recommended (*): {recommendation['text']}"
        if recommendation.get("point")
        else f"No recommendation: {recommendation['text']}"
    )
    comparison.warnings = disturbance_warnings(doc)
    return comparison


def rate_comparison(doc: dict[str, Any]) -> Comparison:
    """A rate sweep's table: a row per strategy and rate with offered and achieved rate, read p50 and p99."""
    block = doc["sweep"]
    slos = block.get("slo_ms", {})
    limit = slos.get("read-p99")
    comparison = Comparison(
        f"rate sweep, {doc['graph']['users']:,} users",
        [
            "strategy",
            "rate ops/s",
            "offered",
            "achieved",
            "read p50 ms",
            "read p99 ms" + (f" ≤ {number(limit)}" if limit else ""),
            "sustained",
        ],
    )
    rows = []
    for strategy, curve in block["curves"].items():
        for point in curve:
            p99 = point.get("read_p99_ms")
            rows.append(
                [
                    Cell(strategy),
                    Cell(number(point["rate"])),
                    Cell(number(point.get("offered"))),
                    Cell(number(point.get("achieved")), None if point["sustained"] else "bad"),
                    Cell(number(point.get("read_p50_ms"))),
                    Cell(number(p99), "bad" if limit is not None and p99 is not None and p99 > limit else None),
                    Cell("yes" if point["sustained"] else "no", None if point["sustained"] else "bad"),
                ]
            )
    comparison.sections = [("points", rows)]
    comparison.caption = (
        "Sustained: achieved at least 95% of the rate and every SLO met; a strategy stops at its first rate that is "
        f"not. {block['recommendation']['text'][:1].upper()}{block['recommendation']['text'][1:]}."
    )
    comparison.warnings = disturbance_warnings(doc)
    return comparison


def _cell(value: dict[str, float] | None, tone: str | None) -> Cell:
    if value is None:
        return Cell("–")
    notes = () if value["low"] == value["high"] else (f"{number(value['low'])}–{number(value['high'])}",)
    return Cell(number(value["median"]), tone, notes)


def sweep_comparisons(runs: Labelled, *, compact: bool = False) -> list[Comparison]:
    """The sweep table of every run that is a sweep (titled with its label among several runs)."""
    out = []
    for label, doc in runs:
        if doc.get("sweep"):
            comparison = sweep_comparison(doc, compact=compact)
            if len(runs) > 1:
                comparison.title = f"run {label}: {comparison.title}"
            out.append(comparison)
    return out


def print_sweep(doc: dict[str, Any], console: Console) -> None:
    """Print the sweep's table, whose caption holds the recommendation and any disturbance warnings."""
    console.print(rich_table(sweep_comparison(doc, compact=True)))
