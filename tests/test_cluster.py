"""A private Redis Cluster (``fanout up --redis-cluster 3 --replicas 1``): formed, shown, used, reset, refused.

This module starts its own cluster of six real redis-server processes on loopback under a temporary folder and stops
it afterwards; the shared servers are never touched (the shared PostgreSQL holds only this module's schema).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import hypothesis
import pytest
import redis
from hypothesis import HealthCheck, given

from bench.scenarios.oracle import Ensemble
from devservers.redis_cluster import NODE_TIMEOUT_MS, SLOTS, slot_ranges, start_cluster, stop_cluster
from devservers.redis_server import find_redis_server
from targets.config import Settings
from targets.stores.connections import Stores
from targets.stores.server_info import info_by_node, summed_info
from targets.stores.shards import SHARDS_PER_PRIMARY, shard_tags
from targets.stores.timelines import Timelines
from tests.conftest import SESSION_TAG
from tests.test_oracle import run_scenario, view_for
from tests.test_oracle import scenarios as oracle_scenarios

pytestmark = pytest.mark.slow

Private = tuple[dict[str, str], Path]
PRIMARIES = 3


def fanout(env: dict[str, str], cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def private() -> Iterator[Private]:
    """A cluster of 3 primaries with a replica each, started by `fanout up`; stopped and removed after."""
    with tempfile.TemporaryDirectory(prefix="fanout-cluster-") as name:
        where = Path(name)
        env = {k: v for k, v in os.environ.items() if k not in ("FANOUT_REDIS_URL", "FANOUT_REDIS_CLUSTER")}
        env.update(
            FANOUT_REDIS_PREFIX=f"fanout_{SESSION_TAG}_cl:",
            FANOUT_SCHEMA=f"fanout_{SESSION_TAG}_cl",
            FANOUT_DATABASE_URL=os.environ.get("FANOUT_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
            COLUMNS="100",
        )
        up = fanout(env, where, "up", "--redis-cluster", str(PRIMARIES), "--replicas", "1", "--timeout", "60")
        assert up.returncode == 0, up.stderr
        assert "started a private Redis Cluster (3 primaries x 1 replica(s))" in up.stdout
        try:
            yield env, where
        finally:
            asyncio.run(_drop_schema(env))  # what a refused `fanout graph load` left: the namespace's empty schema
            down = fanout(env, where, "down", "--purge")
            assert "stopped fanout's private Redis Cluster" in down.stdout, down.stdout


def cluster_state(where: Path) -> dict:
    return json.loads((where / ".fanout" / "state.json").read_text())["redis-cluster"]


def node_client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True)


def test_status_shows_every_node_with_its_role_and_slots(private: Private) -> None:
    env, where = private
    done = fanout(env, where, "status")
    assert done.returncode == 0, done.stderr
    ports = [n["port"] for n in cluster_state(where)["cluster"]["nodes"]]
    lines = {p: next(line for line in done.stdout.splitlines() if f"127.0.0.1:{p} " in line) for p in ports}
    assert sum("primary" in line for line in lines.values()) == PRIMARIES
    assert sum("replica" in line for line in lines.values()) == PRIMARIES
    slots = [int(line.split("│")[3].strip().replace(",", "")) for line in lines.values()]
    assert sum(slots) == SLOTS
    assert re.search(r"started by fanout\s*│\s*yes \(", done.stdout), done.stdout


async def test_a_namespace_is_reset_on_every_primary_and_nothing_else(private: Private) -> None:
    """Keys of the namespace on every primary go; a key planted outside it on every primary stays."""
    env, where = private
    settings = Settings.from_env(env, redis_url=cluster_state(where)["url"], redis_cluster=PRIMARIES)
    primaries = [n for n in cluster_state(where)["cluster"]["nodes"] if n["role"] == "primary"]
    ranges = slot_ranges(PRIMARIES)
    async with await Stores.connect(settings) as stores:
        try:
            names = [stores.key("probe", i) for i in range(300)]
            for name in names:
                await stores.redis.set(name, 1)
            # A foreign key on every primary: its slot falls in that primary's range.
            planted: list[str] = []
            for low, high in ranges:
                key = next(k for k in (f"outside_{SESSION_TAG}:{i}" for i in range(10_000)) if low <= _slot(k) <= high)
                await stores.redis.set(key, "keep")
                planted.append(key)
            held = {n["port"]: node_client(n["port"]).dbsize() for n in primaries}
            assert all(count > 0 for count in held.values()), held  # the namespace spans every primary
            assert len(await info_by_node(stores.redis, "memory")) == PRIMARIES

            assert await stores.delete_keys() == len(names)
            for node in primaries:
                client = node_client(node["port"])
                assert list(client.scan_iter(match=settings.prefix + "*")) == []
            assert [await stores.redis.get(k) for k in planted] == [b"keep"] * PRIMARIES
            await stores.redis.unlink(*planted)
        finally:
            await stores.drop()


def _slot(key: str) -> int:
    from redis.crc import key_slot

    return key_slot(key.encode())


async def test_a_url_that_is_no_cluster_and_a_cluster_missing_slots_are_one_line(
    private: Private, tmp_path: Path
) -> None:
    env, where = private
    single = {**env, "FANOUT_REDIS_URL": os.environ.get("FANOUT_REDIS_URL", "redis://127.0.0.1:6379/0")}
    done = fanout({**single, "FANOUT_REDIS_CLUSTER": "1"}, tmp_path, "reset", "--yes")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "is not a Redis Cluster" in done.stderr

    # Slots are taken away on a throwaway one-node cluster: a replica of the shared one would remember the gap and
    # promote itself without those slots at a later failover.
    binaries = find_redis_server("auto")
    lone = await asyncio.to_thread(start_cluster, 1, 0, binaries, 60, tmp_path / "lone")
    try:
        node_client(lone["port"]).execute_command("CLUSTER", "DELSLOTSRANGE", 0, 99)
        done = fanout({**env, "FANOUT_REDIS_URL": lone["url"], "FANOUT_REDIS_CLUSTER": "1"}, tmp_path, "reset", "--yes")
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "hash slot" in done.stderr, done.stderr
    finally:
        await asyncio.to_thread(stop_cluster, lone, 60)
    # A single-server fault on a cluster is refused in one line, before connecting: no schema is created.
    done = fanout(env, where, "bench", "--users", "100", "--strategy", "pull", "--fault", "redis-restart@1s")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "is a Redis Cluster: inject --fault redis-primary-kill" in done.stderr
    assert not await _schema_exists(env)


async def _drop_schema(env: dict[str, str]) -> None:
    conn = await asyncpg.connect(env["FANOUT_DATABASE_URL"])
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {env['FANOUT_SCHEMA']} CASCADE")
    finally:
        await conn.close()


async def _schema_exists(env: dict[str, str]) -> bool:
    conn = await asyncpg.connect(env["FANOUT_DATABASE_URL"])
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", env["FANOUT_SCHEMA"]))
    finally:
        await conn.close()


async def test_a_fan_out_batch_is_one_declared_keys_call_per_shard_and_exactly_once(private: Private) -> None:
    """Push's timelines on a cluster, grouped in shards: a batch of followers costs one EVALSHA per shard (all keys
    declared, one slot), the shards are dealt evenly over the primaries, a repeated delivery adds nothing, and the
    cap holds."""
    env, where = private
    settings = Settings.from_env(env, redis_url=cluster_state(where)["url"], redis_cluster=PRIMARIES)
    async with await Stores.connect(settings) as stores:
        try:
            tags = shard_tags(stores.redis)
            assert len(tags) == SHARDS_PER_PRIMARY * PRIMARIES
            owners = Counter(stores.redis.nodes_manager.get_node_from_slot(_slot(t)).name for t in tags)
            assert sorted(owners.values()) == [SHARDS_PER_PRIMARY] * PRIMARIES
            timelines = Timelines(stores.redis, settings.prefix, "push", 3, tags=tags)
            followers = list(range(1, 2001))
            assert await timelines.add_to_many(followers, 9) == len(followers)  # loads the script on every node
            calls_before = await _evalsha_calls(stores)
            assert await timelines.add_to_many(followers, 10) == len(followers)
            assert await _evalsha_calls(stores) - calls_before == len(tags)
            assert await timelines.add_to_many(followers, 10) == 0  # re-delivered: nothing new
            for post in (11, 12, 13, 14):
                await timelines.add_to_many(followers, post)
            assert await holding(timelines, followers, 11) == 0  # trimmed below the cap of 3
            assert await holding(timelines, followers, 14) == len(followers)
            assert await timelines.page(1999, 10, None) == [14, 13, 12]
            # A primary without the script (as a promoted replica is): its shards' calls are sent again, only those,
            # so every entry is written and counted once.
            node_client(int(tags_node(stores, tags[0]).split(":")[1])).script_flush()
            assert await timelines.add_to_many(followers, 15) == len(followers)
        finally:
            await stores.drop()


async def holding(timelines: Timelines, user_ids: list[int], post_id: int) -> int:
    """How many of the users' timelines hold the post (ZSCORE per user, one pipeline)."""
    pipe = timelines.redis.pipeline(transaction=False)
    for u in user_ids:
        pipe.zscore(timelines.key(u), post_id)
    return sum(score is not None for score in await pipe.execute())


def tags_node(stores: Stores, tag: str) -> str:
    """``host:port`` of the primary serving a shard tag's slot."""
    return stores.redis.nodes_manager.get_node_from_slot(_slot(tag)).name


async def _evalsha_calls(stores: Stores) -> int:
    stats = await summed_info(stores.redis, "commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


CLUSTER_EXAMPLES = int(os.environ.get("FANOUT_CLUSTER_ORACLE_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def cluster_runner(private: Private) -> Iterator[tuple[asyncio.Runner, Stores]]:
    env, where = private
    settings = Settings.from_env(
        env, redis_url=cluster_state(where)["url"], redis_cluster=PRIMARIES, schema=f"fanout_{SESSION_TAG}_clo"
    )
    with asyncio.Runner() as r:
        stores = r.run(Stores.connect(settings))
        try:
            yield r, stores
        finally:
            r.run(stores.drop())
            r.run(stores.close())


_cluster_examples = iter(range(10**9))


@hypothesis.settings(max_examples=CLUSTER_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=oracle_scenarios())
def test_every_strategy_returns_the_model_pages_on_the_cluster(
    cluster_runner: tuple[asyncio.Runner, Stores], scenario: dict
) -> None:
    """The correctness oracle (tests/test_oracle.py's scenarios and model) on the cluster, every strategy with sync
    fan-out: timelines in shards spread over the primaries, hybrid's and adaptive's pages merged across shards,
    accounts crossing the threshold, edges moving between push and pull, the active window; page for page, after
    every operation."""
    r, stores = cluster_runner
    r.run(play_on(stores, scenario, next(_cluster_examples)))


async def play_on(stores: Stores, scenario: dict, example: int) -> None:
    await stores.pg.execute("TRUNCATE users, follows, posts, mentions")
    view = view_for(stores, scenario, example, fanout_mode="sync")
    await run_scenario(Ensemble(view), scenario)


def test_the_strategy_tests_pass_on_the_cluster(private: Private) -> None:
    """tests/test_strategies.py and the asynchronous fan-out's oracle (tests/test_fanout_oracle.py: publish, then
    workers deliver, then pages compared), run against this cluster, nothing skipped."""
    env, where = private
    cluster_env = {**env, "FANOUT_REDIS_URL": cluster_state(where)["url"], "FANOUT_REDIS_CLUSTER": str(PRIMARIES)}
    tests = ["tests/test_strategies.py", "tests/test_fanout_oracle.py"]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(command, env=cluster_env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and not any(w in summary for w in ("failed", "error", "skipped")), summary


def test_a_benchmark_runs_through_a_primary_kill_and_loses_no_post(private: Private, tmp_path: Path) -> None:
    """`fanout bench` of push (async fan-out: a worker process delivers from the queue) on the cluster, bulk-loaded
    shard by shard, with the primary of slot 0 SIGKILLed mid-load: the run completes, its result reports the failover
    (errors, recovery time, p99 during and after), and after the drain every follower of every post of the run has
    it (posts_lost 0, each post's delivery report complete) and the oracle passes. The killed node rejoins as a
    replica, so the cluster is whole again afterwards. Last in the module."""
    env, where = private
    before = cluster_state(where)
    out = tmp_path / "failover.json"
    args = ["bench", "--users", "300", "--strategy", "push", "--workers", "1", "--scenario", "steady"]
    args += ["--duration", "10", "--rate", "100", "--fault", "redis-primary-kill@3s", "--out", str(out)]
    done = fanout(env, where, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(out.read_text())
    push = doc["strategies"]["push"]
    (fault,) = push["faults"]
    assert fault["fault"] == "redis-primary-kill@3s" and "took over" in fault["action"], fault
    # The takeover waits at least one node timeout; the cluster client retried through it.
    took = float(re.search(r"took over after ([0-9.]+)s", fault["action"])[1])
    assert took >= NODE_TIMEOUT_MS / 1000, fault["action"]
    assert fault["error_count"] == sum(sum(kinds.values()) for kinds in fault["errors"].values())
    assert fault["recovered_s"] is not None, fault  # operations succeed again after the failover
    assert push["recovery"]["posts_lost"]["posts_lost"] == 0, push["recovery"]
    assert push["recovery"]["posts_lost"]["posts_checked"] > 0
    assert doc["run"]["parameters"]["fanout"] == "async" and push["delivery_lag"]["count"] > 0, push["delivery_lag"]
    assert push["oracle"]["verdict"] == "pass", push["oracle"]
    # The store counters span a failover (a new primary's counters): marked, never printed as if good.
    assert (
        "failed over" in push["store_counters"]["invalid"]["redis"] and push["store_counters"]["redis_commands"] is None
    )
    after = cluster_state(where)
    victim = fault["action"].split()[2]
    assert next(n for n in after["cluster"]["nodes"] if f"127.0.0.1:{n['port']}" == victim)["role"] == "replica"
    assert before["cluster"]["nodes"] != after["cluster"]["nodes"]
    status = fanout(env, where, "status")
    assert status.returncode == 0 and status.stdout.count("│ yes ") >= 6, status.stdout[-1500:]
