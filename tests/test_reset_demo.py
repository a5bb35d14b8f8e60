"""``fanout reset`` removes the whole namespace (and asks only on a terminal); ``fanout demo`` never touches it."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import bench.cli.reset
from bench.cli.demo import demo_settings
from bench.cli.main import main
from graphs.load import load_graph, staging_schema
from targets.stores.connections import Stores

GRAPH = b"1 2\n2 3\n3 1\n4 1\n5 1\n"


async def invoke(stores: Stores, *args: str, stdin: str | None = None) -> Result:
    """``fanout --prefix P --schema S ARGS`` in a thread (the command runs its own event loop)."""
    s = stores.settings
    argv = ["--prefix", s.prefix, "--schema", s.schema, *args]
    return await asyncio.to_thread(CliRunner().invoke, main, argv, input=stdin)


async def namespace_left(stores: Stores, prefix: str | None = None, schema: str | None = None) -> tuple[int, list]:
    """Keys with the prefix and schemas of that name (or its staging schema) that exist."""
    prefix = prefix or stores.settings.prefix
    schema = schema or stores.settings.schema
    keys = [k async for k in stores.redis.scan_iter(match=prefix + "*", count=10_000)]
    names = await stores.pg.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])", [schema, staging_schema(schema)]
    )
    return len(keys), sorted(r[0] for r in names)


async def populated(stores: Stores, tmp_path: Path) -> None:
    """A loaded graph with posts and timelines, a queued job's key, and a leftover staging schema."""
    path = tmp_path / "g.txt"
    path.write_bytes(GRAPH)
    await load_graph(stores, path, posts_per_user=2)
    await stores.redis.set(stores.key("something", "else"), b"1")
    await stores.pg.execute(f"CREATE SCHEMA {staging_schema(stores.settings.schema)}")
    keys, schemas = await namespace_left(stores)
    assert keys > 0 and len(schemas) == 2


async def test_reset_yes_without_a_terminal_removes_keys_and_schemas(stores: Stores, tmp_path: Path) -> None:
    await populated(stores, tmp_path)
    result = await invoke(stores, "reset", "--yes")
    assert result.exit_code == 0, result.output
    assert await namespace_left(stores) == (0, [])  # no key, no schema (not even an empty one)
    schema = stores.settings.schema
    assert f"dropped schema {schema}, {staging_schema(schema)}" in result.stdout
    assert re.search(rf"removed \d+ Redis keys {re.escape(stores.settings.prefix)}\*", result.stdout)


async def test_reset_without_a_terminal_needs_yes_and_deletes_nothing(stores: Stores, tmp_path: Path) -> None:
    await populated(stores, tmp_path)
    before = await namespace_left(stores)
    result = await invoke(stores, "reset")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "pass --yes" in result.stderr
    assert await namespace_left(stores) == before


async def test_reset_on_a_terminal_asks(stores: Stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.cli.reset, "interactive", lambda: True)
    await populated(stores, tmp_path)
    before = await namespace_left(stores)
    declined = await invoke(stores, "reset", stdin="n\n")
    assert declined.exit_code == 1 and "nothing deleted" in declined.stdout
    assert await namespace_left(stores) == before
    accepted = await invoke(stores, "reset", stdin="y\n")
    assert accepted.exit_code == 0 and "Delete the Redis keys" in accepted.stdout
    assert await namespace_left(stores) == (0, [])


async def test_reset_clears_the_store_that_answers_and_names_the_one_that_does_not(
    stores: Stores, tmp_path: Path
) -> None:
    await populated(stores, tmp_path)
    port = unused_port()
    result = await invoke(stores, "--redis-url", f"redis://127.0.0.1:{port}/0", "reset", "--yes")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"Redis keys {stores.settings.prefix}* were not removed" in lines[0]
    assert f"127.0.0.1:{port}" in lines[0]
    keys, schemas = await namespace_left(stores)
    assert schemas == [] and keys > 0  # Postgres was reset; Redis, which was not asked, keeps its keys


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reset_refuses_a_schema_that_is_not_the_harnesss() -> None:
    # Stores that do not answer: should the guard ever break, this test fails without dropping a shared schema.
    port = unused_port()
    urls = ["--redis-url", f"redis://127.0.0.1:{port}/0", "--database-url", f"postgresql://postgres@127.0.0.1:{port}/x"]
    for schema in ("public", "pg_catalog", "information_schema"):
        result = CliRunner().invoke(main, [*urls, "--schema", schema, "reset", "--yes"])
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines() == [
            f"error: schema {schema} is not the harness's own: set FANOUT_SCHEMA (or --schema) to a schema only "
            "fanout uses"
        ]


async def test_demo_runs_in_its_own_namespace_and_leaves_the_loaded_graph(stores: Stores, tmp_path: Path) -> None:
    path = tmp_path / "g.txt"
    path.write_bytes(GRAPH)
    await load_graph(stores, path, posts_per_user=2)
    users = await stores.pg.fetch("SELECT * FROM users ORDER BY id")
    follows = await stores.pg.fetch("SELECT * FROM follows ORDER BY 1, 2")
    posts = await stores.pg.fetch("SELECT id, author_id FROM posts ORDER BY id")
    keys = sorted([k async for k in stores.redis.scan_iter(match=stores.settings.prefix + "*")])
    result = await invoke(stores, "demo", "--users", "30", "--posts", "40")
    assert result.exit_code == 0, result.output
    assert "identical pages for every user" in result.stdout
    authors = {int(a) for a in re.findall(r" by (\d+)", result.stdout)}
    assert authors and min(authors) >= 1 and max(authors) <= 30  # users numbered 1..N, as in graph files
    assert await stores.pg.fetch("SELECT * FROM users ORDER BY id") == users
    assert await stores.pg.fetch("SELECT * FROM follows ORDER BY 1, 2") == follows
    assert await stores.pg.fetch("SELECT id, author_id FROM posts ORDER BY id") == posts
    assert sorted([k async for k in stores.redis.scan_iter(match=stores.settings.prefix + "*")]) == keys
    own = demo_settings(stores.settings)
    assert (own.prefix, own.schema) == (stores.settings.prefix.rstrip(":") + "_demo:", stores.settings.schema + "_demo")
    assert await namespace_left(stores, own.prefix, own.schema) == (0, [])  # the demo's namespace is dropped
