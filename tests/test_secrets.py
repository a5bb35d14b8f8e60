"""Passwords never shown or stored: URL masking, password splitting, one-line URL errors, endpoint comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import redis

from bench.cli import perf_fanout
from bench.service_process import serve_command, serve_env
from devservers.redis_server import find_redis_server, start_redis, stop_redis
from devservers.support import free_port
from targets.config import REDIS_URL_VAR
from targets.errors import FanoutError
from targets.stores.connections import Stores
from targets.urls import InvalidURL, check_url, mask_args, mask_url, same_server, scrub, split_password
from tests.conftest import SESSION_TAG, namespace_settings

SECRET = "S3cr/et?#@:%&pw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:S3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://user:S3cret@127.0.0.1:6379/0", "redis://user:***@127.0.0.1:6379/0"),
        ("rediss://default:S3cret@cache.example:6380", "rediss://default:***@cache.example:6380"),
        ("postgresql://postgres:PgS3cret@127.0.0.1:5432/postgres", "postgresql://postgres:***@127.0.0.1:5432/postgres"),
        ("postgres://u:p%2Fq@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
        ("postgresql://u:pw@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
        ("redis://127.0.0.1:6379/0?password=S3cret", "redis://127.0.0.1:6379/0?password=***"),
        ("redis://h/0?db=1&PASSWORD=S3cret&client_name=x", "redis://h/0?db=1&PASSWORD=***&client_name=x"),
        ("postgresql://u@h/db?sslpassword=S3cret", "postgresql://u@h/db?sslpassword=***"),
        ("unix:///tmp/redis.sock?password=S3cret", "unix:///tmp/redis.sock?password=***"),
        ("host=h user=u password=S3cret", "host=h user=u password=***"),
        # Raw URL-special characters inside a password: everything up to the last '@' is userinfo.
        ("redis://:ab/cd@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://u:12?34@127.0.0.1:6379/0", "redis://u:***@127.0.0.1:6379/0"),
        ("redis://:a#b@c@h:1/0", "redis://:***@h:1/0"),
        ("redis://h/0?password=ab#cd", "redis://h/0?password=***"),
        ("redis://h/0?password=ab&cd", "redis://h/0?password=***"),
        # Nothing to hide: unchanged.
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://postgres@127.0.0.1:5432/postgres"),
    ],
)
def test_mask_url_hides_every_password(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_mask_url_hides_a_password_of_special_characters() -> None:
    for url in (f"redis://:{SECRET}@127.0.0.1:6379/0", f"postgresql://u:{SECRET}@127.0.0.1/db"):
        shown = mask_url(url)
        assert "S3cr" not in shown and "pw" not in shown.rpartition("@")[0], shown


def test_mask_args_hides_the_values_of_hidden_options() -> None:
    args = ["bench", "--fault-exec", "redis-restart=redis-cli -a S3cret shutdown", "--fault-exec=pg-restart=x", "-r"]
    assert mask_args(args, ("--fault-exec",)) == ["bench", "--fault-exec", "***", "--fault-exec=***", "-r"]


def test_mask_args_masks_both_option_spellings() -> None:
    args = ["bench", "--redis-url", "redis://:S3cret@h/0", "--database-url=postgresql://u:PgS3cret@h/db", "-u", "5"]
    masked = mask_args(args)
    assert masked[:3] == ["bench", "--redis-url", "redis://:***@h/0"]
    assert masked[3:] == ["--database-url=postgresql://u:***@h/db", "-u", "5"]


@pytest.mark.parametrize(
    ("url", "bare", "password"),
    [
        ("redis://:S3cret@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", "S3cret"),
        ("redis://user:p%2Fw@h:1/0", "redis://user@h:1/0", "p/w"),
        ("redis://h:1/0?password=S3cret&db=0", "redis://h:1/0?db=0", "S3cret"),
        ("postgresql://postgres@h/db", "postgresql://postgres@h/db", None),
    ],
)
def test_split_password_takes_the_password_out(url: str, bare: str, password: str | None) -> None:
    assert split_password(url) == (bare, password)


@pytest.mark.parametrize(
    ("store", "url", "problem"),
    [
        ("redis", "redis://:S3cr/et@127.0.0.1:6379/0", "'@' after its host"),
        ("redis", "redis://:S3cret?x@127.0.0.1:6379/0", "'@' after its host"),
        ("redis", "redis://:S3cret@127.0.0.1:63x79/0", "no valid port"),
        ("redis", "redis://u:S3cret@/0", "names no host"),
        ("redis", "http://:S3cret@h/0", "starts with 'http'"),
        ("redis", "redis://:S3cret@h:6379/db", "a Redis database is a number"),
        ("postgres", "postgresql://u:S3cr/et@h/db", "'@' after its host"),
        ("postgres", "mysql://u:S3cret@h/db", "starts with 'mysql'"),
        ("postgres", "postgresql://u:S3cret@[::1:5432/db", "malformed host"),
    ],
)
def test_unusable_urls_are_one_line_without_the_secret(store: str, url: str, problem: str) -> None:
    with pytest.raises(InvalidURL) as caught:
        check_url(url, store, "FANOUT_X_URL")
    message = str(caught.value)
    assert problem in message and "FANOUT_X_URL" in message
    assert "S3cr" not in message and "\n" not in message


def test_scrub_removes_the_password_from_a_client_message() -> None:
    url = "postgresql://u:S3cr%2Fet@h/db"
    assert scrub("bad option near 'S3cr/et' (S3cr%2Fet)", url) == "bad option near '***' (***)"
    assert scrub("no password here", "redis://h/0") == "no password here"


def test_usable_urls_pass() -> None:
    for store, url in [
        ("redis", "redis://:p%2Fw%40@127.0.0.1:6379/0"),
        ("redis", "redis://localhost"),
        ("redis", "unix:///tmp/redis.sock?db=0"),
        ("postgres", "postgresql://postgres:pw@127.0.0.1:5432/postgres?sslmode=disable"),
    ]:
        check_url(url, store, "FANOUT_X_URL")


def test_same_server_compares_normalised_host_and_port() -> None:
    base = "redis://127.0.0.1:16501/0"
    for other in (
        "redis://localhost:16501/0",
        "redis://127.0.0.1:16501",
        "redis://:wrong@127.0.0.1:16501/0",
        "redis://LOCALHOST:16501/3?password=x",
        "redis://[::1]:16501/0",
    ):
        assert same_server(base, other), other
    assert not same_server(base, "redis://127.0.0.1:16502/0")
    assert not same_server(base, "redis://10.0.0.1:16501/0")
    assert same_server("redis://h", "redis://h:6379/0")
    assert same_server("postgresql://postgres@localhost/postgres", "postgresql://u:p@127.0.0.1:5432/other")


# -- end to end: no password in result files, command lines or output -----------------------------------------------
BENCH_PASSWORD = "S3cr/et#Pw"
BENCH_ENCODED = quote(BENCH_PASSWORD, safe="")


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[str]:
    """A private redis-server that requires :data:`BENCH_PASSWORD`, on a free loopback port; its URL."""
    port = free_port("127.0.0.1")
    url = f"redis://:{BENCH_ENCODED}@127.0.0.1:{port}/0"
    entry = start_redis(url, "127.0.0.1", port, find_redis_server("auto"), 30, tmp_path / "redis")
    try:
        yield url
    finally:
        stop_redis(entry, 30)


def assert_no_secret(text: str) -> None:
    for secret in (BENCH_PASSWORD, BENCH_ENCODED, "S3cr"):
        assert secret not in text


async def test_a_bench_run_with_a_password_writes_no_password(password_redis: str, tmp_path: Path) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(password_redis.replace(BENCH_ENCODED, "wrong")).ping()  # the server does check
    settings = namespace_settings(
        redis_url=password_redis, prefix=f"fanout_{SESSION_TAG}_pw:", schema=f"fanout_{SESSION_TAG}_pw"
    )
    out = tmp_path / "run.json"
    args = ["--redis-url", password_redis, "--database-url", settings.database_url]
    args += ["--prefix", settings.prefix, "--schema", settings.schema, "bench", "--users", "200", "--duration", "1"]
    args += ["--rate", "20", "--warmup", "0", "--strategy", "pull,push", "--out", str(out)]
    try:
        result = subprocess.run(  # noqa: ASYNC221 (the point is a real process)
            [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=300
        )
    finally:
        async with await Stores.connect(settings, create=False) as stores:
            await stores.drop()
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    text = out.read_text()
    assert_no_secret(text)
    assert_no_secret(result.stdout + result.stderr)
    doc = json.loads(text)
    assert f"--redis-url redis://:***@127.0.0.1:{urlsplit(password_redis).port}/0" in doc["run"]["command"]
    assert doc["run"]["redis"]["url"] == mask_url(password_redis)
    assert list(doc["strategies"]) == ["pull", "push"]


def test_a_served_process_gets_the_urls_in_its_environment_not_its_command_line() -> None:
    settings = namespace_settings(redis_url=f"redis://:{BENCH_ENCODED}@127.0.0.1:1/0")
    assert_no_secret(" ".join(serve_command("push", 8000)))
    assert serve_env(settings)[REDIS_URL_VAR] == settings.redis_url


def fake_benchmark(tmp_path: Path, stderr: str = "") -> Path:
    """A stand-in for redis-benchmark that records its arguments and REDISCLI_AUTH and prints one CSV row."""
    tool = tmp_path / "redis-benchmark"
    tool.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {tmp_path}/argv\n'
        f'printf "%s" "$REDISCLI_AUTH" > {tmp_path}/auth\n'
        f"printf '{stderr}' >&2\n"
        'echo \'"test","rps"\'; echo \'"ZADD","50000.00"\'\n'
    )
    tool.chmod(0o755)
    return tool


async def test_redis_benchmark_gets_the_password_through_its_environment(stores: Stores, tmp_path: Path) -> None:
    # The session's Redis takes any password when it has none, so the URL can carry one.
    stores.settings = stores.settings.with_(redis_url=with_password(stores.settings.redis_url))
    result = await perf_fanout._redis_benchmark(stores, str(fake_benchmark(tmp_path)), 100)
    assert result["rps"] == 50000.0
    argv = (tmp_path / "argv").read_text()
    assert_no_secret(argv + result["command"])
    assert "-a" not in argv.split("\n")
    assert (tmp_path / "auth").read_text() == BENCH_PASSWORD

    # A redis-benchmark that ignores REDISCLI_AUTH: one line saying so, without the password.
    with pytest.raises(FanoutError, match="does not read REDISCLI_AUTH") as caught:
        await perf_fanout._redis_benchmark(stores, str(fake_benchmark(tmp_path, "NOAUTH Authentication required.")), 1)
    assert_no_secret(str(caught.value))


def with_password(url: str) -> str:
    bare, _ = split_password(url)
    scheme, _, rest = bare.partition("://")
    return f"{scheme}://:{BENCH_ENCODED}@{rest.rpartition('@')[2]}"
