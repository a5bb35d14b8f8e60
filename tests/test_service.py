"""The HTTP timeline service (``fanout serve``) as a client sees it, against real Redis and Postgres.

The service runs as a subprocess on a free loopback port, serving the session's namespace with a small graph loaded.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import networkx as nx
import pytest
import requests

from bench.bindings.http import HttpTarget
from bench.bindings.operations import Tally
from bench.driver import Driver, DriveResult, Schedule
from bench.service_process import ServiceProcess
from bench.workload import Depths, Mix, Sizes, Workload
from targets.service.metrics import ServiceMetrics
from targets.stores.connections import Stores
from targets.stores.identity import NamespaceIdentity, namespace_identity
from targets.strategies.hybrid import HybridStrategy
from tests.service_support import drain_namespace, served, served_graph, service_namespace

__all__ = ["served", "served_graph"]  # module fixtures shared with test_locust.py


@pytest.fixture(scope="module")
def graph(served_graph: nx.DiGraph) -> nx.DiGraph:
    return served_graph


@pytest.fixture(scope="module")
def service(served: ServiceProcess) -> ServiceProcess:
    return served


def call(svc: ServiceProcess, method: str, path: str, **kw: object) -> requests.Response:
    return requests.request(method, svc.url + path, timeout=10, **kw)  # type: ignore[arg-type]


def test_openapi_describes_every_route(service: ServiceProcess) -> None:
    spec = call(service, "GET", "/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/users/{user_id}/timeline",
        "/users/{user_id}/posts",
        "/users/{user_id}/following/{other_id}",
        "/users/sample",
        "/healthz",
        "/metrics",
        "/openapi.json",
    }
    assert set(spec["paths"]["/users/{user_id}/following/{other_id}"]) == {"put", "delete"}
    assert set(spec["paths"]["/users/{user_id}/posts"]) == {"get", "post"}


def test_sample_lists_the_loaded_users_and_the_most_followed(service: ServiceProcess, graph: nx.DiGraph) -> None:
    data = call(service, "GET", "/users/sample", params={"n": 1000, "top": 3}).json()
    assert data["total"] == graph.number_of_nodes()
    assert data["users"] == sorted(graph.nodes)
    assert data["followers"] == [graph.in_degree(u) for u in sorted(graph.nodes)]
    assert data["followees"] == [graph.out_degree(u) for u in sorted(graph.nodes)]
    expected_top = sorted(graph.nodes, key=lambda u: (-graph.in_degree(u), u))[:3]
    assert [t["id"] for t in data["top"]] == expected_top
    smaller = call(service, "GET", "/users/sample", params={"n": 20, "seed": 5}).json()
    assert len(smaller["users"]) <= 20 and set(smaller["users"]) <= set(graph.nodes)


def test_publish_reaches_every_follower_and_metrics_count_it(service: ServiceProcess, graph: nx.DiGraph) -> None:
    assert call(service, "DELETE", "/metrics").json() == {"reset": True}
    author = max(graph.nodes, key=graph.in_degree)
    followers = list(graph.predecessors(author))
    reply = call(service, "POST", f"/users/{author}/posts", json={"body": "hello, followers"})
    assert reply.status_code == 201
    post = reply.json()
    assert post["author_id"] == author and post["body"] == "hello, followers"
    assert post["entries_written"] == 0  # async fan-out: acknowledged before any timeline is written
    asyncio.run(drain_namespace(service_namespace()))  # the service's in-process worker delivers it
    for follower in followers[:10]:
        page = call(service, "GET", f"/users/{follower}/timeline", params={"limit": 5}).json()
        assert page["posts"][0]["id"] == post["id"]
        assert page["next_before"] == page["posts"][-1]["id"]
    outsider = next(u for u in graph.nodes if u != author and not graph.has_edge(u, author))
    assert all(p["id"] != post["id"] for p in call(service, "GET", f"/users/{outsider}/timeline").json()["posts"])
    metrics = call(service, "GET", "/metrics").json()
    assert metrics["strategy"] == "push"
    assert metrics["fanout"] == {
        "mode": "async",
        "in_process_worker": True,
        "worker_state": "running",
        "pending_in_this_process": 0,
    }
    assert metrics["counters"]["posts"] == 1 and metrics["counters"]["posts_delivered"] == 1
    assert metrics["counters"]["reads"] == min(10, len(followers)) + 1
    assert metrics["counters"]["entries_written"] == len(followers)
    assert metrics["write_amplification"] == len(followers)
    assert metrics["delivery_lag"]["count"] == len(followers)  # one lag per follower, from the workers' reports
    assert metrics["latency"]["fanout"]["count"] == 1
    assert metrics["latency"]["read"]["count"] == metrics["counters"]["reads"]
    assert metrics["redis_memory"]["used_memory"] > 0


def test_follow_and_unfollow_change_the_timeline(service: ServiceProcess, graph: nx.DiGraph) -> None:
    author = max(graph.nodes, key=graph.in_degree)
    reader = next(u for u in graph.nodes if u != author and not graph.has_edge(u, author))
    post = call(service, "POST", f"/users/{author}/posts", json={"body": "before the follow"}).json()
    asyncio.run(drain_namespace(service_namespace()))
    put = call(service, "PUT", f"/users/{reader}/following/{author}")
    assert put.json() == {"follower": reader, "followee": author, "following": True, "changed": True}
    assert call(service, "PUT", f"/users/{reader}/following/{author}").json()["changed"] is False
    ids = [p["id"] for p in call(service, "GET", f"/users/{reader}/timeline").json()["posts"]]
    assert post["id"] in ids  # merged on follow
    assert call(service, "DELETE", f"/users/{reader}/following/{author}").json()["changed"] is True
    ids = [p["id"] for p in call(service, "GET", f"/users/{reader}/timeline").json()["posts"]]
    assert post["id"] not in ids
    assert call(service, "DELETE", f"/users/{reader}/following/{author}").json()["changed"] is False


BAD_REQUESTS = [
    ("GET", "/users/abc/timeline", None, 400, "not an integer"),
    ("GET", "/users/-1/timeline", None, 400, "out of range"),
    ("GET", "/users/99999999999999999999/timeline", None, 400, "out of range"),
    ("GET", "/users/1/timeline?limit=-5", None, 422, "page size -5"),
    ("GET", "/users/1/timeline?limit=0", None, 422, "page size 0"),
    ("GET", "/users/1/timeline?limit=1000000", None, 422, "page size 1000000"),
    ("GET", "/users/1/timeline?limit=123456789012345678901234567890", None, 400, "out of range"),
    ("GET", "/users/1/timeline?limit=ten", None, 400, "not an integer"),
    ("GET", "/users/1/timeline?before=0", None, 422, "not a post id"),
    ("GET", "/users/1/timeline?before=99999999999999999", None, 422, "not a post id"),
    ("GET", "/users/987654321/timeline", None, 404, "user 987654321 does not exist"),
    ("POST", "/users/987654321/posts", b'{"body": "x"}', 404, "user 987654321 does not exist"),
    ("POST", "/users/1/posts", b'{"body": ', 400, "not valid JSON"),
    ("POST", "/users/1/posts", b"\xff\xfe", 400, "not valid JSON"),
    ("POST", "/users/1/posts", b"[1, 2]", 400, "JSON object"),
    ("POST", "/users/1/posts", b'{"text": "x"}', 400, '"body"'),
    ("POST", "/users/1/posts", b'{"body": ""}', 400, '"body"'),
    ("POST", "/users/1/posts", b'{"body": 42}', 400, '"body"'),
    ("POST", "/users/1/posts", b'{"body": "a\\u0000b"}', 400, "NUL"),
    ("POST", "/users/1/posts", b'{"body": "\\ud800"}', 400, "surrogate"),
    ("POST", "/users/1/posts", b'{"body": "' + b"x" * 3000 + b'"}', 413, "over the limit of 2000"),
    ("POST", "/users/1/posts", b'{"body": "' + b"x" * 20_000 + b'"}', 413, "16384-byte limit"),
    ("PUT", "/users/1/following/1", None, 422, "cannot follow or unfollow itself"),
    ("PUT", "/users/1/following/987654321", None, 404, "user 987654321 does not exist"),
    ("DELETE", "/users/x/following/1", None, 400, "not an integer"),
    ("PATCH", "/users/1/following/2", None, 405, "PATCH is not allowed on /users/1/following/2: use DELETE, PUT"),
    ("PUT", "/users/1/posts", None, 405, "use GET, HEAD, POST"),
    ("GET", "/users/1/timeline?limit=", None, 400, "limit is empty"),
    ("GET", "/users/1/timeline?before=", None, 400, "before is empty"),
    ("GET", "/no/such/route", None, 404, "no route"),
    ("GET", "/users/sample?n=0", None, 400, "n=0"),
]


def test_malformed_requests_get_a_4xx_with_a_message_and_the_service_stays_up(service: ServiceProcess) -> None:
    call(service, "DELETE", "/metrics")
    for method, path, body, status, message in BAD_REQUESTS:
        reply = call(service, method, path, data=body)
        assert reply.status_code == status, (method, path, reply.status_code, reply.text)
        assert reply.headers["content-type"] == "application/json", (method, path)
        data = reply.json()
        assert data["status"] == status and message in data["error"], (method, path, data)
        if status == 405:  # every method the path serves, not only the first route's
            assert reply.headers["allow"] == message.split("use ")[-1], (method, path)
    # A body larger than the limit sent in chunks (no Content-Length) is refused as well.
    chunked = call(service, "POST", "/users/1/posts", data=iter([b'{"body": "', b"y" * 20_000, b'"}']))
    assert chunked.status_code == 413
    assert service.alive()
    health = call(service, "GET", "/healthz").json()
    assert {k: health[k] for k in ("status", "strategy", "fanout")} == {
        "status": "ok",
        "strategy": "push",
        "fanout": "async",
    }
    counters = call(service, "GET", "/metrics").json()["counters"]
    assert counters["client_errors"] == len(BAD_REQUESTS) + 1
    assert counters["server_errors"] == 0


def test_healthz_names_the_namespace_and_the_servers_that_hold_it(service: ServiceProcess) -> None:
    """What `fanout bench --target` compares with its own stores to know whether the data is its own."""

    async def own() -> NamespaceIdentity:
        async with await Stores.connect(service_namespace(), create=False) as stores:
            return await namespace_identity(stores)

    served = NamespaceIdentity.from_json(call(service, "GET", "/healthz").json()["namespace"])
    mine = asyncio.run(own())
    assert served == mine
    assert mine.prefix == service_namespace().prefix and mine.schema == service_namespace().schema
    assert mine.redis and "@" in mine.postgres


def test_serve_with_an_unreachable_store_is_one_line_and_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", "--redis-url", "redis://127.0.0.1:1/0", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: Redis does not answer at redis://127.0.0.1:1/0")


async def test_metrics_of_several_processes_add_up_and_reset_together(stores: Stores) -> None:
    first = ServiceMetrics(stores.redis, stores.settings.prefix, "push")
    second = ServiceMetrics(stores.redis, stores.settings.prefix, "push")
    first.count("reads", 3)
    first.record("read", 0.0004)
    second.count("reads", 4)
    second.count("posts", 2)
    second.count("entries_written", 10)
    second.record("read", 0.002)
    await first.flush()
    await second.flush()
    snap = await first.snapshot()
    assert snap["counters"]["reads"] == 7 and snap["counters"]["posts"] == 2
    assert snap["write_amplification"] == 5.0
    assert snap["latency"]["read"]["count"] == 2
    assert snap["latency"]["read"]["p50_ms"] == pytest.approx(0.4, abs=0.001)  # sub-millisecond resolution
    assert snap["processes"] == 2
    await first.reset()
    assert (await first.snapshot())["counters"]["reads"] == 0
    second.count("reads", 5)  # counted after the reset, flushed by a process that has not seen it yet
    second.record("read", 0.001)
    await second.flush()
    snap = await first.snapshot()
    # Nothing counted after the reset is lost, and the histogram restarts without the pre-reset values.
    assert snap["counters"]["reads"] == 5 and snap["latency"]["read"]["count"] == 1


def test_sync_fanout_with_several_workers_sharing_their_counters(graph: nx.DiGraph, service: ServiceProcess) -> None:
    # A second service (two uvicorn worker processes, synchronous fan-out) over the same namespace, counting into
    # the same Redis hash as the first.
    settings = service_namespace(fanout_mode="sync")
    with ServiceProcess(settings, "push", workers=2) as multi:
        call(multi, "DELETE", "/metrics")
        author = max(graph.nodes, key=graph.in_degree)
        reply = call(multi, "POST", f"/users/{author}/posts", json={"body": "sync"})
        assert reply.status_code == 201, reply.text
        post = reply.json()
        assert post["entries_written"] == graph.in_degree(author)  # written before the acknowledgement
        follower = next(iter(graph.predecessors(author)))
        assert call(multi, "GET", f"/users/{follower}/timeline").json()["posts"][0]["id"] == post["id"]
        reads = 30
        for user in list(graph.nodes)[: reads - 1]:
            # A fresh connection each time, so the kernel spreads them over both workers.
            assert requests.get(f"{multi.url}/users/{user}/timeline", timeout=10).status_code == 200
        # Workers flush once a second; wait (bounded) for the aggregate to arrive.
        deadline = time.monotonic() + 10
        while (counted := call(multi, "GET", "/metrics").json()["counters"]["reads"]) < reads:
            assert time.monotonic() < deadline, f"only {counted} of {reads} reads counted"
            time.sleep(0.2)
        assert counted == reads


def test_open_loop_driver_over_http_is_counted_by_the_service(service: ServiceProcess, graph: nx.DiGraph) -> None:
    requests.delete(service.url + "/metrics", timeout=10)
    users = sorted(graph.nodes)
    workload = Workload(users, [graph.in_degree(u) for u in users], Mix(read_ratio=0.8, churn_ratio=0.1), seed=7)

    async def drive() -> DriveResult:
        async with HttpTarget(service.url, page_size=10, connections=8) as target:
            return await Driver(target, workload.next_op, Schedule(rate=200, duration=1.0), max_in_flight=8).run()

    result = asyncio.run(drive())
    assert result.errors == 0 and result.completed == 200
    counters = requests.get(service.url + "/metrics", timeout=10).json()["counters"]
    for kind, counter in (("read", "reads"), ("post", "posts"), ("follow", "follows"), ("unfollow", "unfollows")):
        done = result.kinds[kind].count if kind in result.kinds else 0
        assert counters[counter] == done, kind


def test_deep_and_user_timeline_reads_over_http_are_one_request_per_page(
    service: ServiceProcess, graph: nx.DiGraph
) -> None:
    requests.delete(service.url + "/metrics", timeout=10)
    users = sorted(graph.nodes)
    workload = Workload(
        users,
        [graph.in_degree(u) for u in users],
        Mix(read_ratio=0.8, user_timeline_ratio=0.5),
        seed=3,
        body_sizes=Sizes(256, 256),
        page_depths=Depths.parse("1-3"),
    )
    tally = Tally(workload.next_op)

    async def drive() -> DriveResult:
        async with HttpTarget(service.url, page_size=2, connections=8) as target:
            return await Driver(target, tally, Schedule(rate=200, duration=0.5), max_in_flight=8).run()

    result = asyncio.run(drive())
    assert result.errors == 0 and result.completed == 100
    summary = tally.summary()
    counters = requests.get(service.url + "/metrics", timeout=10).json()["counters"]
    reads = summary["operations"]["read"] + summary["operations"]["user_timeline"]
    pages = sum(int(depth) * n for depth, n in summary["read_pages"].items())
    assert reads < counters["reads"] <= pages  # deeper pages were read, none beyond what was asked
    assert counters["posts"] == summary["body_bytes"]["count"] == result.kinds["post"].count
    assert summary["body_bytes"]["min"] == summary["body_bytes"]["max"] == 256


def test_pull_and_hybrid_services_serve_the_same_pages_as_push(service: ServiceProcess, graph: nx.DiGraph) -> None:
    # Posts by a few authors through the push service, delivered; then hybrid's timelines built for its threshold.
    authors = sorted(graph.nodes, key=lambda u: -graph.in_degree(u))[:5]
    for i, author in enumerate(authors * 3):
        assert call(service, "POST", f"/users/{author}/posts", json={"body": f"p{i}"}).status_code == 201
    asyncio.run(drain_namespace(service_namespace()))
    hybrid_settings = service_namespace(celebrity_threshold=20)

    async def rebuild_hybrid() -> None:
        async with await Stores.connect(hybrid_settings, create=False) as stores:
            await HybridStrategy(stores).rebuild(list(graph.nodes))

    asyncio.run(rebuild_hybrid())
    readers = sorted(graph.nodes, key=lambda u: -graph.out_degree(u))[:20]
    with ServiceProcess(service_namespace(), "pull") as pull, ServiceProcess(hybrid_settings, "hybrid") as hybrid:
        seen = 0
        for reader in readers:
            pages = [
                [p["id"] for p in call(s, "GET", f"/users/{reader}/timeline", params={"limit": 7}).json()["posts"]]
                for s in (service, pull, hybrid)
            ]
            assert pages[0] == pages[1] == pages[2], reader
            seen += len(pages[0])
        assert seen > 0  # the readers follow some of the authors
        assert call(pull, "GET", "/metrics").json()["fanout"]["mode"] == "none"


def test_serve_on_a_taken_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bench.cli", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: cannot listen on 127.0.0.1:{port} (Address already in use): pass another --port or --host\n"
    )


def test_user_posts_page_through_an_accounts_own_posts(service: ServiceProcess, graph: nx.DiGraph) -> None:
    author = min(graph.nodes)
    ids = [call(service, "POST", f"/users/{author}/posts", json={"body": f"own {i}"}).json()["id"] for i in range(3)]
    first = call(service, "GET", f"/users/{author}/posts", params={"limit": 2}).json()
    assert [p["id"] for p in first["posts"]] == ids[::-1][:2] and first["next_before"] == ids[1]
    rest = call(service, "GET", f"/users/{author}/posts", params={"limit": 2, "before": first["next_before"]}).json()
    assert rest["posts"][0]["id"] == ids[0] and all(p["author_id"] == author for p in rest["posts"])
    assert call(service, "GET", "/users/999999/posts").status_code == 404
    assert call(service, "GET", f"/users/{author}/posts", params={"limit": 0}).status_code == 422


def test_a_deeply_nested_body_is_a_client_error(service: ServiceProcess, graph: nx.DiGraph) -> None:
    author = next(iter(graph.nodes))
    nested = '{"a":' * 2_000 + "1" + "}" * 2_000  # under the size limit, over the JSON decoder's depth
    reply = call(service, "POST", f"/users/{author}/posts", data=nested, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400 and "nested too deeply" in reply.json()["error"]


def test_a_keyed_publish_is_stored_once_and_a_bad_key_is_refused(service: ServiceProcess, graph: nx.DiGraph) -> None:
    author = next(iter(graph.nodes))
    key = f"retry-{time.time_ns()}"
    first = call(service, "POST", f"/users/{author}/posts", json={"body": "hello"}, headers={"Idempotency-Key": key})
    retry = call(service, "POST", f"/users/{author}/posts", json={"body": "again"}, headers={"Idempotency-Key": key})
    assert first.status_code == retry.status_code == 201
    assert "Idempotent-Replayed" not in first.headers and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == first.json()["id"] and retry.json()["body"] == "hello"
    other = call(
        service, "POST", f"/users/{author}/posts", json={"body": "new"}, headers={"Idempotency-Key": key + "x"}
    )
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    for bad in ("k" * 256, "caf\u00e9", ""):
        refused = call(service, "POST", f"/users/{author}/posts", json={"body": "x"}, headers={"Idempotency-Key": bad})
        assert refused.status_code == 400 and "Idempotency-Key" in refused.json()["error"], bad
