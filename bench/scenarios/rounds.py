"""Rounds of a benchmark: every strategy once per round, in an order rotated round by round, from the same state.

Round 1 runs the strategies in the order given (ABC), round 2 shifted by one (BCA), round 3 by two (CAB), so warm-up
and drift of the machine do not always land on the same strategy. Every run uses the same seeded workload and
starts from the same data: its posts and churn are undone after it, and a strategy's derived state is rebuilt
before it unless it is still exactly what a fresh graph load materialised. With one round the result is the
classic one (a block per strategy); with more, :mod:`bench.repeat` keeps each round and reports medians with
intervals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from bench.repeat import rotated, summarise
from bench.scenarios.base import BenchConfig
from bench.scenarios.oracle import check_oracle
from bench.scenarios.run import StrategyOutcome, block
from bench.scenarios.snapshot import DerivedState
from targets.eventloop import raise_if_cancelled
from targets.stores.connections import Stores
from targets.strategies.registry import make_strategy

#: Runs one strategy: (name, round number from 1, whether its derived state must be rebuilt first) -> its result
#: block and whether the run completed; the data must be as before it when it returns (see :func:`finish_run`).
RunOne = Callable[[str, int, bool], Awaitable[tuple[dict[str, Any], bool]]]


async def finish_run(stores: Stores, config: BenchConfig, outcome: StrategyOutcome) -> tuple[dict[str, Any], bool]:
    """A strategy run's result block and completeness, after undoing what the run changed."""
    result = block(outcome, config)
    await outcome.changes.undo(stores, stores.social)
    return result, outcome.complete


async def settle_after_runs(
    stores: Stores, derived: DerivedState, names: Sequence[str], user_ids: Sequence[int], config: BenchConfig
) -> dict[str, Any]:
    """After the last run's undo: put the timelines of every strategy that ran back into the rebuilt state, then check
    them against Postgres (the oracle again, on its own seeded sample), so that the state after a benchmark equals the
    state before it. Returns the result's ``after_undo`` block.
    """
    settled = await derived.settle(stores, names)
    checks = {
        name: await check_oracle(
            make_strategy(name, stores), user_ids, config.oracle_users, config.page_size, ~config.seed
        )
        for name in settled
    }
    return {
        "verdict": "fail" if any(c["verdict"] == "fail" for c in checks.values()) else "pass",
        "strategies": checks,
        "detail": "after the run's posts and churn were undone, each timeline-keeping strategy's pages compared with"
        " Postgres's again (its timelines restored to the rebuilt state first)",
    }


async def run_rounds(
    strategies: Sequence[str],
    repeat: int,
    run_one: RunOne,
    doc: dict[str, Any],
    *,
    valid: Iterable[str] = (),
    skip: Callable[[str], bool] | None = None,
) -> bool:
    """Run ``repeat`` rounds of ``strategies`` into the result ``doc``; returns whether a run was cut short.

    ``valid``: strategies whose derived state is already what a rebuild would make (a graph just loaded with posts
    materialised their timelines); each is rebuilt only after it first ran.
    ``skip`` (a sweep's stopping rule) is asked before each run; a skipped strategy is left out of that round.
    ``doc`` stays a consistent result after every run (``strategies`` summarised, ``rounds`` so far), so a caller
    that catches an error mid-way can still write it.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, not {repeat}")
    valid = set(valid)
    rounds: list[dict[str, Any]] = []
    for index in range(repeat):
        order = rotated(strategies, index)
        current: dict[str, Any] = {"round": index + 1, "order": order, "strategies": {}}
        if repeat > 1:
            rounds.append(current)
        for name in order:
            if skip is not None and skip(name):
                continue
            raise_if_cancelled()  # a Ctrl-C that asyncio lost between runs
            result, complete = await run_one(name, index + 1, name not in valid)
            valid.discard(name)
            current["strategies"][name] = result
            _record(doc, rounds, current, strategies, name)
            if not complete:
                return True
    return False


def _record(
    doc: dict[str, Any], rounds: list[dict[str, Any]], current: dict[str, Any], names: Sequence[str], ran: str
) -> None:
    """Bring ``doc`` up to date after ``ran`` ran: one round's blocks as they are, or every round and the summaries.

    Only the strategy that just ran is summarised again (a summary bootstraps every figure of it).
    """
    if not rounds:  # a single round: the classic result
        doc["strategies"] = {n: current["strategies"][n] for n in names if n in current["strategies"]}
        return
    doc["rounds"] = rounds
    summaries = {**doc["strategies"], **summarise(rounds, [ran])}
    doc["strategies"] = {n: summaries[n] for n in names if n in summaries}
