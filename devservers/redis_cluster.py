"""A private Redis Cluster for ``fanout up --redis-cluster N [--replicas R]``: real redis-server processes on loopback.

N primaries and R replicas of each, every one a redis-server in cluster mode on a free 127.0.0.1 port with its
files under ``.fanout/redis-cluster/<port>/``, without persistence. The cluster is formed from Python as
``redis-cli --cluster create`` would: the 16,384 hash slots split into N even ranges (CLUSTER ADDSLOTSRANGE), every
node introduced to the first (CLUSTER MEET), each replica attached to its primary (CLUSTER REPLICATE); then it waits
until every node reports ``cluster_state:ok`` and knows every other. :func:`describe_cluster` is what
``fanout status`` shows: every node, its role, slots and memory.
"""

from __future__ import annotations

import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from devservers.redis_server import find_redis_server, start_redis, stop_redis
from devservers.support import POLL_INTERVAL_S, Binaries, Entry, ServerError, free_port, port_in_use, process
from targets.stores.connections import HARNESS_CLIENT_NAME

SLOTS = 16_384
#: Milliseconds a primary may be unreachable before its replica is promoted (redis.conf cluster-node-timeout): short,
#: so that a failover during a benchmark takes about two seconds rather than fifteen.
NODE_TIMEOUT_MS = 2_000
MAX_PRIMARIES = 16
MAX_REPLICAS = 4


def slot_ranges(primaries: int) -> list[tuple[int, int]]:
    """The hash slots of each primary: ``primaries`` contiguous ranges covering 0..16383 (inclusive bounds)."""
    bounds = [SLOTS * i // primaries for i in range(primaries + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(primaries)]


#: A cluster node also listens on its port + 10000 (the cluster bus), so its port must leave room for that.
BUS_OFFSET = 10_000


def free_node_port() -> int:
    """A free loopback port whose cluster-bus port (+10000) is free too."""
    for _ in range(1000):
        port = free_port("127.0.0.1")
        if port + BUS_OFFSET <= 65_535 and not port_in_use("127.0.0.1", port + BUS_OFFSET):
            return port
    raise ServerError("found no free loopback port pair (p, p + 10000) for a cluster node: free some ports")


def _client(port: int) -> redis.Redis:
    # Named as the harness's own connections are: a fault's polling during a benchmark is not another program's.
    return redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=5, decode_responses=True, client_name=HARNESS_CLIENT_NAME
    )


def _until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise ServerError(f"the private Redis Cluster did not {what} within {timeout:.0f}s: raise --timeout")
        time.sleep(POLL_INTERVAL_S)  # polling the servers' own state, with a deadline


#: Every node's cluster directives. Its ``nodes.conf`` (in its own folder) lets a restarted node rejoin as it was.
NODE_CONFIG = (
    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
    *("--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--cluster-require-full-coverage", "yes"),
    # A replica may take over however long ago it last heard from its primary: a benchmark's cluster has no older
    # data to protect, and a failover that refuses to happen would only stop the run.
    *("--cluster-replica-validity-factor", "0"),
)


def start_cluster(primaries: int, replicas: int, binaries: Binaries, timeout: float, workdir: Path) -> Entry:
    """Start and form the cluster; returns the state entry (its URL names the first primary)."""
    if not 1 <= primaries <= MAX_PRIMARIES:
        raise ServerError(f"--redis-cluster {primaries}: a cluster needs 1 to {MAX_PRIMARIES} primaries")
    if not 0 <= replicas <= MAX_REPLICAS:
        raise ServerError(f"--replicas {replicas}: pass 0 to {MAX_REPLICAS} replicas per primary")
    nodes: list[Entry] = []
    try:
        for i in range(primaries * (1 + replicas)):
            port = free_node_port()
            url = f"redis://127.0.0.1:{port}/0"
            node = start_redis(url, "127.0.0.1", port, binaries, timeout, workdir / str(port), NODE_CONFIG)
            node.update(port=port, role="primary" if i < primaries else "replica")
            nodes.append(node)
        _form(nodes, primaries, timeout)
    except BaseException:
        for node in nodes:
            stop_redis(node, timeout)
        raise
    first = nodes[0]
    return {**first, "dir": str(workdir), "cluster": {"primaries": primaries, "replicas": replicas, "nodes": nodes}}


def _form(nodes: list[Entry], primaries: int, timeout: float) -> None:
    clients = [_client(n["port"]) for n in nodes]
    try:
        for client, (low, high) in zip(clients, slot_ranges(primaries), strict=False):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
        for node in nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node["port"])
        _until(lambda: all(len(_known(c)) == len(nodes) for c in clients), "meet every node", timeout)
        ids = [c.execute_command("CLUSTER", "MYID") for c in clients]
        for i in range(primaries, len(nodes)):
            primary = (i - primaries) % primaries
            clients[i].execute_command("CLUSTER", "REPLICATE", ids[primary])
        _until(lambda: all(_state(c) == "ok" for c in clients), "reach cluster_state:ok", timeout)
        _until(lambda: all(_roles_settled(c, primaries, len(nodes)) for c in clients), "settle its roles", timeout)
        replicas = clients[primaries:]
        _until(lambda: all(_synced(c) for c in replicas), "sync every replica with its primary", timeout)
    finally:
        for c in clients:
            c.close()


def _known(client: redis.Redis) -> list[str]:
    lines = str(client.execute_command("CLUSTER", "NODES") or "").splitlines()
    return [line for line in lines if "handshake" not in line and "noaddr" not in line]


def _state(client: redis.Redis) -> str:
    info = client.execute_command("CLUSTER", "INFO")
    text = info if isinstance(info, str) else str(info)
    return dict(line.split(":", 1) for line in text.split() if ":" in line).get("cluster_state", "")


def _roles_settled(client: redis.Redis, primaries: int, nodes: int) -> bool:
    known = _known(client)
    masters = [line for line in known if "master" in line.split()[2].split(",")]
    return len(known) == nodes and len(masters) == primaries


def _synced(client: redis.Redis) -> bool:
    info = client.info("replication")
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


def stop_cluster(entry: Entry, timeout: float) -> None:
    """Stop every node of the cluster and wait until they are gone."""
    for node in entry["cluster"]["nodes"]:
        stop_redis(node, timeout)


def running_nodes(entry: Entry) -> list[Entry]:
    """The cluster's nodes whose processes still run."""
    return [n for n in entry["cluster"]["nodes"] if process(n) is not None]


def kill_primary(entry: Entry, timeout: float) -> str:
    """SIGKILL the primary that serves slot 0 now (one with a replica), wait until its replica has taken over and the
    cluster is whole again (``cluster_state:ok``), then start the killed node again on its port: it rejoins as a
    replica of the node that replaced it. Updates ``entry``'s nodes; returns what happened, with the time the
    takeover took (from the kill until a survivor serves slot 0 again)."""
    nodes = running_nodes(entry)
    by_port = {n["port"]: n for n in nodes}
    survivor = _client(nodes[0]["port"])
    try:
        victim_port = _slot_owner(survivor, 0)
        if victim_port not in by_port or not _has_replica(survivor, victim_port):
            raise ServerError(
                "no primary with a live replica serves slot 0: start the cluster with --replicas 1 or more"
            )
    finally:
        survivor.close()
    victim = by_port[victim_port]
    proc = process(victim)
    assert proc is not None
    watchers = [_client(n["port"]) for n in nodes if n["port"] != victim_port]
    try:
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(timeout)

        def taken_over() -> bool:  # slot 0 served by another node, and every survivor (that one too) says ok
            owner = _slot_owner(watchers[0], 0)
            return owner not in (None, victim_port) and all(_state(w) == "ok" for w in watchers)

        _until(taken_over, "promote a replica", timeout)
        took = time.monotonic() - killed
        new_primary = _slot_owner(watchers[0], 0)
    finally:
        for watcher in watchers:
            watcher.close()
    binaries = Binaries(victim["source"], Path(victim["binary"]), victim["label"])
    url = f"redis://127.0.0.1:{victim_port}/0"
    restarted = start_redis(url, "127.0.0.1", victim_port, binaries, timeout, Path(victim["dir"]), NODE_CONFIG)
    restarted.update(port=victim_port, role="replica")
    entry["cluster"]["nodes"] = [restarted if n["port"] == victim_port else n for n in entry["cluster"]["nodes"]]
    if entry["port"] == victim_port:  # the entry's own process is its first node's
        entry.update(pid=restarted["pid"], create_time=restarted["create_time"])
    back = _client(victim_port)
    try:
        _until(lambda: _synced(back), "sync the restarted node as a replica", timeout)
    finally:
        back.close()
    return (
        f"killed primary 127.0.0.1:{victim_port} (pid {victim['pid']}); replica 127.0.0.1:{new_primary} took over "
        f"after {took:.2f}s; the killed node rejoined as its replica"
    )


def _slot_owner(client: redis.Redis, slot: int) -> int | None:
    """The port of the node that serves ``slot`` as ``client``'s node sees it (None: nobody)."""
    for low, high, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
        if int(low) <= slot <= int(high):
            return int(primary[1])
    return None


def _has_replica(client: redis.Redis, port: int) -> bool:
    lines = [line.split() for line in _known(client)]
    ids = {f[0] for f in lines if f[1].split("@")[0].endswith(f":{port}")}
    return any(f[3] in ids and "fail" not in f[2] and f[7] == "connected" for f in lines if "slave" in f[2])


@dataclass(frozen=True)
class NodeStatus:
    """One cluster node as ``fanout status`` shows it."""

    address: str
    role: str
    slots: int
    memory: str
    reachable: bool
    detail: str = ""


def describe_cluster(ports: list[int]) -> list[NodeStatus]:
    """Every node's role (as the cluster sees it now, after any failover), its slots and memory."""
    rows = []
    for port in ports:
        client = _client(port)
        try:
            myself = next(line for line in _known(client) if "myself" in line.split()[2])
            fields = myself.split()
            role = "primary" if "master" in fields[2] else "replica"
            slots = sum(_slot_count(f) for f in fields[8:])
            memory = client.info("memory")["used_memory_human"]
            rows.append(NodeStatus(f"127.0.0.1:{port}", role, slots, memory, True))
        except (redis.RedisError, OSError, StopIteration) as exc:
            rows.append(NodeStatus(f"127.0.0.1:{port}", "-", 0, "-", False, str(exc).splitlines()[0][:120]))
        finally:
            client.close()
    return rows


def _slot_count(field: str) -> int:
    if field.startswith("["):  # a slot being migrated
        return 0
    low, _, high = field.partition("-")
    return int(high or low) - int(low) + 1


def cluster_label(entry: dict[str, Any]) -> str:
    """``3 primaries x 1 replica`` for messages."""
    c = entry["cluster"]
    return f"{c['primaries']} primar{'y' if c['primaries'] == 1 else 'ies'} x {c['replicas']} replica(s)"


#: How long each server of a :func:`private_pair` may take to answer.
PAIR_START_TIMEOUT_S = 60.0


@contextmanager
def private_pair(primaries: int) -> Iterator[tuple[str, str, str]]:
    """One private Redis and a private cluster of ``primaries`` primaries (no replicas), stopped afterwards; yields
    their URLs and the binaries' label."""
    binaries = find_redis_server("auto")
    with tempfile.TemporaryDirectory(prefix="fanout-perf-cluster-") as folder:
        where = Path(folder)
        port = free_port("127.0.0.1")
        url = f"redis://127.0.0.1:{port}/0"
        single = start_redis(url, "127.0.0.1", port, binaries, PAIR_START_TIMEOUT_S, where / "single")
        cluster: dict[str, Any] | None = None
        try:
            cluster = start_cluster(primaries, 0, binaries, PAIR_START_TIMEOUT_S, where / "cluster")
            yield url, cluster["url"], binaries.label
        finally:
            stop_redis(single, PAIR_START_TIMEOUT_S)
            if cluster is not None:
                stop_cluster(cluster, PAIR_START_TIMEOUT_S)
