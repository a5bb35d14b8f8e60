"""The rate sweep (capacity): each strategy (and, when asked, each read source) at rising rates, its
latency-throughput curve and highest sustained rate.

As YCSB's ``-target`` steps and wrk2's ``-R``: every strategy runs at each rate in turn, lowest first, until it no
longer sustains one (achieved below 95% of the rate, or an SLO broken, :func:`sustains`); its higher rates are
skipped (:func:`rate_skip`, the stopping rule ``fanout sweep rate`` gives the round loop). The points are
:class:`bench.sweep.Point` with a ``rate``; :func:`rate_block` is the result's ``sweep`` block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from bench.driver import Schedule
from bench.sweep import DEFAULT_WEIGHTS, FIGURES_BY_KEY, Figures, Point, ms_text, num_text, plain, point_figures
from targets.config import READ_FROM

#: A point sustains its rate when it completes at least this fraction of the offered operations per second.
SUSTAINED_FRACTION = 0.95


def parse_rates(text: str) -> list[float]:
    """``250,500,1000`` -> those rates, ascending. Raises ValueError naming a bad value."""
    rates = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            rate = float(part)
        except ValueError:
            raise ValueError(f"rate {part!r} is not a number of operations per second") from None
        if not rate > 0:
            raise ValueError(f"rate {part!r} must be above 0")
        Schedule(rate, 1.0)  # a rate one driver cannot offer, or infinity: the schedule's one-line refusal
        rates.append(rate)
    if not rates:
        raise ValueError("no rates given (e.g. 250,500,1000)")
    return sorted(set(rates))


def parse_read_sources(text: str) -> list[str]:
    """``primary,replica`` -> those read sources (none: the settings' one). Raises ValueError naming a bad value."""
    sources = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    for source in sources:
        if source not in READ_FROM:
            raise ValueError(f"read source {source!r} is not one of {', '.join(READ_FROM)}")
    return sources


def rate_points(strategies: Sequence[str], rates: Sequence[float], read_from: Sequence[str] = ()) -> list[Point]:
    """The points of a rate sweep: every strategy at each rate, lowest rates first; with ``read_from`` sources
    (``primary``, ``replica``) every strategy once reading from each, side by side at every rate."""
    sources: Sequence[str | None] = read_from or (None,)
    points = [Point("", s, None, r, src) for r in sorted(rates) for s in strategies for src in sources]
    return [replace(p, name=f"{p.series}-r{_rate_name(p.rate or 0)}") for p in points]


def _rate_name(rate: float) -> str:
    return f"{rate:g}".replace(".", "_")


def sustains(figures: Figures, rate: float, slos: dict[str, float]) -> tuple[bool, str | None]:
    """Whether one run sustained ``rate``: achieved >= 95% of it and every SLO met; else why not."""
    achieved = (figures.get("load") or {}).get("achieved_rate")
    if achieved is None or achieved < SUSTAINED_FRACTION * rate:
        return False, f"achieved {num_text(achieved or 0)} < {SUSTAINED_FRACTION:.0%} of {num_text(rate)} ops/s"
    for key, limit in slos.items():
        value = FIGURES_BY_KEY[key].get(figures)
        if value is None or value > limit:
            return False, f"{key} {'not measured' if value is None else ms_text(value)} > {ms_text(limit)}"
    return True, None


def rate_skip(points: Sequence[Point], slos: dict[str, float]) -> Callable[[str, dict[str, Any]], bool]:
    """The rate sweep's stopping rule: skip a strategy's point once one of its lower rates was not sustained."""
    by_name = {p.name: p for p in points}

    def skip(name: str, doc: dict[str, Any]) -> bool:
        point = by_name[name]
        for lower in points:
            if lower.series == point.series and (lower.rate or 0) < (point.rate or 0):
                figures = doc["strategies"].get(lower.name)
                if figures is not None and not sustains(figures, lower.rate or 0, slos)[0]:
                    return True
        return False

    return skip


def rate_block(doc: dict[str, Any], points: Sequence[Point], slos: dict[str, float]) -> dict[str, Any]:
    """The ``sweep`` block of a rate sweep: each strategy's latency-throughput curve and highest sustained rate."""
    weights = dict(DEFAULT_WEIGHTS)
    figures: dict[str, Any] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    sustained: dict[str, float | None] = {}
    stopped: dict[str, str] = {}
    for p in points:
        block = doc["strategies"].get(p.name)
        if block is None:
            continue
        intervals = point_figures(doc, p.name, weights)
        figures[p.name] = {
            k: {"median": plain(i.median), "low": plain(i.low), "high": plain(i.high)} for k, i in intervals.items()
        }
        ok, why = sustains(block, p.rate or 0, slos)
        load = block.get("load") or {}
        curves.setdefault(p.series, []).append(
            {
                "rate": p.rate,
                "offered": load.get("offered_rate"),
                "achieved": load.get("achieved_rate"),
                "read_p50_ms": block["read"].get("p50_ms"),
                "read_p99_ms": block["read"].get("p99_ms"),
                "sustained": ok,
            }
        )
        sustained.setdefault(p.series, None)
        if ok and p.series not in stopped:
            sustained[p.series] = p.rate
        elif not ok and p.series not in stopped:
            stopped[p.series] = f"at {num_text(p.rate or 0)} ops/s: {why}"
    ranked = sorted(sustained, key=lambda s: -(sustained[s] or 0))
    parts = [f"{s} {num_text(sustained[s]) + ' ops/s' if sustained[s] else 'none of the rates'}" for s in ranked]
    text = "highest sustained rate" + (" within the SLOs" if slos else "") + ": " + ", ".join(parts)
    if stopped:
        text += "; stopped " + "; ".join(f"{s} {why}" for s, why in stopped.items())
    best = ranked[0] if ranked and sustained[ranked[0]] else None
    best_point = next((p for p in points if p.series == best and p.rate == sustained.get(best or "")), None)
    return {
        "kind": "rate",
        "points": [p.as_json() for p in points],
        "figures": figures,
        "slo_ms": slos,
        "weights": weights,
        "curves": curves,
        "sustained": sustained,
        "stopped": stopped,
        "recommendation": {
            "point": best_point.name if best_point else None,
            **({"strategy": best} if best else {}),
            "threshold": None,
            "text": text,
            "evaluations": {},
        },
    }
