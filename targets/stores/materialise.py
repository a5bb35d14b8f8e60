"""Bulk materialisation of the strategies' derived state (Redis home timelines and more) from the source of truth.

One set-based query per strategy computes every user's newest ``timeline_cap`` posts of the accounts they follow
(hybrid: only followees below ``celebrity_threshold`` followers, as :mod:`targets.strategies.hybrid` pushes them),
streamed through a server-side cursor into batched Lua calls whose keys are declared (on a Redis Cluster, one call
per shard's batch: its keys share a slot). An owner whose timelines hold only ordinary authors
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
from dataclasses import dataclass, field

from redis.commands.core import AsyncScript

from targets.stores import authors as author_timelines
from targets.stores.activity import Activity, activity_pattern
from targets.stores.celebrities import CelebritySets
from targets.stores.connections import Stores
from targets.stores.post_cache import POST_CACHE_PATTERN
from targets.stores.postgres import Authors
from targets.stores.timelines import ALL_DERIVED_PATTERN, SENTINEL, Timelines, owner_pattern

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

# KEYS: timelines; ARGV[1] the cap, ARGV[1 + i] the comma-separated post ids of KEYS[i]: one variadic ZADD per
# timeline, trimmed to the cap when it grew (a rebuild merged into timelines that fan-out writes to as well). Keys are
# declared, so a Redis Cluster runs it when they share a slot (one shard's). Returns the entries added (Redis's own
# ZADD replies).
_ZADD_TIMELINES = (
    _ZADD_IDS
    + """
local keep, added = -(tonumber(ARGV[1]) + 1), 0
for i = 1, #KEYS do
  local n = zadd_ids(KEYS[i], ARGV[i + 1])
  if n > 0 then redis.call('ZREMRANGEBYRANK', KEYS[i], 0, keep) end
  added = added + n
end
return added
"""
)

# KEYS: (author timeline, celebrity set) of each user; ARGV[1] the sentinel, then (its own post ids, the celebrities
# it follows) of each user, comma-separated: both keys are written with the sentinel, so every user's are
# materialised, even empty.
_WRITE_READER_STATE = (
    _ZADD_IDS
    + """
local sentinel = ARGV[1]
for i = 1, #KEYS, 2 do
  redis.call('ZADD', KEYS[i], 0, sentinel)
  zadd_ids(KEYS[i], ARGV[i + 1])
  redis.call('SADD', KEYS[i + 1], sentinel)
  for id in string.gmatch(ARGV[i + 2], '%d+') do redis.call('SADD', KEYS[i + 1], id) end
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
        await Activity(stores.redis, stores.settings.prefix, name, stores.tags).mark_seen(users)


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

    timelines = Timelines(stores.redis, s.prefix, owner, s.timeline_cap, tags=stores.tags)
    script = stores.redis.register_script(_ZADD_TIMELINES)
    calls = _Calls(script, [str(s.timeline_cap)], lambda user: [timelines.key(user)], stores.tags, written)
    return await calls.stream(stores, timelines_sql(authors), args)


async def _materialise_reader_state(stores: Stores, owner: str, authors: Authors) -> None:
    """Every account's author timeline and every user's celebrity set (sentinel included: known, even if empty); for
    adaptive the set of pulled followees, empty at first (every edge pushed)."""
    s = stores.settings
    threshold = s.celebrity_threshold if authors is Authors.ORDINARY else NOBODY
    own = author_timelines.AuthorTimelines(stores.redis, s.prefix, owner, s.timeline_cap, stores.tags)
    celebrities = CelebritySets(stores.redis, s.prefix, owner, stores.tags)
    script = stores.redis.register_script(_WRITE_READER_STATE)
    calls = _Calls(script, [SENTINEL], lambda user: [own.key(user), celebrities.key(user)], stores.tags)
    await calls.stream(stores, READER_STATE_SQL, [s.timeline_cap, threshold])


@dataclass
class _Buffer:
    """One Lua call being filled: its keys, its arguments after the head, the users and entries in it."""

    keys: list[str] = field(default_factory=list)
    argv: list[object] = field(default_factory=list)
    users: int = 0
    entries: int = 0


class _Calls:
    """Streams a query's rows (a user id, texts passed on untouched, and their entry count last) into Lua calls.

    Each call declares the rows' users' keys (``keys_of(user)``) and gets ``head`` and then the rows' texts, about
    ``CALL_ENTRIES`` entries' worth. On a Redis Cluster (``tags``) the rows are grouped by the users' shard, so each
    call's keys share one slot. ``IN_FLIGHT`` calls run while the cursor reads on; ``written(users)`` is told as each
    call returns.
    """

    def __init__(
        self,
        script: AsyncScript,
        head: list[object],
        keys_of: Callable[[int], list[str]],
        tags: Sequence[str] | None,
        written: Callable[[int], None] | None = None,
    ) -> None:
        self.script, self.head, self.keys_of, self.written = script, head, keys_of, written
        self.shards = len(tags) if tags is not None else 1
        self.slots = asyncio.Semaphore(IN_FLIGHT)
        self.tasks: list[asyncio.Task[None]] = []
        self.replies: list[int] = []
        self.failed: list[BaseException] = []

    async def stream(self, stores: Stores, sql: str, args: Sequence[object]) -> int:
        """Run the query and send its rows; returns the sum of the calls' replies."""
        buffers: dict[int, _Buffer] = {}
        try:
            async with stores.pg.acquire() as conn, conn.transaction():
                async for row in conn.cursor(sql, *args, prefetch=PREFETCH):
                    user, *values, n = row
                    buffer = buffers.setdefault(user % self.shards, _Buffer())
                    buffer.keys += self.keys_of(user)
                    buffer.argv += values
                    buffer.users += 1
                    buffer.entries += n
                    if buffer.entries >= CALL_ENTRIES:
                        await self._send(buffers.pop(user % self.shards))
            for buffer in buffers.values():
                await self._send(buffer)
            await asyncio.gather(*self.tasks)
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        return sum(self.replies)

    async def _send(self, buffer: _Buffer) -> None:
        await self.slots.acquire()
        if self.failed:  # stop reading as soon as a call failed
            self.slots.release()
            raise self.failed[0]
        self.tasks.append(asyncio.create_task(self._call(buffer)))

    async def _call(self, buffer: _Buffer) -> None:
        try:
            self.replies.append(int(await self.script(keys=buffer.keys, args=[*self.head, *buffer.argv])))
        except BaseException as exc:
            self.failed.append(exc)
            raise
        finally:
            self.slots.release()
        if self.written:
            self.written(buffer.users)
