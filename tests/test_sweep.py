"""The threshold sweep's decision: points, SLO parsing, the recommendation, and its result in the file and report.

The sweep result here is synthetic: per point and round a result block built from seeded HdrHistograms
(:mod:`tests.result_factory`), shaped like the real trade-off (push reads fast and publishes slowly, pull the other
way round, hybrid in between), and summarised by the same round machinery ``fanout bench --repeat`` uses.
"""

from __future__ import annotations

import copy
import random
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from bench.capacity import parse_rates, rate_block, rate_points, rate_skip
from bench.repeat import summarise
from bench.results import latency_block, load_result, write_result
from bench.sweep import (
    Point,
    auto_thresholds,
    parse_slo,
    parse_thresholds,
    parse_weights,
    recommend,
    sweep_block,
)
from bench.sweep import sweep_points as make_points
from targets.config import Settings
from targets.histograms import new_histogram, record_us
from tests.browser import BROWSER_OPTIONAL, CHROMIUM, dump_dom
from tests.result_factory import sample_result, strategy_figures
from tests.test_bench_cli import CELEBRITY_FOLLOWERS, bench_namespace, namespace_args, small_run  # noqa: F401
from tests.test_report import RUN, fanout

POINTS = make_points([10, 100, 1001])
#: Per point: read p99-ish latency (µs), publish latency (µs), Redis CPU µs/op, PG rows/op, write amplification.
SHAPE = {
    "pull": (20_000, 1_500, 5.0, 40.0, 0.0),
    "hybrid-10": (9_000, 2_500, 8.0, 15.0, 3.0),
    "hybrid-100": (5_000, 6_000, 10.0, 6.0, 12.0),
    "hybrid-1001": (1_500, 30_000, 14.0, 1.0, 30.0),
    "push": (1_400, 31_000, 14.0, 1.0, 30.0),
}
ROUNDS = 3
WEIGHTS = parse_weights("")


def _latency(rng: random.Random, n: int, around_us: int) -> Any:
    hist, service = new_histogram(), new_histogram()
    for _ in range(n):
        value = round(around_us * rng.uniform(0.9, 1.1))
        record_us(hist, value)
        record_us(service, value)
    return latency_block(hist, uncorrected=service)


@cache
def _sweep_doc() -> dict[str, Any]:
    rng = random.Random(4)
    template = strategy_figures(random.Random(1), "push", "steady")
    rounds = []
    for index in range(ROUNDS):
        blocks = {}
        for name, (read_us, publish_us, cpu, rows, amplification) in SHAPE.items():
            block = copy.deepcopy(template)
            block["read"] = _latency(rng, 200, read_us)
            block["publish"] = _latency(rng, 20, publish_us)
            block["write_amplification"] = amplification
            block["store_counters"]["redis_cpu_us_per_op"] = cpu * rng.uniform(0.95, 1.05)
            block["store_counters"]["pg_rows_read_per_op"] = rows
            block["memory"]["timelines_bytes"] = round(amplification * 100_000)
            blocks[name] = block
        rounds.append({"round": index + 1, "order": list(SHAPE), "strategies": blocks})
    doc = sample_result(dict(RUN), scenario="steady", strategies=())
    doc["rounds"] = rounds
    doc["strategies"] = summarise(rounds, list(SHAPE))
    doc["run"]["parameters"]["points"] = [p.as_json() for p in POINTS]
    return doc


def test_points_and_options() -> None:
    followers = [0] * 50 + [3] * 40 + [40] * 9 + [5000]
    thresholds = auto_thresholds(followers)
    assert thresholds[0] == 1 and thresholds[-1] == 5001  # hybrid as pull, then as push
    assert thresholds == sorted(set(thresholds)) and 6 <= len(thresholds) <= 8
    points = make_points(thresholds)
    assert [p.name for p in (points[0], points[-1])] == ["pull", "push"]
    assert points[1] == Point("hybrid-1", "hybrid", 1)
    assert parse_thresholds("auto") is None and parse_thresholds("1000, 10,100") == [10, 100, 1000]
    assert parse_slo("read-p99=10ms,publish-p99=500us,delivery-p99=5s") == {
        "read-p99": 10.0,
        "publish-p99": 0.5,
        "delivery-p99": 5000.0,
    }
    assert parse_weights("pg-rows=0.5") == {"redis_cpu_us": 1.0, "pg_rows": 0.5}
    for bad, parse in (("read-p99=10", parse_slo), ("p42=1ms", parse_slo), ("0", parse_thresholds)):
        with pytest.raises(ValueError):
            parse(bad)
    for rates, problem in (("100,1e9", "--calibrate"), ("inf", "--calibrate"), ("nan", "above 0"), ("x", "number")):
        with pytest.raises(ValueError, match=problem):
            parse_rates(rates)


def test_an_slo_only_push_meets_recommends_push_and_says_why_its_neighbour_lost() -> None:
    doc = _sweep_doc()
    advice = recommend(doc, POINTS, parse_slo("read-p99=1.6ms"), WEIGHTS)
    assert advice["point"] == "push" and advice["threshold"] is None
    assert [e for e, v in advice["evaluations"].items() if v["meets"]] == ["push"]
    (neighbour,) = advice["neighbours"]
    assert neighbour["point"] == "hybrid-1001" and neighbour["reason"].startswith("fails read-p99 (")
    assert advice["text"].startswith("pure push: meets every SLO")


def test_an_slo_only_pull_meets_recommends_pull() -> None:
    advice = recommend(_sweep_doc(), POINTS, parse_slo("publish-p99=2ms"), WEIGHTS)
    assert advice["point"] == "pull"
    assert advice["neighbours"][0]["point"] == "hybrid-10"


def test_a_point_that_pushes_nothing_meets_a_delivery_slo() -> None:
    # Pull delivers nothing (no lag measured at all): a delivery SLO cannot exclude it; a pushing point without a
    # measured lag still fails it.
    doc = copy.deepcopy(_sweep_doc())
    for r in doc["rounds"]:
        for name in ("pull", "push"):
            r["strategies"][name]["delivery_lag"] = latency_block(new_histogram())
    advice = recommend(doc, POINTS, parse_slo("publish-p99=2ms,delivery-p99=5s"), WEIGHTS)
    assert advice["point"] == "pull" and advice["evaluations"]["pull"]["fails"] == []
    assert [f["slo"] for f in advice["evaluations"]["push"]["fails"]] == ["publish-p99", "delivery-p99"]


def test_the_cheapest_point_within_the_slos_wins_and_costier_neighbours_are_named() -> None:
    # Cost = CPU µs + 2 x rows: pull 85, hybrid-10 38, hybrid-100 22, hybrid-1001 16, push 16 (by CPU noise).
    advice = recommend(_sweep_doc(), POINTS, parse_slo("read-p99=10ms,publish-p99=10ms"), WEIGHTS)
    assert advice["point"] == "hybrid-100" and advice["threshold"] == 100
    reasons = {n["point"]: n["reason"] for n in advice["neighbours"]}
    assert reasons["hybrid-1001"].startswith("fails publish-p99")
    assert reasons["hybrid-10"].startswith("meets every SLO but costs more")


def test_adaptive_runs_beside_every_threshold_and_can_be_recommended() -> None:
    points = make_points([10, 100], adaptive=True)
    assert [p.name for p in points] == ["pull", "hybrid-10", "hybrid-100", "push", "adaptive"]
    assert points[-1] == Point("adaptive", "adaptive") and Point.from_json(points[-1].as_json()) == points[-1]
    # Adaptive with the figures of hybrid-100 but cheaper: within the SLOs at the lowest cost, it is the pick.
    doc = copy.deepcopy(_sweep_doc())
    for r in doc["rounds"]:
        block = copy.deepcopy(r["strategies"]["hybrid-100"])
        block["store_counters"]["pg_rows_read_per_op"] = 1.0
        r["strategies"]["adaptive"] = block
    doc["strategies"] = summarise(doc["rounds"], [*SHAPE, "adaptive"])
    chosen = [*POINTS, Point("adaptive", "adaptive")]
    advice = recommend(doc, chosen, parse_slo("read-p99=10ms,publish-p99=10ms"), WEIGHTS)
    assert advice["point"] == "adaptive" and advice["threshold"] is None
    assert advice["text"].startswith("adaptive (per follow edge): meets every SLO at the lowest store cost")
    assert advice["neighbours"] == [{"point": "push", "reason": advice["neighbours"][0]["reason"]}]
    assert advice["neighbours"][0]["reason"].startswith("fails publish-p99")


def test_an_impossible_slo_names_the_slo_that_fails_first() -> None:
    advice = recommend(_sweep_doc(), POINTS, parse_slo("publish-p99=50ms,read-p99=0.1ms"), WEIGHTS)
    assert advice["point"] is None
    assert "read-p99 <= 0.100 ms fails first (no point meets it; the best is push" in advice["text"]
    together = recommend(_sweep_doc(), POINTS, parse_slo("read-p99=1.6ms,publish-p99=2ms"), WEIGHTS)
    assert together["point"] is None and "no point meets every SLO at once" in together["text"]


def test_sweep_results_validate_and_the_report_shows_the_sweep(tmp_path: Path) -> None:
    doc = copy.deepcopy(_sweep_doc())
    doc["sweep"] = sweep_block(doc, POINTS, parse_slo("read-p99=10ms,publish-p99=10ms"), WEIGHTS)
    path = write_result(doc, tmp_path / "sweep.json")
    loaded = load_result(path)  # validates against the extended schema
    assert loaded["sweep"]["recommendation"]["point"] == "hybrid-100"
    figures = loaded["sweep"]["figures"]
    assert figures["push"]["write-amplification"]["median"] == figures["hybrid-1001"]["write-amplification"]["median"]
    page = tmp_path / "report.html"
    result = fanout("report", str(path), "--html", str(page))
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.split())  # the caption wraps
    assert "threshold sweep" in words and "Recommended (*): hybrid at threshold 100" in words
    text = page.read_text()
    alts = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([a-z0-9-]+)"', text)
    assert alts[-1] == "sweep" and (tmp_path / "report-sweep.png").stat().st_size > 5000
    if CHROMIUM is not None or not BROWSER_OPTIONAL:
        dom = dump_dom(page)
        assert f'<body data-plots-loaded="{len(alts)}/{len(alts)}">' in dom


def test_a_threshold_sweep_on_real_stores_spans_pull_to_push(bench_namespace: Settings, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "sweep.json"
    top = CELEBRITY_FOLLOWERS + 2  # above the celebrity: hybrid pushes every post, as push does
    args = small_run(out, "--fanout", "sync", "--scenario", "steady")
    at = args.index("--threshold")  # the sweep sets the threshold itself
    del args[at : at + 2]
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", *namespace_args(bench_namespace), "sweep", "threshold", *args,
         "--thresholds", f"1,{top}", "--slo", "read-p99=5s"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    doc = load_result(out)
    names = ["pull", "hybrid-1", f"hybrid-{top}", "push"]
    assert list(doc["strategies"]) == names
    amplification = {n: doc["strategies"][n]["write_amplification"] for n in names}
    assert amplification["hybrid-1"] == amplification["pull"] == 0  # every poster is a celebrity: nothing written
    assert amplification[f"hybrid-{top}"] == amplification["push"] > 0  # nobody is: the same entries as push
    assert all(doc["strategies"][n]["oracle"]["verdict"] == "pass" for n in names)
    sweep = doc["sweep"]
    assert [p["threshold"] for p in sweep["points"]] == [None, 1, top, None]
    assert sweep["recommendation"]["point"] in names  # a 5 s read p99 is met by every point
    assert "Recommended (*)" in " ".join(result.stdout.split())


def _rate_doc() -> tuple[dict[str, Any], list[Point], list[str]]:
    """A rate sweep where push keeps up to 1,000 ops/s and pull only to 250 (it falls behind at 500)."""
    rng = random.Random(8)
    template = strategy_figures(random.Random(1), "push", "steady")
    points = rate_points(["push", "pull"], [250, 500, 1000, 2000])
    doc = sample_result(dict(RUN), scenario="steady", strategies=())
    doc["strategies"] = {}
    skip = rate_skip(points, parse_slo("read-p99=50ms"))
    ran = []
    for p in points:
        if skip(p.name, doc):
            continue
        ran.append(p.name)
        rate = p.rate or 0
        keeps_up = rate <= (1000 if p.strategy == "push" else 250)
        block = copy.deepcopy(template)
        block["read"] = _latency(rng, 100, 2_000 if keeps_up else 200_000)
        block["load"] = {**block["load"], "target_rate": rate, "offered_rate": rate}
        block["load"]["achieved_rate"] = rate if keeps_up or p.strategy == "push" else rate * 0.6
        doc["strategies"][p.name] = block
    doc["run"]["parameters"]["points"] = [p.as_json() for p in points]
    return doc, points, ran


def test_a_rate_sweep_stops_each_strategy_at_its_first_unsustained_rate(tmp_path: Path) -> None:
    doc, points, ran = _rate_doc()
    # pull fails at 500 (falls behind), push at 2,000 (read p99 over the SLO): nothing above is run.
    assert ran == ["push-r250", "pull-r250", "push-r500", "pull-r500", "push-r1000", "push-r2000"]
    doc["sweep"] = rate_block(doc, points, parse_slo("read-p99=50ms"))
    assert doc["sweep"]["sustained"] == {"push": 1000, "pull": 250}
    assert doc["sweep"]["stopped"]["pull"].startswith("at 500 ops/s: achieved 300 < 95% of 500")
    assert doc["sweep"]["stopped"]["push"].startswith("at 2,000 ops/s: read-p99")
    assert doc["sweep"]["recommendation"]["point"] == "push-r1000"
    path = write_result(doc, tmp_path / "rate.json")
    load_result(path)
    result = fanout("report", str(path), "--html", str(tmp_path / "r.html"))
    assert result.exit_code == 0, result.output
    assert "rate sweep" in result.output and "push 1,000 ops/s, pull 250 ops/s" in " ".join(result.output.split())
    assert (tmp_path / "r-rate-sweep.png").stat().st_size > 5000


def test_a_rate_sweep_on_real_stores_starts_every_run_from_the_same_state(
    bench_namespace: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "rate.json"
    # Timelines capped at 5 entries: each run's posts push older entries out, which only a reset brings back.
    args = small_run(out, "--fanout", "sync", "--scenario", "steady", "--strategy", "push,pull", "--timeline-cap", "5")
    at = args.index("--rate")  # the sweep sets the rate itself
    del args[at : at + 2]
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", *namespace_args(bench_namespace), "sweep", "rate", *args,
         "--rates", "30,60"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    doc = load_result(out)
    assert list(doc["strategies"]) == ["push-r30", "pull-r30", "push-r60", "pull-r60"]
    # push at 60 ops/s runs after push at 30 did: its timelines are restored, so the oracle still passes.
    assert all(s["oracle"]["verdict"] == "pass" for s in doc["strategies"].values())
    assert [s["load"]["target_rate"] for s in doc["strategies"].values()] == [30, 30, 60, 60]
    assert set(doc["sweep"]["sustained"]) == {"push", "pull"}
