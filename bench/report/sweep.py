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


def _ms(limit: float) -> str:
    return f"{number(limit / 1000)} s" if limit >= 1000 else f"{number(limit)} ms"


def sweep_comparison(doc: dict[str, Any]) -> Comparison:
    """The sweep's table: figures by point, with intervals, SLO verdicts and store cost."""
    block = doc["sweep"]
    points = [p for p in block["points"] if p["name"] in block["figures"]]
    recommendation = block["recommendation"]
    columns = [""]
    for p in points:
        star = " *" if p["name"] == recommendation.get("point") else ""
        columns.append(p["name"].replace("hybrid-", "hybrid ") + star)
    rounds = len(doc.get("rounds") or []) or 1
    comparison = Comparison(f"threshold sweep, {doc['graph']['users']:,} users, {rounds} round(s) per point", columns)
    slos = block.get("slo_ms", {})
    rows = []
    for figure in FIGURES:
        if not any(figure.key in block["figures"][p["name"]] for p in points):
            continue
        label = f"{figure.label} ({figure.unit})"
        if figure.key in slos:
            label += f" <= {_ms(slos[figure.key])}"
        row = [Cell(label)]
        for p in points:
            value = block["figures"][p["name"]].get(figure.key)
            limit = slos.get(figure.key)
            tone = None if value is None or limit is None else ("bad" if value["median"] > limit else None)
            row.append(_cell(value, tone))
        rows.append(row)
    evaluations = recommendation.get("evaluations", {})
    weights = block["weights"]
    cost_label = f"store cost/op ({number(weights['redis_cpu_us'])} x CPU µs + {number(weights['pg_rows'])} x rows)"
    cost_row = [Cell(cost_label)]
    for p in points:
        value = block["figures"][p["name"]].get("cost")
        cost_row.append(_cell(value, "best" if p["name"] == recommendation.get("point") else None))
    slo_row = [Cell("meets every SLO")]
    for p in points:
        verdict = evaluations.get(p["name"], {})
        fails = verdict.get("fails", [])
        slo_row.append(
            Cell("yes") if verdict.get("meets") else Cell("fails " + ", ".join(f["slo"] for f in fails), "bad")
        )
    comparison.sections = [("figures", rows), ("decision", [cost_row, slo_row])]
    comparison.caption = (
        f"Median over rounds, under it the 95% bootstrap interval. Recommended (*): {recommendation['text']}"
        if recommendation.get("point")
        else f"No recommendation: {recommendation['text']}"
    )
    comparison.warnings = disturbance_warnings(doc)
    return comparison


def _cell(value: dict[str, float] | None, tone: str | None) -> Cell:
    if value is None:
        return Cell("–")
    notes = () if value["low"] == value["high"] else (f"{number(value['low'])}–{number(value['high'])}",)
    return Cell(number(value["median"]), tone, notes)


def sweep_comparisons(runs: Labelled) -> list[Comparison]:
    """The sweep table of every run that is a sweep (titled with its label among several runs)."""
    out = []
    for label, doc in runs:
        if doc.get("sweep"):
            comparison = sweep_comparison(doc)
            if len(runs) > 1:
                comparison.title = f"run {label}: {comparison.title}"
            out.append(comparison)
    return out


def print_sweep(doc: dict[str, Any], console: Console) -> None:
    """Print the sweep's table, whose caption holds the recommendation and any disturbance warnings."""
    console.print(rich_table(sweep_comparison(doc)))
