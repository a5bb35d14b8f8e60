"""Repeated rounds: rotated order, medians with bootstrap intervals, and which differences the table calls clear.

Three synthetic targets run through the real round loop (:func:`bench.scenarios.rounds.run_rounds`): each run yields
a result block built from an HdrHistogram of seeded latencies, as a measured run's block is. ``fast`` and ``twin``
read in 2 ms, ``slow`` in 4 ms, each with per-request noise and a per-round drift shared by the round. No stores are
needed: the loop, the summary, the schema and the table are what is tested.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.repeat import rotated, summarise
from bench.report.tables import fitted_table, number, rich_table, runs_side_by_side, strategies_side_by_side
from bench.results import latency_block, load_result, write_result
from bench.scenarios.rounds import run_rounds
from bench.scenarios.snapshot import TimelineSnapshot
from bench.stats import difference_interval, median_interval, tail_samples
from targets.histograms import new_histogram, record_us
from targets.stores.connections import Stores
from targets.stores.timelines import Timelines
from tests.result_factory import sample_result, strategy_figures
from tests.test_report import RUN

MEAN_US = {"fast": 2000, "slow": 4000, "twin": 2000}
ROUNDS = 8
READS = 400


class SyntheticTargets:
    """Stands in for ``fanout bench``'s run of one strategy: a result block whose reads take MEAN_US plus noise."""

    def __init__(self, seed: int = 3) -> None:
        self.rng = random.Random(seed)
        self.calls: list[tuple[int, str, bool]] = []
        self.drift: dict[int, float] = {}
        self._template = strategy_figures(random.Random(1), "push", "steady")

    async def run_one(self, name: str, round_no: int, rebuild: bool) -> tuple[dict[str, Any], bool]:
        self.calls.append((round_no, name, rebuild))
        drift = self.drift.setdefault(round_no, self.rng.uniform(-300, 300))  # the machine, shared by the round
        hist, service = new_histogram(), new_histogram()
        for _ in range(READS):
            value = MEAN_US[name] + drift + self.rng.uniform(-500, 500)
            record_us(hist, round(value))
            record_us(service, round(value * 0.9))
        block = dict(self._template)
        block["read"] = latency_block(hist, uncorrected=service)
        return block, True


async def _repeated(tmp_path: Path, repeat: int) -> tuple[dict[str, Any], SyntheticTargets]:
    targets = SyntheticTargets()
    doc = sample_result(dict(RUN), scenario="steady", strategies=())
    doc["strategies"] = {}
    interrupted = await run_rounds(list(MEAN_US), repeat, targets.run_one, doc, valid=["twin"])
    assert not interrupted
    return load_result(write_result(doc, tmp_path / "repeat.json")), targets  # the file validates both ways


def _table(doc: dict[str, Any]) -> str:
    console = Console(record=True, width=200)
    console.print(rich_table(strategies_side_by_side(doc)))
    return console.export_text()


def _low(doc: dict[str, Any], name: str) -> float:
    return doc["strategies"][name]["intervals"]["read.p50_ms"][0]


def _high(doc: dict[str, Any], name: str) -> float:
    return doc["strategies"][name]["intervals"]["read.p50_ms"][1]


def test_rounds_rotate_the_order_and_rebuild_only_what_ran(tmp_path: Path) -> None:
    assert [rotated("ABC", i) for i in range(4)] == [list("ABC"), list("BCA"), list("CAB"), list("ABC")]
    import asyncio

    doc, targets = asyncio.run(_repeated(tmp_path, 3))
    assert [(r, n) for r, n, _ in targets.calls] == [
        (1, "fast"), (1, "slow"), (1, "twin"),
        (2, "slow"), (2, "twin"), (2, "fast"),
        (3, "twin"), (3, "fast"), (3, "slow"),
    ]  # fmt: skip
    # State that is valid at the start (a fresh load's timelines) serves its strategy's first run only.
    assert [(r, n) for r, n, rebuild in targets.calls if not rebuild] == [(1, "twin")]
    assert [r["order"] for r in doc["rounds"]] == [
        ["fast", "slow", "twin"],
        ["slow", "twin", "fast"],
        ["twin", "fast", "slow"],
    ]
    assert list(doc["strategies"]) == ["fast", "slow", "twin"]


async def test_intervals_cover_the_known_difference_and_only_the_differing_pairs_are_marked(tmp_path: Path) -> None:
    doc, _ = await _repeated(tmp_path, ROUNDS)
    assert len(doc["rounds"]) == ROUNDS
    per_round = {n: [r["strategies"][n]["read"]["p50_ms"] for r in doc["rounds"]] for n in MEAN_US}
    # The file's figure is the median over rounds, its interval the bootstrap's over the same rounds.
    for name, values in per_round.items():
        interval = median_interval(values)
        assert interval is not None
        assert doc["strategies"][name]["read"]["p50_ms"] == interval.median
        assert doc["strategies"][name]["intervals"]["read.p50_ms"] == [interval.low, interval.high]
        assert interval.low <= interval.median <= interval.high
    # The read counts are summed nowhere: a summary block has one round's count (the median).
    assert doc["strategies"]["fast"]["read"]["count"] == READS
    slower = difference_interval(per_round["slow"], per_round["fast"])
    same = difference_interval(per_round["twin"], per_round["fast"])
    assert slower is not None and same is not None
    assert slower.low <= 2.0 <= slower.high and slower.low > 0  # covers the known 2 ms, excludes none
    assert same.low <= 0.0 <= same.high
    table = strategies_side_by_side(doc)
    rows = {row[0].text: row for _, section in table.sections for row in section}
    for label in ("read p50 (ms)", "read p99 (ms)", "read p99.9 (ms)"):
        assert rows[label][-1].text.split() == ["fast<slow", "twin<slow"], label
    assert not any("fast<twin" in row[-1].text or "twin<fast" in row[-1].text for row in rows.values())
    # Each figure carries its interval under it; one the same in every round has none and no clear difference.
    assert rows["read p50 (ms)"][1].notes[0] == f"{number(_low(doc, 'fast'))}–{number(_high(doc, 'fast'))}"
    amplification = rows["write amplification (entries/post)"]
    assert amplification[-1].text == "no clear difference" and all(not c.notes for c in amplification[1:])
    text = _table(doc)
    assert f"Median of {ROUNDS} rounds" in text
    # In 80 columns (compact) each figure keeps its interval under it and the differences go under the label;
    # nothing is cut or wrapped out of sight.
    console = Console(record=True, width=80)
    console.print(fitted_table(strategies_side_by_side(doc)))
    narrow = console.export_text()
    lines = narrow.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert f"{number(_low(doc, 'fast'))}–{number(_high(doc, 'fast'))}" in narrow
    assert any(line.split()[:2] == ["fast<slow", "twin<slow"] for line in lines)
    assert "Under a row's label: the pairs" in " ".join(narrow.split()) and "differences" not in lines[2]


def test_one_round_says_it_has_no_intervals_and_tails_show_their_samples(tmp_path: Path) -> None:
    import asyncio

    doc, _ = asyncio.run(_repeated(tmp_path, 1))
    assert "rounds" not in doc and "intervals" not in doc["strategies"]["fast"]
    text = _table(doc)
    assert "one round: no intervals" in text
    assert "clear differences" not in text
    # p99.9 of 400 reads rests on one sample, p99 on four.
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if " read p99.9 (ms) " in line)
    assert "1 sample" in lines[at + 1]
    assert tail_samples(4700, 99.9) == 5 and tail_samples(400, 99) == 4


def test_summary_keeps_failures_and_errors_of_every_round() -> None:
    base = strategy_figures(random.Random(5), "push", "steady")
    bad = {
        **base,
        "errors": {"TimeoutError": 2},
        "oracle": {"verdict": "fail", "users_checked": 50, "mismatched_users": [7]},
    }
    rounds = [
        {"round": 1, "order": ["push"], "strategies": {"push": base}},
        {"round": 2, "order": ["push"], "strategies": {"push": bad}},
        {"round": 3, "order": ["push"], "strategies": {"push": {**base, "errors": {"TimeoutError": 1}}}},
    ]
    push = summarise(rounds, ["push"])["push"]
    assert push["errors"] == {"TimeoutError": 3}
    assert push["oracle"]["verdict"] == "fail" and push["oracle"]["mismatched_users"] == [7]
    assert push["complete"] is True
    assert push["intervals"]["write_amplification"] == [base["write_amplification"]] * 2


async def test_a_timeline_copy_restores_the_exact_rebuilt_state(stores: Stores) -> None:
    timelines = Timelines(stores.redis, stores.settings.prefix, "push", stores.settings.timeline_cap)
    users = list(range(1, 41))
    for u in users[:30]:  # users 31..40 have empty timelines: no key
        await stores.redis.zadd(timelines.key(u), {str(u * 1000 + i): u * 1000 + i for i in range(u % 7 + 1)})

    async def state() -> list[list[tuple[bytes, float]]]:
        return [await stores.redis.zrange(timelines.key(u), 0, -1, withscores=True) for u in users]

    before = await state()
    copy = await TimelineSnapshot.take(stores, "push", users)
    assert sum(p is not None for p in copy.payloads) == 30
    for u in users[::3]:  # a run's writes: new posts everywhere, trims, timelines that appeared
        await stores.redis.zadd(timelines.key(u), {"999999": 999999})
        await stores.redis.zremrangebyrank(timelines.key(u), 0, 0)
    assert await state() != before
    assert await copy.restore(stores) == 30
    assert await state() == before
    assert await stores.redis.exists(*(timelines.key(u) for u in users[30:])) == 0


async def test_comparing_repeated_runs_shows_intervals_and_says_when_a_change_is_not_clear(tmp_path: Path) -> None:
    doc, _ = await _repeated(tmp_path, ROUNDS)
    slower = copy.deepcopy(doc)
    for r in slower["rounds"]:
        r["strategies"]["fast"]["read"]["p50_ms"] += 100.0  # far outside the first run's interval
    same = runs_side_by_side([("a", doc), ("b", copy.deepcopy(doc))], "fast")
    shifted = runs_side_by_side([("a", doc), ("b", slower)], "fast")

    def p50(comparison: Any) -> list[Any]:
        return next(row for _, rows in comparison.sections for row in rows if row[0].text == "read p50 (ms)")

    base, again = p50(same)[1:]
    assert base.notes == (f"{number(_low(doc, 'fast'))}–{number(_high(doc, 'fast'))}",)
    assert again.notes[0].endswith(", no clear difference") and again.tone is None
    _, moved = p50(shifted)[1:]
    assert "no clear difference" not in moved.notes[0] and moved.tone == "worse"
