"""PostgreSQL streaming replicas (``fanout up --pg-replicas``, ``--read-from replica``) on private servers.

This module starts its own Redis, PostgreSQL and one streaming standby with `fanout up` under a temporary folder;
the shared servers are never touched. Reads go to the replica (a replica whose replay is paused does not see a new
post), the LSN wait makes its pages the primary's, a benchmark reports the replica lag, and configurations that
cannot work are one line, exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from devservers.support import free_port
from graphs.star import load_star
from targets.config import Settings
from targets.errors import FanoutError
from targets.stores.connections import Stores
from targets.strategies.pull import PullStrategy
from tests.conftest import SESSION_TAG

pytestmark = pytest.mark.slow

Private = tuple[dict[str, str], Path]


def fanout(env: dict[str, str], cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def private() -> Iterator[Private]:
    """Private Redis, PostgreSQL and one streaming replica, started by `fanout up --pg-replicas 1`; removed after.

    The folder is world-enterable: as root, PostgreSQL runs as another account.
    """
    with tempfile.TemporaryDirectory(prefix="fanout-replicas-") as name:
        where = Path(name)
        where.chmod(0o755)
        env = {
            **os.environ,
            "FANOUT_REDIS_URL": f"redis://127.0.0.1:{free_port('127.0.0.1')}/0",
            "FANOUT_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port('127.0.0.1')}/postgres",
            "FANOUT_REDIS_PREFIX": f"fanout_{SESSION_TAG}_rep:",
            "FANOUT_SCHEMA": f"fanout_{SESSION_TAG}_rep",
            "COLUMNS": "100",
        }
        up = fanout(env, where, "up", "--pg-replicas", "1", "--timeout", "60")
        assert up.returncode == 0, up.stderr
        assert "PostgreSQL replica 1: started a streaming standby" in up.stdout
        try:
            yield env, where
        finally:
            down = fanout(env, where, "down", "--purge")
            assert "replica 1: stopped" in down.stdout, down.stdout + down.stderr


def replica_url(where: Path, env: dict[str, str]) -> str:
    state = json.loads((where / ".fanout" / "state.json").read_text())
    return state["postgres-replica-1"]["url"]


async def test_reads_go_to_the_replica_and_equal_the_primary_after_the_lsn_wait(private: Private) -> None:
    env, where = private
    settings = Settings.from_env(
        redis_url=env["FANOUT_REDIS_URL"],
        database_url=env["FANOUT_DATABASE_URL"],
        replica_urls=replica_url(where, env),
        read_from="replica",
        prefix=f"fanout_{SESSION_TAG}_rep1:",
        schema=f"fanout_{SESSION_TAG}_rep1",
    )
    async with await Stores.connect(settings) as stores:
        try:
            await load_star(stores.pg, settings.schema, 0, range(1, 31), indexes=True)
            for i in range(5):
                await stores.social.create_post(0, f"post {i}")
            from_replica, from_primary = PullStrategy(stores), PullStrategy(stores.view(read_from="primary"))
            await stores.wait_replicas()
            for user in (1, 7, 30):
                want = [p.id for p in await from_primary.home_timeline(user, 10)]
                assert len(want) == 5
                assert [p.id for p in await from_replica.home_timeline(user, 10)] == want

            # With the replica's replay paused, a new post is on the primary only: the replica's page lacks it,
            # which shows the read went to the replica; the LSN wait cannot complete until replay resumes.
            replica = await asyncpg.connect(settings.replicas[0])
            try:
                await replica.execute("SELECT pg_wal_replay_pause()")
                newest = (await stores.social.create_post(0, "while paused")).post.id
                assert newest in [p.id for p in await from_primary.home_timeline(1, 10)]
                assert newest not in [p.id for p in await from_replica.home_timeline(1, 10)]
                with pytest.raises(FanoutError, match="has not replayed"):
                    await stores.wait_replicas(within_s=0.3)
            finally:
                await replica.execute("SELECT pg_wal_replay_resume()")
                await replica.close()
            await stores.wait_replicas()
            assert (await from_replica.home_timeline(1, 10))[0].id == newest
        finally:
            await stores.drop()


def test_a_benchmark_reading_from_the_replica_reports_its_lag(private: Private, tmp_path: Path) -> None:
    env, where = private
    out = tmp_path / "replica.json"
    run = ["bench", "--users", "300", "--posts-per-user", "3", "--strategy", "pull,hybrid", "--threshold", "60"]
    run += ["--rate", "100", "--duration", "3", "--warmup", "0.5", "--read-ratio", "0.8", "--oracle-users", "60"]
    done = fanout(env, where, *run, "--read-from", "replica", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["run"]["parameters"]["read_from"] == "replica"
    assert doc["run"]["parameters"]["pg_replicas"] == 1
    for name in ("pull", "hybrid"):
        block = doc["strategies"][name]
        assert block["oracle"]["verdict"] == "pass", name
        lag = block["replica_lag"]
        assert lag["replicas"] == 1 and lag["samples"] > 0, lag
        assert lag["samples"] == lag["idle_samples"] or lag["p99_ms"] is not None, lag


def test_a_rate_sweep_compares_reads_from_the_primary_and_the_replica_in_one_run(
    private: Private, tmp_path: Path
) -> None:
    """`fanout sweep rate --read-sources primary,replica`: pull reading from each source at each rate, as two curves
    of one result. The primary's own counters show where the reads went (a load of reads only): pull's page queries
    read rows there when they go to the primary, and none when they go to the replica."""
    env, where = private
    out = tmp_path / "sources.json"
    run = ["sweep", "rate", "--users", "300", "--posts-per-user", "3", "--strategy", "pull", "--rates", "60,120"]
    run += ["--duration", "2", "--warmup", "0.5", "--read-ratio", "1", "--oracle-users", "30"]
    done = fanout(env, where, *run, "--read-sources", "primary,replica", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert set(doc["sweep"]["curves"]) == {"pull-primary", "pull-replica"}
    assert [len(c) for c in doc["sweep"]["curves"].values()] == [2, 2]
    rows = {name: doc["strategies"][name]["store_counters"]["pg_rows_read_per_op"] for name in doc["strategies"]}
    for rate in ("60", "120"):
        primary, replica = rows[f"pull-primary-r{rate}"], rows[f"pull-replica-r{rate}"]
        assert primary > 5 and replica < 0.5, rows
    assert all(doc["strategies"][n]["oracle"]["verdict"] == "pass" for n in doc["strategies"])
    assert "replica_lag" in doc["strategies"]["pull-replica-r60"]


def test_replica_configurations_that_cannot_work_are_one_line(private: Private, tmp_path: Path) -> None:
    env, where = private
    # Replicas of a PostgreSQL fanout did not start (the shared one): refused, nothing started.
    shared = {**env, "FANOUT_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/postgres"}
    done = fanout(shared, tmp_path, "up", "--pg-replicas", "1")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--pg-replicas needs a PostgreSQL that `fanout up` started" in done.stderr
    assert not (tmp_path / ".fanout" / "postgres-replica-1").exists()
    # Reading from replicas when there are none, and a "replica" that is the primary itself.
    bench = ["bench", "--duration", "1", "--read-from", "replica", "--out", str(tmp_path / "x.json")]
    done = fanout(env, tmp_path, *bench)
    assert done.returncode == 2 and "--read-from replica needs PostgreSQL streaming replicas" in done.stderr
    done = fanout(env, where, "--replica-urls", env["FANOUT_DATABASE_URL"], *bench)
    assert done.returncode == 2 and "is not a streaming replica" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "x.json").exists()
