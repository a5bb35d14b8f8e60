"""`fanout bench` end to end on real stores: bad input fails first, runs write valid results, Ctrl-C keeps data."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hdrh.log import HistogramLogReader

from bench.results import load_result
from bench.scenarios.oracle import check_oracle
from targets.config import Settings
from targets.eventloop import run
from targets.fanout.queue import FanoutQueue
from targets.histograms import new_histogram
from targets.stores.connections import Stores
from targets.strategies.registry import make_strategy
from tests.conftest import namespace_settings
from tests.signal_support import terminal_signals
from tests.test_cli_errors import unused_port

USERS = 400
POSTS_PER_USER = 3
#: Half of the users follow the generated celebrity; the hybrid threshold is far below that.
CELEBRITY_FOLLOWERS = USERS // 2
THRESHOLD = 60


def fanout(settings: Settings, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *namespace_args(settings), "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def namespace_args(settings: Settings) -> list[str]:
    return ["--prefix", settings.prefix, "--schema", settings.schema]


def small_run(out: Path, *extra: str) -> list[str]:
    return [
        "--users",
        str(USERS),
        "--posts-per-user",
        str(POSTS_PER_USER),
        "--scenario",
        "spike",
        "--rate",
        "60",
        "--duration",
        "2",
        "--spike-at",
        "1",
        "--spike-window",
        "1",
        "--threshold",
        str(THRESHOLD),
        "--oracle-users",
        "30",
        "--spike-posts",
        "2",
        "--warmup",
        "0.5",
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture
async def bench_namespace() -> AsyncIterator[Settings]:
    """The session's namespace for a `fanout bench` subprocess, dropped afterwards."""
    settings = namespace_settings()
    yield settings
    async with await Stores.connect(settings, create=False) as stores:
        await stores.drop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "--rate"),
        (["--rate", "-5"], "--rate"),
        (["--read-ratio", "1.5"], "--read-ratio"),
        (["--strategy", "push,fast"], "unknown strategy fast: choose from push, pull, hybrid"),
        (["--graph", "/nonexistent/graph.txt"], "does not exist"),
        (["--users", "500", "--graph", __file__], "either --graph FILE or --users N"),
        (["--scenario", "spike", "--duration", "5", "--spike-at", "9"], "spike time"),
        (["--read-ratio", "0.9", "--churn", "0.2"], "churn ratio"),
        (["--rate", "inf"], "'inf' is not a finite number"),
        (["--duration", "nan"], "'nan' is not a finite number"),
        (["--warmup", "inf"], "--warmup"),
        (["--rate", "1e9"], "--calibrate"),
        (["--duration", "1e7"], "more than a day"),
        (["--max-in-flight", "100000000"], "--max-in-flight"),
    ],
)
def test_bad_parameters_fail_before_anything_runs(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "r.json"
    result = fanout(namespace_settings(), *args, "--out", str(out), timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_unreachable_stores_fail_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    port = unused_port()
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", "--redis-url", f"redis://127.0.0.1:{port}/0", "bench", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"Redis does not answer at redis://127.0.0.1:{port}/0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


async def test_spike_run_compares_all_strategies_and_restores_the_data(
    bench_namespace: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "spike.json"
    result = fanout(bench_namespace, *small_run(out, "--fanout", "sync"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"result: {out}" in result.stdout
    doc = load_result(out)  # validates against results/schema.json
    assert doc["complete"] and doc["scenario"] == "spike"
    assert list(doc["strategies"]) == ["push", "pull", "hybrid"]
    assert doc["graph"]["users"] == USERS + 1 and doc["graph"]["max_followers"] == CELEBRITY_FOLLOWERS
    for name, s in doc["strategies"].items():
        assert s["oracle"] == {**s["oracle"], "verdict": "pass", "users_checked": 30}, name
        assert s["read"]["count"] + s["publish"]["count"] == s["load"]["operations"], name
        assert s["errors"] == {}, name
        spike = s["spike"]
        assert spike["celebrities"] == [{"user_id": USERS + 1, "followers": CELEBRITY_FOLLOWERS}]
        assert spike["posts"] == spike["publish"]["count"] == 2
        assert s["store_counters"]["pg_rows_written"] > 0
    push, pull, hybrid = (doc["strategies"][n] for n in ("push", "pull", "hybrid"))
    # Write amplification is counted from the writes: every follower got each celebrity post once.
    assert push["spike"]["write_amplification"] == CELEBRITY_FOLLOWERS
    assert push["spike"]["delivery_lag"]["count"] == 2 * CELEBRITY_FOLLOWERS
    assert push["spike"]["time_to_full_delivery_ms"] is not None
    assert hybrid["spike"]["write_amplification"] == pull["spike"]["write_amplification"] == 0
    # The followers' push timelines grew by the burst; pull keeps no timelines to weigh.
    assert push["spike"]["timelines_memory_growth_bytes"] > 0
    assert pull["spike"]["timelines_memory_growth_bytes"] is None
    assert pull["write_amplification"] == 0 and pull["timeline_entries_written"] == 0
    assert push["write_amplification"] > hybrid["write_amplification"]
    # Every strategy started from the same data: the run's posts are gone again.
    async with await Stores.connect(bench_namespace, create=False) as stores:
        assert await stores.pg.fetchval("SELECT count(*) FROM posts") == (USERS + 1) * POSTS_PER_USER
        assert await stores.pg.fetchval("SELECT count(*) FROM mentions") == 0  # undone with the run's posts


async def test_after_a_run_every_page_matches_postgres_again(bench_namespace: Settings, tmp_path: Path) -> None:
    # The run's posts are undone, and so are their ids in the timelines: every user's pages equal Postgres's again,
    # checked by the bench itself after its undo and here for every user. Capped at 4 entries, the spike's posts
    # evicted older ones: removing the run's ids alone would leave short pages (the issue's "49 posts where Postgres
    # gives 50").
    out = tmp_path / "undo.json"
    extra = ["--fanout", "sync", "--strategy", "push,pull,hybrid", "--timeline-cap", "4", "--page-size", "4"]
    result = fanout(bench_namespace, *small_run(out, *extra, "--read-ratio", "0.5"))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = load_result(out)
    assert doc["after_undo"]["verdict"] == "pass", doc["after_undo"]
    assert sorted(doc["after_undo"]["strategies"]) == ["hybrid", "push"]
    await assert_every_page_matches_postgres(bench_namespace.with_(celebrity_threshold=THRESHOLD, timeline_cap=4))


async def assert_every_page_matches_postgres(settings: Settings) -> None:
    async with await Stores.connect(settings, create=False) as stores:
        users = [r["id"] for r in await stores.pg.fetch("SELECT id FROM users ORDER BY id")]
        for name in ("push", "hybrid"):
            verdict = await check_oracle(make_strategy(name, stores), users, len(users), 4, seed=0)
            assert verdict["verdict"] == "pass", (name, verdict["mismatched_users"][:10])


async def test_async_fanout_is_drained_and_counted_by_the_workers(bench_namespace: Settings, tmp_path: Path) -> None:
    out = tmp_path / "async.json"
    result = fanout(bench_namespace, *small_run(out, "--fanout", "async", "--strategy", "push"))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = load_result(out)
    assert doc["run"]["parameters"]["fanout"] == "async"
    push = doc["strategies"]["push"]
    assert push["oracle"]["verdict"] == "pass"
    assert push["spike"]["write_amplification"] == CELEBRITY_FOLLOWERS
    assert push["spike"]["delivery_lag"]["count"] == 2 * CELEBRITY_FOLLOWERS
    assert push["delivery_lag"]["count"] == push["timeline_entries_written"] > 0


async def test_a_failure_after_the_load_keeps_the_figures_and_undoes_the_run(
    bench_namespace: Settings, tmp_path: Path
) -> None:
    # No worker delivers (--workers 0), so the queue cannot drain: the run fails after its load, yet the result keeps
    # the load's figures, the posts and their queued jobs are gone, and the timelines are as Postgres says.
    out = tmp_path / "failed.json"
    extra = ["--fanout", "async", "--strategy", "push", "--workers", "0", "--drain-timeout", "1"]
    result = fanout(bench_namespace, *small_run(out, *extra))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the run could not complete" in result.stdout and "fan-out queue still holds" in result.stdout
    doc = load_result(out)
    assert doc["complete"] is False and "fan-out queue still holds" in doc["incomplete_reason"]
    push = doc["strategies"]["push"]
    assert push["complete"] is False and "fan-out queue" in push["incomplete_reason"]
    assert push["read"]["count"] > 0 and push["publish"]["count"] > 0
    assert push["read"]["count"] + push["publish"]["count"] == push["load"]["operations"]
    assert doc["after_undo"]["verdict"] == "pass"
    async with await Stores.connect(bench_namespace, create=False) as stores:
        assert await stores.pg.fetchval("SELECT count(*) FROM posts") == (USERS + 1) * POSTS_PER_USER
        assert await stores.pg.fetchval("SELECT count(*) FROM mentions") == 0  # undone with the run's posts
        queue = FanoutQueue(stores.redis, stores.settings)
        assert await queue.outstanding() == 0


def _interrupted_bench(settings: Settings, args: list[str]) -> subprocess.Popen[str]:
    """A bench in its own process, as a terminal starts it (a real SIGINT to a real process is the point)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *namespace_args(settings), "bench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=terminal_signals,
    )


def _read_until(proc: subprocess.Popen[str], marker: str) -> list[str]:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return seen
    raise AssertionError(f"never saw {marker!r}:\n" + "".join(seen))


CTRL_C_PHASES = {
    # phase announced -> extra options, strategies whose (partial) figures the result keeps
    "warming up": (["--fanout", "sync", "--warmup", "60", "--scenario", "steady"], []),
    "load running": (["--fanout", "sync", "--duration", "120", "--scenario", "steady"], ["push"]),
    # No worker delivers, so the drain waits until the Ctrl-C.
    "draining the fan-out queue": (["--fanout", "async", "--workers", "0", "--drain-timeout", "100"], ["push"]),
}


@pytest.mark.parametrize("phase", list(CTRL_C_PHASES))
async def test_ctrl_c_in_any_phase_writes_what_was_measured_and_undoes_the_run(
    bench_namespace: Settings, tmp_path: Path, phase: str
) -> None:
    out = tmp_path / "interrupted.json"
    extra, kept = CTRL_C_PHASES[phase]
    proc = _interrupted_bench(bench_namespace, small_run(out, "--strategy", "push,pull", *extra))
    seen = _read_until(proc, phase)
    if phase == "load running":  # and has measured something: its first interval line
        seen += _read_until(proc, "offered")
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(seen) + rest
    assert "pull:" not in rest  # the next strategy never started
    doc = load_result(out)
    assert doc["complete"] is False and "interrupted" in doc["incomplete_reason"]
    assert list(doc["strategies"]) == kept
    for s in doc["strategies"].values():
        assert s["complete"] is False
        assert s["load"]["operations"] == s["read"]["count"] + s["publish"]["count"] > 0
    # The run is undone, and what push's timelines hold agrees with Postgres again.
    assert doc["after_undo"]["verdict"] == "pass"
    async with await Stores.connect(bench_namespace, create=False) as stores:
        assert await stores.pg.fetchval("SELECT count(*) FROM posts") == (USERS + 1) * POSTS_PER_USER
        assert await stores.pg.fetchval("SELECT count(*) FROM mentions") == 0  # undone with the run's posts
        assert await FanoutQueue(stores.redis, stores.settings).outstanding() == 0


def test_a_ctrl_c_raised_inside_a_loop_callback_is_not_reported_as_a_fault(caplog: pytest.LogCaptureFixture) -> None:
    # A second Ctrl-C raises KeyboardInterrupt wherever the loop is: inside a transport callback the loop reports it
    # ("Fatal error on transport", a traceback), which is noise on the way out. Other faults are still reported.
    async def report() -> None:
        loop = asyncio.get_running_loop()
        loop.call_exception_handler({"message": "Fatal error on transport", "exception": KeyboardInterrupt()})
        loop.call_exception_handler({"message": "something else broke", "exception": RuntimeError("boom")})

    run(report())
    assert "Fatal error on transport" not in caplog.text and "something else broke" in caplog.text


async def test_a_second_ctrl_c_stops_at_once(bench_namespace: Settings, tmp_path: Path) -> None:
    out = tmp_path / "twice.json"
    proc = _interrupted_bench(bench_namespace, small_run(out, *CTRL_C_PHASES["load running"][0]))
    seen = _read_until(proc, "load running")
    proc.send_signal(signal.SIGINT)
    seen += _read_until(proc, "restoring the timelines")
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, "".join(seen) + rest
    assert "Task exception was never retrieved" not in rest and "Traceback" not in rest


async def test_payloads_user_timelines_and_deep_reads_keep_the_oracle_and_the_outputs_agree(
    bench_namespace: Settings, tmp_path: Path
) -> None:
    out, logs, table = tmp_path / "payload.json", tmp_path / "hlog", tmp_path / "run.csv"
    extra = ["--fanout", "sync", "--strategy", "push,hybrid,adaptive", "--body-bytes", "256"]
    extra += ["--user-timeline-ratio", "0.3", "--active-window", "1", "--rate-source", "declared"]
    extra += ["--mentions", "3", "--page-depth", "1-3", "--hdr-log", str(logs), "--csv", str(table)]
    extra += ["--latency", "--interval", "0.5", "--author-rate-model", "independent", "--dormant", "0.3"]
    extra += ["--returning", "0.5"]
    result = fanout(bench_namespace, *small_run(out, *extra))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = load_result(out)  # validates the workload block against the schema
    parameters = doc["run"]["parameters"]
    assert parameters["body_bytes"] == "256" and parameters["user_timeline_ratio"] == 0.3
    knobs = (parameters["author_rate_model"], parameters["dormant"], parameters["returning"])
    assert knobs == ("independent", 0.3, 0.5)
    for name, s in doc["strategies"].items():
        assert s["oracle"]["verdict"] == "pass", name
        workload = s["workload"]
        posts = workload["operations"]["post"]
        assert workload["body_bytes"] == {"count": posts, "min": 256, "mean": 256.0, "max": 256}, name
        mentions = workload["mentions"]  # counted in the bodies sent: 0..3 each (a few posts: any of those)
        assert 1 <= mentions["posts_with"] <= posts and 1 <= mentions["max"] <= 3, name
        assert mentions["posts_with"] <= mentions["total"] <= 3 * mentions["posts_with"], name
        assert workload["operations"]["read"] == s["read"]["count"], name
        assert 0 <= workload["returning_first_reads"] <= workload["operations"]["read"], name
        # A returning user's first read is measured on its own too, and the policy block says what the window did.
        assert s.get("returning_read", {"count": 0})["count"] == workload["returning_first_reads"], name
        # (What the window skips depends on when users read against the clock: tests/test_policies.py counts it.)
        assert s["policy"]["active_window_s"] == 1, name
        policy = s["policy"]
        if name == "adaptive":
            assert policy["rate_source"] == "declared" and 0 <= policy["edges_pulled"] <= policy["edges"], name
            assert policy["edges_pushed_fraction"] == round(1 - policy["edges_pulled"] / policy["edges"], 6)
        assert workload["operations"]["user_timeline"] == s["user_timeline"]["count"] > 0, name
        assert 0.1 < workload["read_mix"]["user_timeline"] < 0.5, name
        assert set(workload["read_pages"]) <= {"1", "2", "3"} and len(workload["read_pages"]) > 1, name
        assert s["read"]["count"] + s["user_timeline"]["count"] + s["publish"]["count"] == s["load"]["operations"]
        # The interval logs add up to the result's counts, operation by operation.
        for operation in ("read", "user_timeline", "publish"):
            reader = HistogramLogReader(str(logs / f"{name}-{operation}.hlog"), new_histogram())
            total = sum(h.get_total_count() for h in iter(reader.get_next_interval_histogram, None))
            reader.close()
            assert total == s[operation]["count"], (name, operation)
    # Not a terminal: interval lines instead of a live display, then the spectrum and the CSV files.
    lines = result.stdout.splitlines()
    assert sum(1 for line in lines if re.match(r"push +\d+\.\ds offered +[\d,.]+/s achieved", line)) >= 2
    assert result.stdout.count("Detailed Percentile spectrum:") == 9  # read, user timeline, publish x 3
    assert table.exists() and (tmp_path / "run.series.csv").exists()
    async with await Stores.connect(bench_namespace, create=False) as stores:
        assert await stores.pg.fetchval("SELECT count(*) FROM posts") == (USERS + 1) * POSTS_PER_USER
        assert await stores.pg.fetchval("SELECT count(*) FROM mentions") == 0  # undone with the run's posts


async def test_two_driver_processes_send_the_schedule_once_and_merge_exactly(
    bench_namespace: Settings, tmp_path: Path
) -> None:
    """--driver-processes 2: the merged histograms count every operation sent (the schedule's and the spike's), the
    workload block is the one stream, and the posts and churn of both processes are delivered, checked and undone."""
    out = tmp_path / "two.json"
    args = small_run(out, "--strategy", "push,pull", "--driver-processes", "2", "--read-ratio", "0.8", "--churn", "0.1")
    result = fanout(bench_namespace, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = load_result(out)
    assert doc["run"]["parameters"]["driver_processes"] == 2
    for name in ("push", "pull"):
        block = doc["strategies"][name]
        sent = sum(block["workload"]["operations"].values()) + 2  # the steady stream and two spike posts
        counted = sum(block[kind]["count"] for kind in ("read", "publish", "follow", "unfollow") if kind in block)
        assert block["load"]["operations"] == counted == sent, name
        assert block["oracle"]["verdict"] == "pass", name
    assert doc["strategies"]["push"]["spike"]["write_amplification"] == CELEBRITY_FOLLOWERS
    assert doc["after_undo"]["verdict"] == "pass"
