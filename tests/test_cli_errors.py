"""Expected errors reach the user as one line and exit code 2, never as a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fanout(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_unreachable_redis_is_one_line_with_the_fix() -> None:
    port = unused_port()
    result = fanout("--redis-url", f"redis://:secret@127.0.0.1:{port}/0", "demo")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"Redis does not answer at redis://:***@127.0.0.1:{port}/0" in lines[0]
    assert "fanout up" in lines[0] and "FANOUT_REDIS_URL" in lines[0]
    assert "secret" not in result.stderr


def test_unreachable_postgres_is_one_line_with_the_fix() -> None:
    port = unused_port()
    result = fanout("--database-url", f"postgresql://postgres@127.0.0.1:{port}/postgres", "demo")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"PostgreSQL does not answer at postgresql://postgres@127.0.0.1:{port}/postgres" in lines[0]
    assert "FANOUT_DATABASE_URL" in lines[0]


def test_bad_schema_name_is_a_usage_error() -> None:
    result = fanout("--schema", "Robert'); DROP TABLE users;--", "demo")
    assert result.returncode == 2
    assert "schema name" in result.stderr and "Traceback" not in result.stderr
