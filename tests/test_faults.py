"""Faults in the middle of a benchmark (``fanout bench --fault``), on private servers this module starts itself.

A Redis crash mid-run: the run completes, errors are counted, the worker reconnects, the lost timelines are rebuilt
from Postgres, and after the drain every post of the run is in every follower's timeline (or its author's, for a
hybrid celebrity); a worker SIGKILLed mid-run loses nothing either. A Postgres crash: the same, and the per-operation
Postgres figures are marked invalid instead of printed as 0 (crash recovery reset the statistics). The shared servers
are never touched: the servers crashed here are ones `fanout up` started for this module under a temporary folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.faults import check_faults, parse_fault
from bench.metrics import ServerCounters
from bench.recovery import posts_lost
from bench.service_process import ServiceProcess
from devservers.support import free_port
from graphs.star import load_star
from targets.config import Settings
from targets.stores.connections import Stores
from targets.stores.counters import StoreCounters
from targets.stores.materialise import rebuild_timelines
from targets.stores.postgres import Authors
from targets.strategies.adaptive import AdaptiveStrategy
from targets.strategies.push import PushStrategy
from tests.conftest import SESSION_TAG
from tests.test_fanout import holders

pytestmark = pytest.mark.slow

#: A small graph: the generated celebrity has about half the users as followers, far above the hybrid threshold.
RUN = ["--users", "400", "--posts-per-user", "3", "--threshold", "60", "--rate", "100", "--duration", "6"]
RUN += ["--warmup", "0.5", "--oracle-users", "60", "--fanout", "async"]


def fanout(env: dict[str, str], cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def private() -> Iterator[tuple[dict[str, str], Path]]:
    """Private Redis and PostgreSQL started by `fanout up` in a folder of their own; stopped and removed after.

    The folder is world-enterable: as root, PostgreSQL runs as another account (pytest's tmp_path is 0700 then).
    """
    with tempfile.TemporaryDirectory(prefix="fanout-faults-") as name:
        where = Path(name)
        where.chmod(0o755)
        yield from _private(where)


def _private(where: Path) -> Iterator[tuple[dict[str, str], Path]]:
    env = {
        **os.environ,
        "FANOUT_REDIS_URL": f"redis://127.0.0.1:{free_port('127.0.0.1')}/0",
        "FANOUT_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port('127.0.0.1')}/postgres",
        "FANOUT_PREFIX": f"fanout_{SESSION_TAG}_faults:",
        "FANOUT_SCHEMA": f"fanout_{SESSION_TAG}_faults",
        "COLUMNS": "100",
    }
    up = fanout(env, where, "up", "--timeout", "60")
    assert up.returncode == 0, up.stderr
    try:
        yield env, where
    finally:
        fanout(env, where, "down", "--purge")


def bench(private: tuple[dict[str, str], Path], out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    env, where = private
    done = fanout(env, where, "bench", *RUN, "--out", str(out), *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(out.read_text())


def test_a_redis_crash_and_a_worker_kill_mid_run_lose_no_post(
    private: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    done, doc = bench(
        private,
        tmp_path / "r.json",
        "--strategy",
        "push,hybrid",
        "--fault",
        "redis-restart@1.5s",
        "--fault",
        "kill-worker@4s",
    )
    assert doc["complete"] and doc["run"]["parameters"]["faults"] == ["redis-restart@1.5s", "kill-worker@4s"]
    assert "reconnecting" in done.stdout + done.stderr  # the bench's worker outlived the crash
    for name in ("push", "hybrid"):
        figures = doc["strategies"][name]
        assert figures["complete"] and figures["read"]["count"] > 0 and figures["publish"]["count"] > 0
        crash, kill = figures["faults"]
        assert crash["fault"] == "redis-restart@1.5s" and crash["error_count"] > 0
        assert crash["recovered_s"] is not None and crash["recovered_s"] > 0
        assert kill["fault"] == "kill-worker@4s" and "killed fan-out worker" in kill["action"]
        assert sum(figures["errors"].values()) >= crash["error_count"]
        recovery = figures["recovery"]
        assert len(recovery["rebuilds"]) >= 1 and recovery["rebuilds"][0]["timeline_entries"] > 0
        lost = recovery["posts_lost"]
        assert lost["posts_checked"] > 0 and lost["timeline_entries_checked"] > 0
        assert lost["posts_lost"] == 0 and lost["timeline_entries_missing"] == 0
        assert figures["oracle"]["verdict"] == "pass"
        # Redis counted from zero again after the crash: its figures are withheld, named, never 0.
        counters = figures["store_counters"]
        assert "redis" in counters["invalid"] and counters["redis_commands_per_op"] is None
        assert counters["pg_rows_read_per_op"] is not None
    assert doc["after_undo"]["verdict"] == "pass"
    assert "invalid" in done.stdout and "posts lost" in done.stdout


def test_a_postgres_crash_mid_run_marks_its_counters_invalid_and_loses_no_post(
    private: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    faults = ["--fault", "pg-restart@2s", "--fault", "redis-pause=300ms@4.5s"]
    done, doc = bench(private, tmp_path / "p.json", "--strategy", "push,pull", *faults)
    assert doc["complete"]
    for name in ("push", "pull"):
        figures = doc["strategies"][name]
        crash, pause = figures["faults"]
        assert pause["fault"] == "redis-pause=300ms@4.5s" and "paused the private redis server" in pause["action"]
        assert crash["error_count"] > 0 and crash["recovered_s"] is not None
        counters = figures["store_counters"]
        assert "postgres" in counters["invalid"]
        assert counters["pg_rows_read_per_op"] is None and counters["pg_rows_written_per_op"] is None
        assert counters["redis_commands_per_op"] is not None
        assert figures["recovery"]["posts_lost"]["posts_lost"] == 0
        assert figures["oracle"]["verdict"] == "pass"
    assert doc["strategies"]["push"]["recovery"]["posts_lost"]["timeline_entries_checked"] > 0
    assert doc["after_undo"]["verdict"] == "pass"
    assert "PG rows read/op" in done.stdout and "invalid" in done.stdout


def test_a_store_fault_refuses_a_server_fanout_did_not_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FANOUT_PREFIX", "FANOUT_SCHEMA")}
    env.update(FANOUT_PREFIX=f"fanout_{SESSION_TAG}_nofault:", FANOUT_SCHEMA=f"fanout_{SESSION_TAG}_nofault")
    done = fanout(env, tmp_path, "bench", "--duration", "2", "--fault", "redis-restart@1s")
    assert done.returncode == 2
    assert "crashes only a server `fanout up` started" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not list(tmp_path.glob("results/*"))


def test_a_fault_on_an_external_server_runs_the_given_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FANOUT_PREFIX", "FANOUT_SCHEMA")}
    env.update(FANOUT_PREFIX=f"fanout_{SESSION_TAG}_exec:", FANOUT_SCHEMA=f"fanout_{SESSION_TAG}_exec")
    out = tmp_path / "e.json"
    args = ["--users", "100", "--posts-per-user", "2", "--strategy", "pull", "--duration", "3", "--rate", "50"]
    args += ["--fault", "redis-restart@every-1s", "--fault-exec", "redis-restart=touch restarted", "--out", str(out)]
    try:
        done = fanout(env, tmp_path, "bench", *args)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert (tmp_path / "restarted").exists()
        doc = json.loads(out.read_text())
        assert doc["run"]["parameters"]["fault_exec"] == ["redis-restart"]
        # The command may hold a secret of its own: the result keeps which kind ran one, never the command.
        assert "touch" not in json.dumps(doc) and "--fault-exec ***" in doc["run"]["command"]
        faults = doc["strategies"]["pull"]["faults"]
        assert [f["fault"] for f in faults] == ["redis-restart@1s", "redis-restart@2s"]
        assert all(f["action"] == "ran the --fault-exec command for redis-restart (exit 0)" for f in faults)
    finally:
        fanout(env, tmp_path, "reset", "--yes")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fault", "flood@1s"], "is not KIND@SECONDS"),
        (["--fault", "redis-restart@9s", "--duration", "5"], "is not inside the 5s load"),
        (["--fault", "kill-worker@1s", "--fanout", "sync", "--duration", "2"], "needs the benchmark's own fan-out"),
        (["--fault-exec", "flood=true"], "is not KIND=COMMAND"),
    ],
)
def test_faults_that_cannot_happen_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = fanout(dict(os.environ), tmp_path, "bench", *args)
    assert done.returncode == 2 and message in done.stderr


def test_a_fault_is_written_kind_at_seconds() -> None:
    assert parse_fault("redis-restart@15s").at_s == 15.0
    assert parse_fault("pg-restart@2.5").at_s == 2.5
    assert parse_fault("kill-worker@1500ms").at_s == 1.5
    assert parse_fault("redis-pause=700ms@10s").length_s == 0.7
    with pytest.raises(ValueError, match="redis-pause=DURATION@TIME"):
        parse_fault("redis-pause@10s")
    every = parse_fault("redis-pause=700ms@every-2.5s")
    assert every.times(8) == [2.5, 5.0, 7.5] and every.label == "redis-pause=700ms@every-2.5s"
    with pytest.raises(ValueError, match="longer than its duration"):
        parse_fault("redis-pause=3s@every-2s")
    with pytest.raises(ValueError, match="KIND one of"):
        parse_fault("redis-restart")
    with pytest.raises(ValueError, match="not inside"):
        check_faults([parse_fault("kill-worker@0s")], 10)


def test_counters_across_a_restart_are_withheld_not_zero() -> None:
    before = ServerCounters({"get": 10}, 5, 1, StoreCounters(), redis_cpu_s=1.0, redis_run_id="a", pg_started="t0")
    same = ServerCounters({"get": 30}, 9, 2, StoreCounters(), redis_cpu_s=1.5, redis_run_id="a", pg_started="t0")
    assert "invalid" not in same.since(before, 10) and same.since(before, 10)["redis_commands"] == 20
    restarted = ServerCounters({"get": 3}, 9, 2, StoreCounters(), redis_cpu_s=0.1, redis_run_id="b", pg_started="t0")
    block = restarted.since(before, 10)
    assert set(block["invalid"]) == {"redis"}
    assert block["redis_commands"] is None and block["redis_cpu_us_per_op"] is None
    assert block["pg_rows_read_per_op"] == 0.4


def _until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll ``check`` until it holds (waiting for a condition, not for a guessed time); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g}s"
        time.sleep(0.1)


def test_a_service_outlives_a_redis_crash_says_so_on_healthz_and_rebuilds(
    private: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, where = private
    settings = Settings.from_env(
        redis_url=env["FANOUT_REDIS_URL"],
        database_url=env["FANOUT_DATABASE_URL"],
        prefix=f"fanout_{SESSION_TAG}_svcfault:",
        schema=f"fanout_{SESSION_TAG}_svcfault",
    ).with_(fanout_mode="async")
    followers = range(1, 201)

    async def load() -> None:
        async with await Stores.connect(settings) as stores:
            await load_star(stores.pg, settings.schema, 0, followers)
            await rebuild_timelines(stores, {"push": Authors.ALL})

    async def holding(post_id: int) -> int:
        async with await Stores.connect(settings, create=False) as stores:
            return await holders(stores, "push", followers, post_id)

    asyncio.run(load())
    with ServiceProcess(settings, "push", log=tmp_path / "serve.log") as service:
        health = requests.get(service.url + "/healthz", timeout=5).json()
        assert health["status"] == "ok" and health["worker"] == {"state": "running", "reconnects": 0}
        before = requests.post(service.url + "/users/0/posts", json={"body": "before"}, timeout=5).json()["id"]
        _until(lambda: asyncio.run(holding(before)) == len(followers), "delivery before the crash")
        crash = f"from devservers.manager import crash_restart; crash_restart('redis', {env['FANOUT_REDIS_URL']!r})"
        subprocess.run([sys.executable, "-c", crash], cwd=where, check=True, timeout=120)

        def healthy_again() -> bool:
            reply = requests.get(service.url + "/healthz", timeout=5)
            return reply.status_code == 200 and reply.json()["worker"]["reconnects"] >= 1

        # The worker noticed, waited Redis out and runs again; the service rebuilt the timelines Redis lost.
        _until(healthy_again, "the worker reconnecting")
        _until(lambda: asyncio.run(holding(before)) == len(followers), "the rebuild of the lost timelines")
        after = requests.post(service.url + "/users/0/posts", json={"body": "after"}, timeout=5)
        assert after.status_code == 201, after.text
        _until(lambda: asyncio.run(holding(after.json()["id"])) == len(followers), "delivery after the crash")
    assert "rebuilt" in (tmp_path / "serve.log").read_text()

    async def drop() -> None:
        async with await Stores.connect(settings, create=False) as stores:
            await stores.drop()

    asyncio.run(drop())


async def test_the_posts_lost_check_finds_a_missing_entry_and_forgives_the_caps_trim(stores: Stores) -> None:
    followers = range(1, 21)
    await load_star(stores.pg, stores.settings.schema, 0, followers)
    sync = stores.settings.with_(fanout_mode="sync", timeline_cap=3)
    push = PushStrategy(Stores(sync, stores.redis, stores.pg))
    mark = await stores.social.newest_post_id()
    posts = [(await push.publish(0, f"post {i}")).post_id for i in range(5)]  # the cap keeps the newest 3
    here = Stores(sync, stores.redis, stores.pg)
    whole = await posts_lost(here, "push", Authors.ALL, mark, posts)
    assert whole["posts_checked"] == 5 and whole["timeline_entries_checked"] == 5 * len(followers)
    assert whole["posts_lost"] == 0 and whole["timeline_entries_missing"] == 0  # 2 trimmed per timeline: forgiven
    key = push.timelines.key(7)
    await stores.redis.zrem(key, posts[-1])  # the newest post is gone from follower 7's timeline
    gone = await posts_lost(here, "push", Authors.ALL, mark, posts)
    assert (gone["posts_lost"], gone["timeline_entries_missing"]) == (1, 1)
    await stores.pg.execute("DELETE FROM posts WHERE id = $1", posts[0])  # acknowledged, but not in Postgres
    assert (await posts_lost(here, None, None, mark, posts))["acknowledged_not_in_postgres"] == 1


async def test_the_posts_lost_check_looks_for_a_pulled_edges_post_in_the_authors_timeline(stores: Stores) -> None:
    """Adaptive leaves a pulled followee's posts out of the home timeline: the check then wants them in the author's
    own timeline, and finds them missing there."""
    followers = range(1, 11)
    await load_star(stores.pg, stores.settings.schema, 0, followers)
    here = Stores(stores.settings.with_(fanout_mode="sync"), stores.redis, stores.pg)
    adaptive = AdaptiveStrategy(here)
    mark = await stores.social.newest_post_id()
    posts = [(await adaptive.publish(0, f"post {i}")).post_id for i in range(3)]
    await adaptive.authors.replace({0: posts[::-1]})
    await adaptive.celebrities.replace({7: [0]})  # follower 7 pulls author 0 now: its home timeline drops the posts
    await stores.redis.zrem(adaptive.timelines.key(7), *posts)
    whole = await posts_lost(here, "adaptive", Authors.EXCEPT, mark, posts)
    assert (whole["posts_lost"], whole["timeline_entries_checked"]) == (0, 3 * (len(followers) - 1) + 3)
    await stores.redis.zrem(adaptive.authors.key(0), posts[-1])
    assert (await posts_lost(here, "adaptive", Authors.EXCEPT, mark, posts))["posts_lost"] == 1
