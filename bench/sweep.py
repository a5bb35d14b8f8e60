"""The threshold sweep: hybrid at a range of celebrity thresholds between pure pull and pure push, and which to pick.

A sweep is one benchmark run whose "strategies" are sweep points: ``pull``, ``hybrid-<threshold>`` for each
threshold, and ``push``, all on one graph with one seeded workload and the repeat/interval machinery of
:mod:`bench.scenarios.rounds`. This module names the points, reads each point's figures (median and 95% interval
over rounds) from the result, and recommends the point that meets every SLO at the lowest store cost.

Store cost of a point, per operation: ``redis_cpu_us`` x Redis CPU microseconds (INFO used_cpu_sys + used_cpu_user
delta / operations, split by command counts when other clients share the server: :func:`harness_cpu_per_op`) +
``pg_rows`` x Postgres rows read (pg_stat, the namespace's tables). The default weights say a Postgres row read
costs about as much as 2 µs of Redis CPU; ``--weights redis-cpu=1,pg-rows=2`` overrides them. On a shared machine
other clients' work still moves the CPU figure (the disturbance guard says when). An SLO is met when the point's
median is at or under the limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.stats import Interval, median_interval

Figures = dict[str, Any]

#: Default weights of the store cost (units: one microsecond of Redis CPU).
DEFAULT_WEIGHTS = {"redis_cpu_us": 1.0, "pg_rows": 2.0}
WEIGHT_NAMES = {"redis-cpu": "redis_cpu_us", "pg-rows": "pg_rows"}
#: Hybrid thresholds an automatic sweep takes between the median and the maximum follower count.
AUTO_POINTS = 6


@dataclass(frozen=True)
class Point:
    """One point of a sweep: a strategy, hybrid's celebrity threshold (None: the settings'), the rate (None: the
    run's) and where reads that compute pages in Postgres go (``read_from``; None: the settings')."""

    name: str
    strategy: str
    threshold: int | None = None
    rate: float | None = None
    read_from: str | None = None

    @property
    def series(self) -> str:
        """What a rate sweep draws one curve for: the strategy, with where it reads when the sweep varies that."""
        return self.strategy if self.read_from is None else f"{self.strategy}-{self.read_from}"

    def as_json(self) -> dict[str, Any]:
        """The point as the result's ``sweep.points`` lists it."""
        point = {"name": self.name, "strategy": self.strategy, "threshold": self.threshold, "rate": self.rate}
        return point if self.read_from is None else {**point, "read_from": self.read_from}

    @classmethod
    def from_json(cls, point: dict[str, Any]) -> Point:
        """A point back from :meth:`as_json`."""
        return cls(point["name"], point["strategy"], point.get("threshold"), point.get("rate"), point.get("read_from"))


def auto_thresholds(follower_counts: Sequence[int], points: int = AUTO_POINTS) -> list[int]:
    """Hybrid thresholds for a graph: 1, then ``points`` log-spaced from the median to one above the maximum.

    At threshold 1 every account with a follower is a celebrity (hybrid writes nothing, like pull); above the
    maximum no account is one (hybrid writes what push writes), so the sweep spans both ends.
    """
    if not follower_counts:
        raise ValueError("the graph has no users")
    low = max(2.0, float(np.median(follower_counts)))
    high = max(low + 1, float(max(follower_counts) + 1))
    spaced = np.geomspace(low, high, points)
    return sorted({1, *(round(v) for v in spaced[:-1]), int(high)})


def sweep_points(thresholds: Sequence[int], *, adaptive: bool = False) -> list[Point]:
    """The points of a threshold sweep: pull, hybrid at each threshold (ascending), push; then adaptive if asked
    (no threshold: it decides per follow edge)."""
    hybrid = [Point(f"hybrid-{t}", "hybrid", t) for t in sorted(set(thresholds))]
    return [
        Point("pull", "pull"),
        *hybrid,
        Point("push", "push"),
        *([Point("adaptive", "adaptive")] if adaptive else []),
    ]


def parse_thresholds(text: str) -> list[int] | None:
    """``auto`` -> None; ``100,1000,10000`` -> those thresholds. Raises ValueError naming a bad value."""
    if text.strip().lower() == "auto":
        return None
    values = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"threshold {part!r} is not a whole number of followers >= 1 (or say auto)")
        values.append(int(part))
    if not values:
        raise ValueError("no thresholds given (say auto, or e.g. 100,1000,10000)")
    return sorted(set(values))


# -- figures --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    """A per-point figure of the sweep: its key, label, unit, and how to read it from a point's block."""

    key: str
    label: str
    unit: str
    get: Callable[[Figures], float | None]


def _at(*keys: str, scale: float = 1.0) -> Callable[[Figures], float | None]:
    def get(figures: Figures) -> float | None:
        node: Any = figures
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return None if node is None else float(node) * scale

    return get


def _rows_per_read(figures: Figures) -> float | None:
    rows = (figures.get("store_counters") or {}).get("pg_rows_read")
    reads = (figures.get("read") or {}).get("count")
    return None if rows is None or not reads else rows / reads


def harness_cpu_per_op(figures: Figures) -> float | None:
    """Redis CPU µs per operation that was the harness's: the server's CPU split by command counts.

    The server's used_cpu counts every client; on a shared Redis the harness's share is estimated as its own
    commands (client-side counts plus the fan-out allowance, :mod:`bench.disturbance`) over all the server ran.
    Without the guard's counts the whole CPU is taken.
    """
    cpu = (figures.get("store_counters") or {}).get("redis_cpu_us_per_op")
    if cpu is None:
        return None
    guard = figures.get("disturbance") or {}
    own, total = guard.get("redis_harness_commands"), guard.get("redis_commands")
    return cpu * min(1.0, own / total) if own is not None and total else cpu


def _cost_parts(figures: Figures) -> tuple[float | None, float | None]:
    return harness_cpu_per_op(figures), (figures.get("store_counters") or {}).get("pg_rows_read_per_op")


FIGURES = [
    Figure("read-p50", "read p50", "ms", _at("read", "p50_ms")),
    Figure("read-p99", "read p99", "ms", _at("read", "p99_ms")),
    Figure("read-p999", "read p99.9", "ms", _at("read", "p999_ms")),
    Figure("publish-p99", "publish p99", "ms", _at("publish", "p99_ms")),
    Figure("delivery-p99", "delivery lag p99", "ms", _at("delivery_lag", "p99_ms")),
    Figure("spike-read-p99", "others' read p99 during the spike", "ms", _at("spike", "reads", "during", "p99_ms")),
    Figure("write-amplification", "write amplification", "entries/post", _at("write_amplification")),
    Figure("timelines-mb", "timelines memory", "MB", _at("memory", "timelines_bytes", scale=1e-6)),
    Figure("redis-cpu", "Redis CPU per op, harness share", "µs", harness_cpu_per_op),
    Figure("pg-rows-per-read", "PG rows read per read", "rows", _rows_per_read),
]
FIGURES_BY_KEY = {f.key: f for f in FIGURES}
#: Figures an SLO can bound (latencies, in ms).
SLO_FIGURES = ("read-p50", "read-p99", "read-p999", "publish-p99", "delivery-p99", "spike-read-p99")


def cost_of(figures: Figures, weights: dict[str, float]) -> float | None:
    """The store cost of one round of a point (see the module's description); None without both counters."""
    cpu, rows = _cost_parts(figures)
    if cpu is None or rows is None:
        return None
    return weights["redis_cpu_us"] * cpu + weights["pg_rows"] * rows


def _rounds_of(doc: dict[str, Any], name: str) -> list[Figures]:
    rounds = doc.get("rounds") or []
    if rounds:
        return [r["strategies"][name] for r in rounds if name in r["strategies"]]
    return [doc["strategies"][name]] if name in doc["strategies"] else []


def point_figures(doc: dict[str, Any], name: str, weights: dict[str, float]) -> dict[str, Interval]:
    """Every figure of one point (and its ``cost``) as median and 95% interval over the result's rounds."""
    blocks = _rounds_of(doc, name)
    out = {}
    getters: list[tuple[str, Callable[[Figures], float | None]]] = [(f.key, f.get) for f in FIGURES]
    getters.append(("cost", lambda figures: cost_of(figures, weights)))
    for key, get in getters:
        values = [v for v in (get(b) for b in blocks) if v is not None and math.isfinite(v)]
        interval = median_interval(values)
        if interval is not None:
            out[key] = interval
    return out


# -- SLOs and the recommendation ------------------------------------------------------------------------------------
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(us|µs|ms|s)\s*$")
_UNIT_MS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_slo(text: str) -> dict[str, float]:
    """``read-p99=10ms,publish-p99=50ms,delivery-p99=5s`` -> {figure: limit in ms}; ValueError names a bad part."""
    slos: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in SLO_FIGURES:
            raise ValueError(f"SLO {part!r}: expected FIGURE=LIMIT with FIGURE one of {', '.join(SLO_FIGURES)}")
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"SLO {part!r}: the limit needs a unit, e.g. 10ms, 500us or 5s")
        slos[key] = float(match.group(1)) * _UNIT_MS[match.group(2)]
    return slos


def parse_weights(text: str) -> dict[str, float]:
    """``redis-cpu=1,pg-rows=2`` -> the cost weights (unnamed ones keep their defaults)."""
    weights = dict(DEFAULT_WEIGHTS)
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in WEIGHT_NAMES:
            raise ValueError(f"weight {part!r}: expected NAME=NUMBER with NAME one of {', '.join(WEIGHT_NAMES)}")
        try:
            weights[WEIGHT_NAMES[key.strip()]] = float(value)
        except ValueError:
            raise ValueError(f"weight {part!r}: {value!r} is not a number") from None
    return weights


def ms_text(value: float) -> str:
    """A latency limit or value given in ms, as the verdicts print it (``10.0 ms``, ``5.00 s``)."""
    return f"{num_text(value / 1000)} s" if value >= 1000 else f"{num_text(value)} ms"


def num_text(value: float) -> str:
    """About three significant digits, no exponent (as the report's tables print figures)."""
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{3 if abs(value) < 1 else 2 if abs(value) < 10 else 1}f}"


#: The SLO on fan-out's delivery lag, which a point that pushes nothing meets by construction.
DELIVERY_SLO = "delivery-p99"


def _delivers_nothing(figures: dict[str, Interval]) -> bool:
    """Whether a point wrote no timeline entry in any round (its write amplification is 0 throughout)."""
    amplification = figures.get("write-amplification")
    return amplification is not None and amplification.high == 0


def recommend(
    doc: dict[str, Any], points: Sequence[Point], slos: dict[str, float], weights: dict[str, float]
) -> dict[str, Any]:
    """The ``sweep.recommendation`` block: the cheapest point meeting every SLO, and why its neighbours lost.

    With no point meeting every SLO it names the SLO that fails first: the one the fewest points meet (ties: the
    order given), with the best value any point reached.
    """
    figures = {p.name: point_figures(doc, p.name, weights) for p in points if p.name in doc["strategies"]}
    evaluations: dict[str, dict[str, Any]] = {}
    for p in points:
        if p.name not in figures:
            continue
        fails = []
        for key, limit in slos.items():
            value = figures[p.name].get(key)
            if value is None and key == DELIVERY_SLO and _delivers_nothing(figures[p.name]):
                continue  # no fan-out (pull, or hybrid with everyone a celebrity): readers see a post at once
            if value is None or value.median > limit:
                fails.append({"slo": key, "limit_ms": limit, "value_ms": None if value is None else value.median})
        cost = figures[p.name].get("cost")
        evaluations[p.name] = {"meets": not fails, "fails": fails, "cost": None if cost is None else cost.median}
    order = [p.name for p in points if p.name in evaluations]
    meeting = [n for n in order if evaluations[n]["meets"]]
    if not meeting:
        return {"point": None, "text": _nothing_meets(slos, figures, order), "evaluations": evaluations}
    costed = [n for n in meeting if evaluations[n]["cost"] is not None]
    best = min(costed, key=lambda n: evaluations[n]["cost"]) if costed else meeting[0]
    chosen = next(p for p in points if p.name == best)
    index = order.index(best)
    neighbours = []
    for other in (order[index - 1] if index > 0 else None, order[index + 1] if index + 1 < len(order) else None):
        if other is not None:
            neighbours.append({"point": other, "reason": _why_lost(other, best, evaluations)})
    where = f"hybrid at threshold {chosen.threshold:,}" if chosen.threshold is not None else _plain(chosen.strategy)
    cost = evaluations[best]["cost"]
    text = f"{where}: meets every SLO"
    if cost is not None:
        text += f" at the lowest store cost ({num_text(cost)} per op)"
    if neighbours:
        text += "; " + "; ".join(f"{n['point']} {n['reason']}" for n in neighbours)
    return {
        "point": best,
        "strategy": chosen.strategy,
        "threshold": chosen.threshold,
        "text": text,
        "neighbours": neighbours,
        "evaluations": evaluations,
    }


def _plain(strategy: str) -> str:
    """A point without a threshold, as the recommendation names it."""
    return "adaptive (per follow edge)" if strategy == "adaptive" else "pure " + strategy


def _why_lost(other: str, best: str, evaluations: dict[str, dict[str, Any]]) -> str:
    fails = evaluations[other]["fails"]
    if fails:
        first = fails[0]
        value = "not measured" if first["value_ms"] is None else ms_text(first["value_ms"])
        return f"fails {first['slo']} ({value} > {ms_text(first['limit_ms'])})"
    mine, theirs = evaluations[best]["cost"], evaluations[other]["cost"]
    if theirs is None:
        return "meets every SLO but its store cost was not measured"
    return f"meets every SLO but costs more ({num_text(theirs)} vs {num_text(mine)} per op)"


def _nothing_meets(slos: dict[str, float], figures: dict[str, dict[str, Interval]], order: list[str]) -> str:
    if not slos:
        return "no point was measured"
    met = {
        key: [n for n in order if (v := figures[n].get(key)) is not None and v.median <= limit]
        for key, limit in slos.items()
    }
    first = min(slos, key=lambda key: len(met[key]))
    values = [(figures[n][first].median, n) for n in order if first in figures[n]]
    best = f"; the best is {min(values)[1]} at {ms_text(min(values)[0])}" if values else ""
    if not met[first]:
        return f"no point meets every SLO: {first} <= {ms_text(slos[first])} fails first (no point meets it{best})"
    alone = ", ".join(f"{k} by {', '.join(v) or 'none'}" for k, v in met.items())
    return f"no point meets every SLO at once: {first} <= {ms_text(slos[first])} fails first (met: {alone})"


def sweep_block(
    doc: dict[str, Any], points: Sequence[Point], slos: dict[str, float], weights: dict[str, float]
) -> dict[str, Any]:
    """The result's ``sweep`` block: the points, each one's figures with intervals, the SLOs and the recommendation."""
    figures = {}
    for p in points:
        if p.name in doc["strategies"]:
            figures[p.name] = {
                key: {"median": plain(i.median), "low": plain(i.low), "high": plain(i.high)}
                for key, i in point_figures(doc, p.name, weights).items()
            }
    return {
        "kind": "threshold",
        "points": [p.as_json() for p in points],
        "figures": figures,
        "slo_ms": slos,
        "weights": weights,
        "recommendation": recommend(doc, points, slos, weights),
    }


def plain(value: float) -> float:
    """A figure rounded for the result file."""
    return round(value, 6)
