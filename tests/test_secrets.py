"""Passwords never shown or stored: URL masking, password splitting, one-line URL errors, endpoint comparison."""

from __future__ import annotations

import pytest

from targets.urls import InvalidURL, check_url, mask_args, mask_url, same_server, split_password

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
    ],
)
def test_unusable_urls_are_one_line_without_the_secret(store: str, url: str, problem: str) -> None:
    with pytest.raises(InvalidURL) as caught:
        check_url(url, store, "FANOUT_X_URL")
    message = str(caught.value)
    assert problem in message and "FANOUT_X_URL" in message
    assert "S3cr" not in message and "\n" not in message


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
