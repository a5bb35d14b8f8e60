"""Repeated rounds in a result document: each round's strategy blocks, and the medians the file reports.

With ``--repeat N`` a result keeps every round under ``rounds`` (``{"round": 1, "order": [...], "strategies":
{...}}``) and its ``strategies.<name>`` becomes the median over rounds, in the very shape of one round's block, so
everything that reads one round reads the summary too. How each kind of value is summarised:

- numbers: the median over the rounds that have them (integers stay integers, rounded); each also gets its 95%
  interval in ``strategies.<name>.intervals`` under its dotted path (``read.p99_ms``), see :mod:`bench.stats`;
- an encoded ``histogram``: every round's samples merged (to re-analyse all of them), while the figures beside it
  are medians of the rounds' own figures;
- ``complete``: true only if every round completed; ``errors``: summed over rounds; the oracle's verdict: the worst
  of the rounds (fail, then skipped, then pass), with every round's mismatched users; ``disturbance.disturbed``:
  true if any round was, with every round's reasons;
- other strings and lists (the per-second ``series``, the celebrities): the first round's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.stats import median_interval
from targets import histograms

Block = dict[str, Any]
#: Parts not summarised as figures: the time series and per-command or per-table breakdowns (kept per round).
NO_INTERVALS = frozenset({"series", "redis_commandstats", "pg_table_bytes", "client", "celebrities", "intervals"})
VERDICT_ORDER = ("fail", "skipped", "pass")


def rotated(names: Sequence[str], round_index: int) -> list[str]:
    """The strategy order of round ``round_index`` (0-based): ABC, BCA, CAB, ABC, ..."""
    if not names:
        return []
    shift = round_index % len(names)
    return [*names[shift:], *names[:shift]]


def summarise(rounds: Sequence[Block], names: Sequence[str]) -> dict[str, Block]:
    """``strategies`` of a repeated result: per strategy the median block over ``rounds`` with its ``intervals``.

    A strategy missing from a round (the run was interrupted) is summarised over the rounds that have it.
    """
    summary = {}
    for name in names:
        blocks = [r["strategies"][name] for r in rounds if name in r["strategies"]]
        if not blocks:
            continue
        block = _merge(blocks, ())
        block["intervals"] = intervals(blocks)
        summary[name] = block
    return summary


def intervals(blocks: Sequence[Block]) -> dict[str, list[float]]:
    """``{dotted path: [low, high]}`` of every numeric figure of the rounds' blocks (the 95% interval of its median)."""
    values: dict[str, list[float | None]] = {}
    for i, block in enumerate(blocks):
        for path, value in _leaves(block, ""):
            values.setdefault(path, [None] * len(blocks))[i] = value
    out = {}
    for path, series in values.items():
        interval = median_interval([v for v in series if v is not None])
        if interval is not None:
            out[path] = [_plain(interval.low), _plain(interval.high)]
    return out


def _leaves(node: Any, path: str) -> list[tuple[str, float]]:
    if isinstance(node, dict):
        found = []
        for key, value in node.items():
            if key in NO_INTERVALS or key == "histogram":
                continue
            found += _leaves(value, f"{path}.{key}" if path else key)
        return found
    if isinstance(node, int | float) and not isinstance(node, bool):
        return [(path, float(node))]
    return []


def _plain(value: float) -> float | int:
    return int(value) if value.is_integer() else round(value, 6)


def _merge(values: Sequence[Any], path: tuple[str, ...]) -> Any:
    """One value standing for the rounds' ``values`` at ``path`` (see the module's rules)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    first = present[0]
    key = path[-1] if path else ""
    if key == "histogram" and all(isinstance(v, str) for v in present):
        return histograms.encode(histograms.merged(histograms.decode(v) for v in present))
    if key == "errors" and isinstance(first, dict):
        totals: dict[str, int] = {}
        for errors in present:
            for kind, n in errors.items():
                totals[kind] = totals.get(kind, 0) + n
        return totals
    if key == "oracle" and isinstance(first, dict):
        return _oracle(present)
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for v in present if isinstance(v, dict) for k in v))
        merged = {k: _merge([v.get(k) for v in present if isinstance(v, dict)], (*path, k)) for k in keys}
        if isinstance(merged.get("count"), int) and merged["count"] == 0:  # an empty latency block stays empty
            merged.update({k: None for k in merged if k.endswith("_ms") and k != "min_ms"})
            merged.pop("min_ms", None)
        return merged
    if key == "disturbed":  # one disturbed round is enough to say so
        return any(bool(v) for v in present)
    if key == "reasons":
        return list(dict.fromkeys(reason for v in present for reason in v))
    if isinstance(first, bool):
        return all(bool(v) for v in present)
    if isinstance(first, int | float) and all(isinstance(v, int | float) for v in present):
        median = float(np.median(np.asarray(present, dtype=float)))
        return round(median) if all(isinstance(v, int) for v in present) else median
    return first


def _oracle(verdicts: Sequence[Block]) -> Block:
    worst = min(verdicts, key=lambda o: VERDICT_ORDER.index(o["verdict"]) if o["verdict"] in VERDICT_ORDER else 0)
    merged = dict(worst)
    mismatched = sorted({u for o in verdicts for u in o.get("mismatched_users", [])})
    if "mismatched_users" in worst or mismatched:
        merged["mismatched_users"] = mismatched
    return merged
