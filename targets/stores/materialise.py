"""Bulk materialisation of the strategies' derived state (Redis home timelines and more) from the source of truth.

One set-based query per strategy computes every user's newest ``timeline_cap`` posts of the accounts they follow
(hybrid: only followees below ``celebrity_threshold`` followers, as :mod:`targets.strategies.hybrid` pushes them),
streamed through a server-side cursor into pipelined ZADDs. An owner whose timelines hold only ordinary authors (hybrid)
reads celebrities at read time, so one more streamed query gives every account its author timeline
(:mod:`targets.stores.authors`) and every user its set of followed celebrities (:mod:`targets.stores.celebrities`).
This is the one bulk path: the graph loader calls it after seeding posts, and the benchmark calls it to reset derived
state between strategies. Its result is what each strategy's own incremental path (publish, follow, unfollow) leaves
behind; tests/test_graph_rebuild.py checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from targets.stores import authors as author_timelines
from targets.stores.celebrities import CelebritySets
from targets.stores.connections import Stores
from targets.stores.post_cache import POST_CACHE_PATTERN
from targets.stores.postgres import Authors
from targets.stores.timelines import ALL_DERIVED_PATTERN, SENTINEL, Timelines, owner_pattern

#: Users whose timelines go to Redis in one pipeline.
PIPELINE_USERS = 1_000
#: ... or this many timeline entries, whichever comes first.
PIPELINE_ENTRIES = 100_000
#: Rows the server-side cursor fetches per round trip.
PREFETCH = 5_000

_FOLLOWEE_FILTER = {
    Authors.ALL: "",
    # As Social.timeline's ORDINARY filter: a followee is ordinary unless it has at least $2 followers.
    Authors.ORDINARY: "AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = f.followee_id AND u.follower_count >= $2)",
    Authors.CELEBRITIES: "AND EXISTS (SELECT 1 FROM users u WHERE u.id = f.followee_id AND u.follower_count >= $2)",
}


def timelines_sql(authors: Authors) -> str:
    """Every user's timeline as (follower_id, post ids newest first), at most $1 posts each, ordered by user.

    Only an author's newest $1 posts can be in any timeline, so those are ranked once per author, joined to the
    follow edges and ranked again per follower: two sorts, no per-user query.
    """
    return f"""
    WITH recent AS (
        SELECT author_id, id FROM (
            SELECT author_id, id, row_number() OVER (PARTITION BY author_id ORDER BY id DESC) AS r FROM posts
        ) ranked WHERE r <= $1
    ), entries AS (
        SELECT f.follower_id, r.id, row_number() OVER (PARTITION BY f.follower_id ORDER BY r.id DESC) AS r
        FROM follows f JOIN recent r ON r.author_id = f.followee_id
        WHERE true {_FOLLOWEE_FILTER[authors]}
    )
    SELECT follower_id, array_agg(id ORDER BY id DESC) AS ids FROM entries WHERE r <= $1
    GROUP BY follower_id ORDER BY follower_id"""


#: Every user's own newest $1 post ids (newest first) and the followees with at least $2 followers, ordered by user.
#: Celebrities are few, so their follow edges are found from the followee side and grouped once.
READER_STATE_SQL = """
WITH celebs AS (
    SELECT f.follower_id, array_agg(f.followee_id ORDER BY f.followee_id) AS ids
    FROM follows f JOIN users c ON c.id = f.followee_id WHERE c.follower_count >= $2 GROUP BY f.follower_id
)
SELECT u.id, ARRAY(SELECT p.id FROM posts p WHERE p.author_id = u.id ORDER BY p.id DESC LIMIT $1) AS posts,
       coalesce(c.ids, '{}') AS celebs
FROM users u LEFT JOIN celebs c ON c.follower_id = u.id ORDER BY u.id"""


async def clear_derived(stores: Stores, owners: Iterable[str] | None = None, *, post_cache: bool = True) -> int:
    """Delete derived state (these owners', or every owner's when None) and the post cache; returns keys removed.

    Each pattern costs one SCAN of the whole Redis database, so "every owner" is one pattern, not one per strategy.
    """
    patterns = [ALL_DERIVED_PATTERN] if owners is None else [owner_pattern(owner) for owner in owners]
    if post_cache:
        patterns.append(POST_CACHE_PATTERN)
    removed = 0
    for pattern in patterns:
        removed += await stores.delete_keys(pattern)
    return removed


async def rebuild_timelines(
    stores: Stores,
    owners: Mapping[str, Authors],
    on_users: Callable[[str, int], None] | None = None,
    *,
    clear: bool = True,
) -> int:
    """Replace these owners' derived state with state computed in bulk from Postgres; returns entries written.

    ``owners`` maps each timeline owner (a strategy, see ``targets.strategies.registry.timeline_owners``) to which
    followees' posts its timelines hold; an owner of ordinary authors' timelines also gets author timelines and
    celebrity sets. ``on_users(owner, n)`` is told as each pipeline of ``n`` users' home timelines is written (for
    progress bars). The count is home-timeline entries, from Redis's own ZADD replies, not a computed figure.
    ``clear=False`` skips deleting the old state first (each delete is a SCAN of the whole Redis database), for a
    caller that has just cleared it.
    """
    written = 0
    for name, authors in owners.items():
        if clear:
            await clear_derived(stores, [name], post_cache=False)
        written += await _materialise_home(stores, name, authors, on_users)
        if authors is Authors.ORDINARY:
            await _materialise_reader_state(stores, name)
    return written


async def _materialise_home(
    stores: Stores, owner: str, authors: Authors, on_users: Callable[[str, int], None] | None
) -> int:
    s = stores.settings
    timelines = Timelines(stores.redis, s.prefix, owner, s.timeline_cap)
    args: list[object] = [s.timeline_cap] + ([s.celebrity_threshold] if authors is not Authors.ALL else [])

    def queue(pipe: aioredis.client.Pipeline, row: asyncpg.Record) -> int:
        user_id, ids = row
        pipe.zadd(timelines.key(user_id), {str(i): i for i in ids})
        return len(ids)

    def flushed(users: int) -> None:
        if on_users:
            on_users(owner, users)

    replies = await _stream(stores, timelines_sql(authors), args, queue, flushed)
    return sum(replies)


async def _materialise_reader_state(stores: Stores, owner: str) -> None:
    """Every account's author timeline and every user's celebrity set (sentinel included: known, even if empty)."""
    s = stores.settings
    authors = author_timelines.AuthorTimelines(stores.redis, s.prefix, owner, s.timeline_cap)
    celebrities = CelebritySets(stores.redis, s.prefix, owner)

    def queue(pipe: aioredis.client.Pipeline, row: asyncpg.Record) -> int:
        user_id, posts, celebs = row
        pipe.zadd(authors.key(user_id), author_timelines.entries(posts))
        pipe.sadd(celebrities.key(user_id), SENTINEL, *celebs)
        return len(posts) + len(celebs) + 2

    await _stream(stores, READER_STATE_SQL, [s.timeline_cap, s.celebrity_threshold], queue)


async def _stream(
    stores: Stores,
    sql: str,
    args: Sequence[object],
    queue: Callable[[aioredis.client.Pipeline, asyncpg.Record], int],
    flushed: Callable[[int], None] | None = None,
) -> list[Any]:
    """Stream the query's rows (one per user) through a server-side cursor into pipelined Redis writes.

    ``queue(pipe, row)`` adds a row's commands and returns its entries; a pipeline goes out every
    ``PIPELINE_USERS`` users or ``PIPELINE_ENTRIES`` entries. Returns every command's reply.
    """
    replies: list[Any] = []
    pipe = stores.redis.pipeline(transaction=False)
    queued = entries = 0

    async def flush() -> None:
        nonlocal queued, entries, pipe
        if queued:
            replies.extend(await pipe.execute())
            if flushed:
                flushed(queued)
            pipe = stores.redis.pipeline(transaction=False)
            queued = entries = 0

    async with stores.pg.acquire() as conn, conn.transaction():
        async for row in conn.cursor(sql, *args, prefetch=PREFETCH):
            entries += queue(pipe, row)
            queued += 1
            if queued >= PIPELINE_USERS or entries >= PIPELINE_ENTRIES:
                await flush()
    await flush()
    return replies
