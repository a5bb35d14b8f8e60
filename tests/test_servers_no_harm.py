"""``fanout up`` does no harm: a running server is never stopped or replaced, whatever URL names it.

Private servers on free loopback ports, each test in a directory of its own (the ``workdir`` fixture of
tests/test_servers.py stops whatever a failing test left running). The markers are data the servers hold: they
survive only if nothing was restarted.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
import redis
from click.testing import CliRunner, Result

from bench.cli.main import main
from devservers import manager as servers
from devservers import redis_server as server_redis
from devservers.support import free_port
from targets.config import DATABASE_URL_VAR, REDIS_URL_VAR
from targets.errors import StoreUnavailable
from targets.eventloop import run
from targets.stores import connections
from targets.stores.connections import connect_redis
from targets.stores.failures import AUTH, REFUSED, TIMEOUT, failure_kind
from tests.conftest import namespace_settings
from tests.test_servers import processes_mentioning, workdir

__all__ = ["workdir"]  # fixture

#: The PostgreSQL the session uses (resolved here, before any test changes directory): the Redis tests leave it be.
SHARED_DATABASE_URL = namespace_settings().database_url
PASSWORD = "R1ght/pw#x"  # percent-encoded in URLs below
ENCODED = "R1ght%2Fpw%23x"


def up(
    monkeypatch: pytest.MonkeyPatch, redis_url: str | None, database_url: str | None = SHARED_DATABASE_URL
) -> Result:
    for variable, url in ((REDIS_URL_VAR, redis_url), (DATABASE_URL_VAR, database_url)):
        if url is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, url)
    return CliRunner().invoke(main, ["up", "--source", "system", "--timeout", "30"])


def recorded_pid(store: str) -> int:
    return json.loads(servers.STATE_FILE.read_text())[store]["pid"]


def test_redis_marker_survives_up_with_every_spelling_of_its_url(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port("127.0.0.1")
    url = f"redis://127.0.0.1:{port}/0"
    first = up(monkeypatch, url)
    assert first.exit_code == 0 and "Redis: started a private" in first.output, first.output
    pid = recorded_pid("redis")
    client = redis.Redis(port=port)
    client.set("marker", "1")

    # Same server: loopback name, no database, a password (a passwordless server takes any).
    for other in (
        f"redis://localhost:{port}/0",
        f"redis://127.0.0.1:{port}",
        f"redis://localhost:{port}",
        f"redis://:wrong@127.0.0.1:{port}/0",
    ):
        again = up(monkeypatch, other)
        assert again.exit_code == 0, (other, again.output)
        assert "Redis: fanout's private" in again.output and "is running" in again.output, again.output
        assert "stopped" not in again.output and "started" not in again.output
        assert client.get("marker") == b"1", other
        assert recorded_pid("redis") == pid

    # Nothing configured: the recorded server is found again, and `fanout status` calls it fanout's own.
    assert up(monkeypatch, None).exit_code == 0
    shown = CliRunner().invoke(main, ["--redis-url", f"redis://localhost:{port}", "status"])
    assert "yes (" in shown.output and f"pid {pid})" in shown.output, shown.output

    # Another port, where nothing answers: refused in one line, and the recorded server keeps running.
    elsewhere = up(monkeypatch, f"redis://127.0.0.1:{free_port('127.0.0.1')}/0")
    assert elsewhere.exit_code == 2
    assert len(elsewhere.output.strip().splitlines()) == 1, elsewhere.output
    assert "started and stopped nothing" in elsewhere.output and "fanout down" in elsewhere.output
    assert client.get("marker") == b"1" and recorded_pid("redis") == pid


def test_a_password_protected_server_refuses_a_wrong_password_and_is_kept(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port("127.0.0.1")
    right = f"redis://:{ENCODED}@127.0.0.1:{port}/0"
    first = up(monkeypatch, right)
    assert first.exit_code == 0 and "Redis: started a private" in first.output, first.output
    pid = recorded_pid("redis")
    client = redis.Redis.from_url(right)
    client.set("marker", "1")

    for other, what in (
        (f"redis://:wrong@localhost:{port}/0", "a wrong password"),
        (f"redis://localhost:{port}", "no password"),
        (None, "nothing configured: the state file holds no password"),
    ):
        refused = up(monkeypatch, other)
        assert refused.exit_code == 2, (what, refused.output)
        lines = refused.output.strip().splitlines()
        assert len(lines) == 1, (what, refused.output)
        assert "answers but refuses the credentials" in lines[0] and REDIS_URL_VAR in lines[0], lines[0]
        assert "started and stopped nothing" in lines[0]
        assert "wrong" not in lines[0] and PASSWORD not in lines[0] and ENCODED not in lines[0]
        assert client.get("marker") == b"1", what
        assert recorded_pid("redis") == pid

    # The password is nowhere but in the configured URL: not in the state file (owner-only), not on a command line.
    state = servers.STATE_FILE
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert ENCODED not in state.read_text() and PASSWORD not in state.read_text()
    assert processes_mentioning(ENCODED) == [] and processes_mentioning(PASSWORD) == []


async def marker_rows(url: str) -> list[str]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS marker (v text)")
        if not await conn.fetchval("SELECT count(*) FROM marker"):
            await conn.execute("INSERT INTO marker VALUES ('kept')")
        return [r["v"] for r in await conn.fetch("SELECT v FROM marker")]
    finally:
        await conn.close()


def test_postgres_marker_survives_up_with_every_spelling_of_its_url(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_url = f"redis://127.0.0.1:{free_port('127.0.0.1')}/0"
    port = free_port("127.0.0.1")
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    first = up(monkeypatch, redis_url, url)
    assert first.exit_code == 0 and "PostgreSQL: started a private" in first.output, first.output
    pid = recorded_pid("postgres")
    assert run(marker_rows(url)) == ["kept"]
    for other in (
        f"postgresql://postgres@localhost:{port}/postgres",
        f"postgresql://postgres:any@127.0.0.1:{port}/postgres",  # trust authentication takes any password
        f"postgres://postgres@localhost:{port}",
    ):
        again = up(monkeypatch, redis_url, other)
        assert again.exit_code == 0, (other, again.output)
        assert again.output.count("is running") == 2, again.output
        assert recorded_pid("postgres") == pid
    assert run(marker_rows(url)) == ["kept"]
    assert "any" not in servers.STATE_FILE.read_text()


def test_a_url_the_clients_would_misread_is_one_line_without_the_secret(workdir: Path) -> None:
    port = free_port("127.0.0.1")
    for command in (["up"], ["status"], ["demo"]):
        result = subprocess.run(
            [sys.executable, "-m", "bench.cli", "--redis-url", f"redis://:Se/cret@127.0.0.1:{port}/0", *command],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, DATABASE_URL_VAR: SHARED_DATABASE_URL},
        )
        assert result.returncode == 2, (command, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "percent-encoded" in result.stderr and "Se/cret" not in result.stderr and "cret" not in result.stderr
        assert "Traceback" not in result.stderr
    assert not servers.STATE_FILE.exists()


def test_each_kind_of_failure_gets_its_own_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens: start one.
    refused_url = f"redis://127.0.0.1:{free_port('127.0.0.1')}/0"
    with pytest.raises(StoreUnavailable) as refused:
        run(connect_redis(refused_url))
    assert refused.value.kind == REFUSED and "run `fanout up`" in str(refused.value)

    # Something holds the port but never answers: a busy or paused server, not one to start.
    monkeypatch.setattr(connections, "CONNECT_TIMEOUT_S", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(StoreUnavailable) as timeout:
            run(connect_redis(f"redis://127.0.0.1:{silent.getsockname()[1]}/0"))
    assert timeout.value.kind == TIMEOUT and "did not answer in time" in str(timeout.value)
    assert "fanout status" in str(timeout.value) and "fanout up" not in str(timeout.value)

    # The server answers but refuses the password: say where the password goes.
    port = free_port("127.0.0.1")
    entry = server_redis.start_redis(
        f"redis://:{ENCODED}@127.0.0.1:{port}/0", "127.0.0.1", port, servers.find_redis_server("system"), 30, tmp_path
    )
    try:
        with pytest.raises(StoreUnavailable) as auth:
            run(connect_redis(f"redis://:wrong@127.0.0.1:{port}/0"))
    finally:
        server_redis.stop_redis(entry, 30)
    assert auth.value.kind == AUTH and "refuses the credentials" in str(auth.value)
    assert REDIS_URL_VAR in str(auth.value) and "wrong" not in str(auth.value)
    assert failure_kind(asyncpg.InvalidPasswordError("password authentication failed for user")) == AUTH
