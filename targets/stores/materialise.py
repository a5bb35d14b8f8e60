"""Bulk materialisation of the strategies' derived state (Redis home timelines) from the source of truth.

One set-based query per strategy computes every user's newest ``timeline_cap`` posts of the accounts they follow
(hybrid: only followees below ``celebrity_threshold`` followers, as :mod:`targets.strategies.hybrid` pushes them),
streamed through a server-side cursor into pipelined ZADDs. This is the one bulk path: the graph loader calls it after
seeding posts, and the benchmark calls it to reset derived state between strategies. Its result is what each strategy's
own incremental path (publish, follow, unfollow) leaves behind; tests/test_graph_rebuild.py checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from targets.stores.connections import Stores
from targets.stores.post_cache import POST_CACHE_PATTERN
from targets.stores.postgres import Authors
from targets.stores.timelines import ALL_HOME_PATTERN, Timelines, home_pattern

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


async def clear_derived(stores: Stores, owners: Iterable[str] | None = None, *, post_cache: bool = True) -> int:
    """Delete home timelines (these owners', or every owner's when None) and the post cache; returns keys removed.

    Each pattern costs one SCAN of the whole Redis database, so "every owner" is one pattern, not one per strategy.
    """
    patterns = [ALL_HOME_PATTERN] if owners is None else [home_pattern(owner) for owner in owners]
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
    """Replace these owners' home timelines with ones computed in bulk from Postgres; returns entries written.

    ``owners`` maps each timeline owner (a strategy, see ``targets.strategies.registry.timeline_owners``) to which
    followees' posts its timelines hold. ``on_users(owner, n)`` is told as each pipeline of
    ``n`` users is written (for progress bars). The count is Redis's own ZADD replies, not a computed figure.
    ``clear=False`` skips deleting the old timelines first (each delete is a SCAN of the whole Redis database),
    for a caller that has just cleared them.
    """
    written = 0
    for name, authors in owners.items():
        if clear:
            await clear_derived(stores, [name], post_cache=False)
        timelines = Timelines(stores.redis, stores.settings.prefix, name, stores.settings.timeline_cap)
        written += await _materialise(stores, timelines, authors, on_users)
    return written


async def _materialise(
    stores: Stores, timelines: Timelines, authors: Authors, on_users: Callable[[str, int], None] | None
) -> int:
    s = stores.settings
    args: list[object] = [s.timeline_cap] + ([s.celebrity_threshold] if authors is not Authors.ALL else [])
    written = 0
    pipe = stores.redis.pipeline(transaction=False)
    queued = entries = 0

    async def flush() -> None:
        nonlocal written, queued, entries, pipe
        if queued:
            written += sum(await pipe.execute())
            if on_users:
                on_users(timelines.owner, queued)
            pipe = stores.redis.pipeline(transaction=False)
            queued = entries = 0

    async with stores.pg.acquire() as conn, conn.transaction():
        async for user_id, ids in conn.cursor(timelines_sql(authors), *args, prefetch=PREFETCH):
            pipe.zadd(timelines.key(user_id), {str(i): i for i in ids})
            queued += 1
            entries += len(ids)
            if queued >= PIPELINE_USERS or entries >= PIPELINE_ENTRIES:
                await flush()
    await flush()
    return written
