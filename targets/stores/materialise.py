"""Bulk materialisation of the strategies' derived state (Redis home timelines and more) from the source of truth.

One set-based query per strategy computes every user's newest ``timeline_cap`` posts of the accounts they follow
(hybrid: only followees below ``celebrity_threshold`` followers, as :mod:`targets.strategies.hybrid` pushes them),
streamed through a server-side cursor into batched Lua calls. An owner whose timelines hold only ordinary authors
(hybrid) reads celebrities at read time, so one more streamed query gives every account its author timeline
(:mod:`targets.stores.authors`) and every user its set of followed celebrities (:mod:`targets.stores.celebrities`).
This is the one bulk path: the graph loader calls it after seeding posts, and the benchmark calls it to reset derived
state between strategies. Its result is what each strategy's own incremental path (publish, follow, unfollow) leaves
behind; tests/test_graph_rebuild.py checks it.

Speed comes from the fan-out's recipe: Postgres encodes each user's post ids as one comma-separated text, Python
passes the texts through untouched (no per-entry object, no per-entry argument to pack), and one Lua call per batch
of about ``CALL_ENTRIES`` entries parses them and ZADDs each timeline with one variadic command; ``IN_FLIGHT`` calls
are kept going while the cursor fetches the next rows, so Postgres and Redis work at the same time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from redis.commands.core import AsyncScript

from targets.errors import FanoutError
from targets.stores import authors as author_timelines
from targets.stores.activity import Activity, activity_pattern
from targets.stores.celebrities import CelebritySets
from targets.stores.connections import Stores
from targets.stores.post_cache import POST_CACHE_PATTERN
from targets.stores.postgres import Authors
from targets.stores.timelines import ALL_DERIVED_PATTERN, SENTINEL, home_key_prefix, owner_pattern

#: The key (relative to the prefix) marking that derived state was built in this Redis; see
#: :mod:`targets.stores.recovery`. No ``{``: no derived-state pattern matches it.
BUILT_MARKER = "derived:built"
#: Timeline entries per Lua call: big enough that calls are few, small enough that one call holds Redis for only a
#: few milliseconds (a call is atomic, so other clients wait behind it).
CALL_ENTRIES = 10_000
#: Lua calls kept in flight while the cursor fetches on.
IN_FLIGHT = 4
#: Rows the server-side cursor fetches per round trip.
PREFETCH = 5_000
#: Owners that read some followees from author timelines: they get author timelines and sets of those followees.
READER_STATE = (Authors.ORDINARY, Authors.EXCEPT)
#: A follower count no account reaches (int4): with it, the reader state lists no celebrity.
NOBODY = 2**31 - 1

# ZADD the comma-separated ids of ARGV[j] into a sorted set (member = score = id), 1000 at a time (Lua's unpack has a
# stack limit); returns the entries added. Shared by both scripts below.
_ZADD_IDS = """
local function zadd_ids(key, ids)
  local args, n, added = {}, 0, 0
  for id in string.gmatch(ids, '%d+') do
    args[n + 1], args[n + 2] = id, id
    n = n + 2
    if n == 2000 then
      added = added + redis.call('ZADD', key, unpack(args, 1, n))
      n = 0
    end
  end
  if n > 0 then added = added + redis.call('ZADD', key, unpack(args, 1, n)) end
  return added
end
"""

# ARGV[1] the timeline key prefix, ARGV[2] the cap, then (user id, comma-separated post ids) pairs: one variadic
# ZADD per timeline, trimmed to the cap when it grew (a rebuild merged into timelines that fan-out writes to as well).
# Returns the entries added (Redis's own ZADD replies).
_ZADD_TIMELINES = (
    _ZADD_IDS
    + """
local prefix, keep, added = ARGV[1], -(tonumber(ARGV[2]) + 1), 0
for i = 3, #ARGV, 2 do
  local key = prefix .. ARGV[i] .. '}'
  local n = zadd_ids(key, ARGV[i + 1])
  if n > 0 then redis.call('ZREMRANGEBYRANK', key, 0, keep) end
  added = added + n
end
return added
"""
)

# ARGV[1] author-timeline key prefix, ARGV[2] celebrity-set key prefix, ARGV[3] the sentinel, then (user id, its own
# post ids, the celebrities it follows) triples, comma-separated: both keys are written with the sentinel, so every
# user's are materialised, even empty.
_WRITE_READER_STATE = (
    _ZADD_IDS
    + """
local authors, celebs, sentinel = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV, 3 do
  local author = authors .. ARGV[i] .. '}'
  redis.call('ZADD', author, 0, sentinel)
  zadd_ids(author, ARGV[i + 1])
  local set = celebs .. ARGV[i] .. '}'
  redis.call('SADD', set, sentinel)
  for id in string.gmatch(ARGV[i + 2], '%d+') do redis.call('SADD', set, id) end
end
return 0
"""
)

_FOLLOWEE_FILTER = {
    Authors.ALL: "",
    # A bulk materialisation pushes every edge; adaptive decides edges on their readers' reads from then on.
    Authors.EXCEPT: "",
    # As Social.timeline's ORDINARY filter: a followee is ordinary unless it has at least $2 followers.
    Authors.ORDINARY: "AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = f.followee_id AND u.follower_count >= $2)",
    Authors.CELEBRITIES: "AND EXISTS (SELECT 1 FROM users u WHERE u.id = f.followee_id AND u.follower_count >= $2)",
}


def timelines_sql(authors: Authors) -> str:
    """Every user's timeline as (follower_id, post ids newest first as comma-separated text, how many), at most $1
    posts each, ordered by user.

    Only an author's newest $1 posts can be in any timeline, so those are ranked once per author, joined to the
    follow edges and ranked again per follower: two sorts, no per-user query. Posts mentioning a user by an account
    it does not follow join them (as :meth:`Social.timeline` reads them); a followed author's come through the edge.
    """
    return f"""
    WITH recent AS (
        SELECT author_id, id FROM (
            SELECT author_id, id, row_number() OVER (PARTITION BY author_id ORDER BY id DESC) AS r FROM posts
        ) ranked WHERE r <= $1
    ), edges AS (
        SELECT f.follower_id, r.id FROM follows f JOIN recent r ON r.author_id = f.followee_id
        WHERE true {_FOLLOWEE_FILTER[authors]}
        UNION ALL
        SELECT m.user_id, m.post_id FROM mentions m JOIN posts p ON p.id = m.post_id
        WHERE NOT EXISTS (SELECT 1 FROM follows x WHERE x.follower_id = m.user_id AND x.followee_id = p.author_id)
    ), entries AS (
        SELECT follower_id, id, row_number() OVER (PARTITION BY follower_id ORDER BY id DESC) AS r FROM edges
    )
    SELECT follower_id, array_to_string(array_agg(id ORDER BY id DESC), ',') AS ids, count(*) AS n
    FROM entries WHERE r <= $1 GROUP BY follower_id ORDER BY follower_id"""


#: Every user's own newest $1 post ids (newest first) and the followees with at least $2 followers, as comma-separated
#: texts, and how many entries the two hold, ordered by user. Celebrities are few, so their follow edges are found from
#: the followee side and grouped once.
READER_STATE_SQL = """
WITH celebs AS (
    SELECT f.follower_id, array_to_string(array_agg(f.followee_id ORDER BY f.followee_id), ',') AS ids, count(*) AS n
    FROM follows f JOIN users c ON c.id = f.followee_id WHERE c.follower_count >= $2 GROUP BY f.follower_id
)
SELECT u.id, array_to_string(p.ids, ',') AS posts, coalesce(c.ids, '') AS celebs,
       cardinality(p.ids) + coalesce(c.n, 0) AS n
FROM users u
CROSS JOIN LATERAL (SELECT ARRAY(SELECT id FROM posts WHERE author_id = u.id ORDER BY id DESC LIMIT $1) AS ids) p
LEFT JOIN celebs c ON c.follower_id = u.id ORDER BY u.id"""


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
    celebrity sets. ``on_users(owner, n)`` is told as each batch of ``n`` users' home timelines is written (for
    progress bars). The count is home-timeline entries, from Redis's own ZADD replies, not a computed figure.
    ``clear=False`` skips deleting the old state first (each delete is a SCAN of the whole Redis database), for a
    caller that has just cleared it.
    """
    if stores.tags is not None and owners:
        raise FanoutError(
            "bulk materialisation (a graph load with posts, `fanout rebuild`, `fanout bench`) does not run on a Redis "
            "Cluster yet (its scripts build keys of many shards): rebuild users one by one through the strategy API, "
            "or run it on one Redis server"
        )
    if clear:
        for name in owners:
            await clear_derived(stores, [name], post_cache=False)
    # Every step runs side by side: each query sorts everything before its first row, and while one step's Postgres
    # sorts, another's rows are being written by Redis (one after the other, neither server overlapped the other).
    async with asyncio.TaskGroup() as steps:
        homes = [steps.create_task(_materialise_home(stores, n, a, on_users)) for n, a in owners.items()]
        for name, authors in owners.items():
            if authors in READER_STATE:
                steps.create_task(_materialise_reader_state(stores, name, authors))
    written = sum(home.result() for home in homes)
    await mark_active(stores, owners)
    await mark_built(stores)  # beside the state: a Redis that comes back without it has lost what was built
    return written


async def mark_active(stores: Stores, owners: Iterable[str]) -> None:
    """With an active window, mark every user active for these owners: fresh timelines lack nothing, so every user
    starts active and goes inactive after a window without reads."""
    if not stores.settings.active_window_s:
        return
    users = (await stores.social.users()).ids
    for name in owners:
        await Activity(stores.redis, stores.settings.prefix, name).mark_seen(users)


async def restart_activity(stores: Stores, owners: Iterable[str]) -> None:
    """Forget what these owners learnt from reads and posts (their activity hashes: rates, last reads), then mark
    every user active as a rebuild does: derived state put back from a copy starts where a rebuilt one starts."""
    names = list(owners)
    for name in names:
        await stores.delete_keys(activity_pattern(name))
    await mark_active(stores, names)


def marker_key(stores: Stores) -> str:
    """The full key of the marker that derived state was built in this Redis (see :mod:`targets.stores.recovery`)."""
    return stores.settings.prefix + BUILT_MARKER


async def mark_built(stores: Stores) -> None:
    """Record that the derived state in this Redis is complete (its value: when, in Unix seconds)."""
    await stores.redis.set(marker_key(stores), f"{time.time():.3f}")


async def _materialise_home(
    stores: Stores, owner: str, authors: Authors, on_users: Callable[[str, int], None] | None
) -> int:
    s = stores.settings
    args: list[object] = [s.timeline_cap] + ([s.celebrity_threshold] if _FOLLOWEE_FILTER[authors] else [])

    def written(users: int) -> None:
        if on_users:
            on_users(owner, users)

    script = stores.redis.register_script(_ZADD_TIMELINES)
    head = [home_key_prefix(s.prefix, owner), str(s.timeline_cap)]
    return await _stream(stores, timelines_sql(authors), args, script, head, written)


async def _materialise_reader_state(stores: Stores, owner: str, authors: Authors) -> None:
    """Every account's author timeline and every user's celebrity set (sentinel included: known, even if empty); for
    adaptive the set of pulled followees, empty at first (every edge pushed)."""
    s = stores.settings
    threshold = s.celebrity_threshold if authors is Authors.ORDINARY else NOBODY
    authors = author_timelines.AuthorTimelines(stores.redis, s.prefix, owner, s.timeline_cap)
    celebrities = CelebritySets(stores.redis, s.prefix, owner)
    script = stores.redis.register_script(_WRITE_READER_STATE)
    head = [authors.key_prefix, celebrities.key_prefix, SENTINEL]
    await _stream(stores, READER_STATE_SQL, [s.timeline_cap, threshold], script, head)


async def _stream(
    stores: Stores,
    sql: str,
    args: Sequence[object],
    script: AsyncScript,
    head: list[str],
    written: Callable[[int], None] | None = None,
) -> int:
    """Stream the query's rows (a user id, texts passed on untouched, and their entry count last) into Lua calls.

    Each call gets ``head`` and then the rows' values but the count, about ``CALL_ENTRIES`` entries' worth;
    ``IN_FLIGHT`` calls run while the cursor reads on. ``written(users)`` is told as each call returns. Returns the
    sum of the calls' replies.
    """
    slots = asyncio.Semaphore(IN_FLIGHT)
    tasks: list[asyncio.Task[None]] = []
    replies: list[int] = []
    failed: list[BaseException] = []

    async def call(argv: list[object], users: int) -> None:
        try:
            replies.append(int(await script(args=argv)))
        except BaseException as exc:
            failed.append(exc)
            raise
        finally:
            slots.release()
        if written:
            written(users)

    async def send(argv: list[object], users: int) -> None:
        await slots.acquire()
        if failed:  # stop reading as soon as a call failed
            slots.release()
            raise failed[0]
        tasks.append(asyncio.create_task(call(argv, users)))

    argv: list[object] = list(head)
    users = entries = 0
    try:
        async with stores.pg.acquire() as conn, conn.transaction():
            async for row in conn.cursor(sql, *args, prefetch=PREFETCH):
                *values, n = row
                argv += values
                users += 1
                entries += n
                if entries >= CALL_ENTRIES:
                    await send(argv, users)
                    argv, users, entries = list(head), 0, 0
        if users:
            await send(argv, users)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return sum(replies)
