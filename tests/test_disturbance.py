"""The disturbance guard: a run that another client loads is marked disturbed in its result and warned about."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from bench.disturbance import Thresholds, _Snapshot, assess, foreign_active, warnings
from bench.results import load_result
from targets.config import Settings
from tests.test_bench_cli import bench_namespace, namespace_args, small_run  # noqa: F401  (fixture)

HAMMER = 20_000


def test_foreign_commands_are_the_servers_minus_the_harnesss_own() -> None:
    before = _Snapshot(redis_commands=1_000, client_commands=100, pg_outside=0, pg_inside=0)
    quiet = _Snapshot(redis_commands=1_000 + 900 + 2_000, client_commands=100 + 900, pg_outside=10, pg_inside=5_000)
    block = assess(before, quiet, [0.5, 0.7], allowance=2_000, seconds=3.0, cpus=2)
    assert block["redis_foreign_commands"] == 0 and not block["disturbed"] and block["reasons"] == []
    busy = _Snapshot(quiet.redis_commands + HAMMER, quiet.client_commands, 50_000, 5_000)
    block = assess(before, busy, [0.5, 3.5, 0.7], allowance=2_000, seconds=3.0, cpus=2, thresholds=Thresholds())
    assert block["redis_foreign_commands"] == HAMMER
    assert block["disturbed"] and len(block["reasons"]) == 3  # load, Redis and Postgres
    doc = {"strategies": {"push": {"disturbance": block}, "pull": {"disturbance": {**block, "disturbed": False}}}}
    (line,) = warnings(doc)
    assert line.startswith("disturbed: round 1, push: load average up to 3.5 on 2 CPUs")
    assert f"{HAMMER:,} Redis commands from other clients" in line


def test_foreign_commands_count_only_when_another_client_was_seen_busy() -> None:
    # The harness's own scripts run commands inside Redis that its allowance only estimates: a shortfall of the
    # estimate is not another client, unless CLIENT LIST showed one at work.
    before = _Snapshot(redis_commands=1_000, client_commands=100, pg_outside=0, pg_inside=0)
    own, short = 50_000, 5_000  # the harness's commands, and what the allowance missed of its in-server ones
    after = _Snapshot(1_000 + own + 2_000 + short, client_commands=100 + own, pg_outside=0, pg_inside=0)
    alone = assess(before, after, [0.5], active_samples=[0, 0, 0, 0], allowance=2_000, seconds=2.0, cpus=2)
    assert alone["redis_foreign_commands"] == short and not alone["disturbed"]
    assert (alone["redis_foreign_active_samples"], alone["redis_samples"]) == (0, 4)
    seen = assess(before, after, [0.5], active_samples=[0, 2, 1, 0], allowance=2_000, seconds=2.0, cpus=2)
    assert seen["disturbed"] and seen["redis_foreign_active_samples"] == 2
    # Unseen (it came and went between two samples) but more than the harness's own work: not an estimate's error.
    burst = _Snapshot(after.redis_commands + 10 * HAMMER, after.client_commands, 0, 0)
    assert assess(before, burst, [0.5], active_samples=[0, 0], allowance=2_000, seconds=2.0, cpus=2)["disturbed"]
    clients = [
        {"name": "fanout-bench", "idle": "0", "cmd": "evalsha"},  # the harness's own
        {"name": "", "idle": "0", "cmd": "incr"},  # another program, busy
        {"name": "", "idle": "42", "cmd": "get"},  # another program, idle
        {"name": "", "idle": "0", "cmd": "NULL"},  # just connected, no command yet
        {"name": "", "idle": "0", "cmd": "replconf", "flags": "S"},  # a replica's link (a cluster's own)
    ]
    assert foreign_active(clients) == 1


def test_a_run_hammered_by_another_client_carries_the_disturbance(
    bench_namespace: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "hammered.json"
    args = small_run(out, "--fanout", "sync", "--strategy", "push,pull", "--scenario", "steady", "--duration", "4")
    client = redis.Redis.from_url(bench_namespace.redis_url)
    key = f"{bench_namespace.prefix}hammer"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *namespace_args(bench_namespace), "bench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # hammer while the first strategy's load runs
        seen.append(line)
        if "load running" in line:
            break
    for _ in range(HAMMER // 500):
        pipe = client.pipeline(transaction=False)
        for _ in range(500):
            pipe.incr(key)
        pipe.execute()
    assert int(client.get(key) or 0) == HAMMER
    client.delete(key)
    client.close()
    rest, _ = proc.communicate(timeout=240)
    output = "".join(seen) + rest
    assert proc.returncode == 0, output
    push = load_result(out)["strategies"]["push"]
    assert push["disturbance"]["disturbed"]
    # Foreign commands are the server's total minus the harness's own and an estimate of its fan-out's commands
    # inside Redis (Redis 7.0 counts none per client), so they are exact to within that allowance.
    block = push["disturbance"]
    assert HAMMER - block["redis_allowance"] <= block["redis_foreign_commands"]
    assert "WARNING disturbed: round 1, push:" in output
    assert "Redis commands from other clients" in output
