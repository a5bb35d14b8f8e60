"""The regression gate's fixtures: one event loop for every round, and one feed loaded with COPY.

Benchmarks are synchronous pytest-benchmark tests that drive the async targets through a single session-wide
:class:`asyncio.Runner` (uvloop, as the CLI runs), so no round pays for a new loop or new connections.

The feed lives in a namespace of its own, next to the session's (``<prefix>_bench:`` and ``<schema>_bench``), so the
ordinary tests' ``stores`` fixture, which resets the session namespace, never touches it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import uvloop

from targets.config import Settings
from targets.ids import make_post_id
from targets.stores.connections import Stores
from targets.stores.schema import create_schema, index_ddl
from targets.strategies.hybrid import HybridStrategy
from targets.strategies.pull import PullStrategy
from targets.strategies.push import PushStrategy
from tests.benchmarks.costs import check_costs
from tests.conftest import namespace_settings

FOLLOWERS = range(1, 10_001)  # the publisher's followers, who also follow every celebrity
PUBLISHER = 20_001
CELEBRITIES = range(20_101, 20_106)
ORDINARY = range(30_001, 30_201)  # accounts the readers follow; two followers each, so never celebrities
READER = 40_001  # follows the 200 ordinary accounts
CELEB_READER = 40_002  # follows 195 ordinary accounts and the 5 celebrities
POSTS_PER_ORDINARY = 5
POSTS_PER_CELEBRITY = 20
START_MS = 1_767_225_600_000  # 2026-01-01: the posts' times, one second apart in a seeded shuffle


def bench_settings(suffix: str) -> Settings:
    """The session's settings moved to a namespace of their own, ``suffix`` appended to both prefix and schema."""
    base = namespace_settings()
    return base.with_(prefix=f"{base.prefix.rstrip(':')}_{suffix}:", schema=f"{base.schema}_{suffix}")


@pytest.fixture(scope="session")
def runner() -> Iterator[asyncio.Runner]:
    """The one event loop every benchmark round runs on."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        yield r


@dataclass
class Feed:
    """Loaded stores and one instance of each strategy over them."""

    stores: Stores
    push: PushStrategy
    pull: PullStrategy
    hybrid: HybridStrategy


def feed_rows() -> tuple[list[tuple[int, int, int]], list[tuple[int, int]], list[tuple[int, int, datetime, str]]]:
    """users, follows and posts rows of the feed (deterministic)."""
    follows = [(f, PUBLISHER) for f in FOLLOWERS]
    follows += [(f, c) for c in CELEBRITIES for f in FOLLOWERS]
    follows += [(READER, a) for a in ORDINARY]
    follows += [(CELEB_READER, a) for a in ORDINARY[: 200 - len(CELEBRITIES)]]
    follows += [(CELEB_READER, c) for c in CELEBRITIES]
    followers: dict[int, int] = {}
    followees: dict[int, int] = {}
    for a, b in follows:
        followees[a] = followees.get(a, 0) + 1
        followers[b] = followers.get(b, 0) + 1
    users = sorted(set(followers) | set(followees))
    user_rows = [(u, followers.get(u, 0), followees.get(u, 0)) for u in users]

    # Older posts by ordinary accounts, then the newest ones alternating with the celebrities' posts, so the newest
    # page of the celebrity reader mixes both and the hybrid merge has work to do.
    rng = random.Random(7)
    ordinary = rng.sample([a for a in ORDINARY for _ in range(POSTS_PER_ORDINARY)], len(ORDINARY) * POSTS_PER_ORDINARY)
    celebrity = rng.sample(
        [c for c in CELEBRITIES for _ in range(POSTS_PER_CELEBRITY)], len(CELEBRITIES) * POSTS_PER_CELEBRITY
    )
    split = len(ordinary) - len(celebrity)
    authors = ordinary[:split] + [a for pair in zip(ordinary[split:], celebrity, strict=True) for a in pair]
    post_rows = []
    for n, author in enumerate(authors):
        ms = START_MS + 1000 * n
        post_rows.append((make_post_id(ms, n), author, datetime.fromtimestamp(ms / 1000, UTC), f"post {n} by {author}"))
    return user_rows, follows, post_rows


async def load_feed(settings: Settings) -> Feed:
    """Connect to a fresh namespace, COPY the feed in, build indexes, and rebuild the readers' timelines."""
    stores = await Stores.connect(settings, create=False)
    await stores.delete_keys()
    users, follows, posts = feed_rows()
    schema = settings.schema
    async with stores.pg.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await create_schema(conn, schema, indexes=False)
        await conn.copy_records_to_table("users", records=users, schema_name=schema)
        await conn.copy_records_to_table("follows", records=follows, schema_name=schema)
        columns = ["id", "author_id", "created_at", "body"]
        await conn.copy_records_to_table("posts", records=posts, columns=columns, schema_name=schema)
        for statement in index_ddl(schema):
            await conn.execute(statement)
        for table in ("users", "follows", "posts"):
            # Plans, and so the rows each read scans, stay those of this ANALYZE: no autovacuum re-analyses
            # the tables as the publish benchmarks add posts.
            await conn.execute(f"ALTER TABLE {schema}.{table} SET (autovacuum_enabled = false)")
        await conn.execute(f"ANALYZE {schema}.users, {schema}.follows, {schema}.posts")
    feed = Feed(stores, PushStrategy(stores), PullStrategy(stores), HybridStrategy(stores))
    await feed.push.rebuild([READER, CELEB_READER])
    await feed.hybrid.rebuild([READER, CELEB_READER])
    return feed


@pytest.fixture(scope="session")
def feed(runner: asyncio.Runner) -> Iterator[Feed]:
    """The loaded feed, shared by every benchmark of the session and dropped at its end."""
    # Synchronous fan-out: publish returns once every follower's timeline is written, so its time and its costs
    # include the whole fan-out (the asynchronous pipeline's workers would do the same writes after the ack).
    loaded = runner.run(load_feed(bench_settings("bench").with_(fanout_mode="sync")))
    try:
        yield loaded
    finally:
        runner.run(loaded.stores.drop())
        runner.run(loaded.stores.close())


@pytest.fixture
def record_costs(benchmark: Any, request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record one operation's cost figures in the benchmark's ``extra_info`` and hold them to ``costs.json``.

    Figures named in ``loose`` are held to twice their baseline only (see :func:`check_costs`).
    """

    def record(figures: dict[str, int], loose: tuple[str, ...] = ()) -> None:
        benchmark.extra_info.update(figures)
        check_costs(request.node.name, figures, loose)

    return record
