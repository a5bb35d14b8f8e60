"""Deterministic cost figures per operation, and the gate that holds them to the committed baseline.

A figure is an exact count of what one operation sent to the stores (the client-side counters of
:mod:`targets.stores.counters`) or wrote (timeline entries, from the operation's own result). Nothing else on the
machine can move them, so unlike timings they are compared exactly: any figure above ``costs.json`` fails the gate.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from bench.metrics import server_counters
from targets.stores.connections import Stores

BASELINE = Path(__file__).with_name("costs.json")
UPDATE_VAR = "FANOUT_UPDATE_COSTS"
LOOSE_FACTOR = 2
UPDATE_HINT = (
    f"if the change is intended, record the new figures with `{UPDATE_VAR}=1 .venv/bin/pytest tests/benchmarks` and "
    f"commit {BASELINE.relative_to(BASELINE.parents[2])} with a message that says why"
)

T = TypeVar("T")


async def measure(
    stores: Stores, operation: Callable[[], Awaitable[T]], *, rows_read: bool = False
) -> tuple[dict[str, int], T]:
    """Run ``operation`` once; return what it sent to the stores (every ``stores.counters`` field) and its result.

    With ``rows_read`` the figures also hold ``pg_rows_read``: rows and index entries Postgres read in the namespace's
    tables (its own statistics, flushed before and after), which shows a lost index or a scan that grew. It counts
    only ``stores``' connections, and the planner may switch a prepared statement to a generic plan after a few runs,
    so hold it to the loose bound.
    """
    server_before = await server_counters(stores) if rows_read else None
    before = stores.counters.snapshot()
    result = await operation()
    figures = asdict(stores.counters.since(before))
    if server_before is not None:
        figures["pg_rows_read"] = (await server_counters(stores)).pg_rows_read - server_before.pg_rows_read
    return figures, result


def check_costs(name: str, figures: dict[str, int], loose: Collection[str] = (), baseline: Path = BASELINE) -> None:
    """Fail when any figure of benchmark ``name`` rose above the committed baseline (or has none).

    Figures named in ``loose`` are counts that something besides the code can move a little (a worker's blocking
    reads, a SCAN over a database other clients share): they fail only above ``LOOSE_FACTOR`` times the baseline,
    which still catches a loop that makes one call per follower or per key. With ``FANOUT_UPDATE_COSTS=1`` the
    measured figures replace the baseline entry instead. A figure that fell passes with a warning, so the gain can
    be locked in by updating the baseline.
    """
    committed: dict[str, dict[str, Any]] = json.loads(baseline.read_text()) if baseline.exists() else {}
    if os.environ.get(UPDATE_VAR) == "1":
        committed[name] = dict(sorted(figures.items()))
        baseline.write_text(json.dumps(dict(sorted(committed.items())), indent=2) + "\n")
        return
    old = committed.get(name)
    assert old is not None, f"{name}: no cost baseline in {baseline.name}; {UPDATE_HINT}"
    limit = {k: old[k] * (LOOSE_FACTOR if k in loose else 1) for k in old}
    rose = [f"{k} rose from {old[k]} to {v}" for k, v in figures.items() if k in old and v > limit[k]]
    missing = [f"{k} (measured {v}) has no baseline" for k, v in figures.items() if k not in old]
    gone = [f"{k} (baseline {old[k]}) was not measured" for k in old if k not in figures]
    problems = rose + missing + gone
    assert not problems, f"{name}: cost regression per operation: {'; '.join(problems)}; {UPDATE_HINT}"
    fell = [f"{k} fell from {old[k]} to {v}" for k, v in figures.items() if v < old[k] and k not in loose]
    if fell:
        warnings.warn(f"{name}: {'; '.join(fell)}; lock the gain in: {UPDATE_HINT}", stacklevel=2)
