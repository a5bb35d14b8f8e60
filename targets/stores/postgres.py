"""The source of truth in Postgres: users, follows and posts, and the queries every strategy shares.

Strategies keep derived state (Redis timelines) on top of this; what is here is the same for all of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

import asyncpg

from targets.errors import InvalidOperation, UnknownUser
from targets.ids import EPOCH_MS, MAX_POST_ID, SEQUENCE_BITS
from targets.stores.mentions import mentioned_ids
from targets.stores.replicas import RoundRobin


@dataclass(frozen=True, slots=True)
class Post:
    """One post as a timeline returns it."""

    id: int
    author_id: int
    created_at: datetime
    body: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Post:
        """A post from a row with ``id, author_id, created_at, body`` columns."""
        return cls(row["id"], row["author_id"], row["created_at"], row["body"])


@dataclass(frozen=True, slots=True)
class NewPost:
    """A post just stored, with what delivering it needs."""

    post: Post
    #: The author's follower count when the post was stored.
    followers: int
    #: Users the post mentions who do not follow the author: they get it as a mention (followers get it anyway).
    mentioned: list[int] = field(default_factory=list)
    #: The post was stored earlier under the same idempotency key; nothing new was stored.
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class UserCounts:
    """Users (ascending ids) with their follower and followee counts, as parallel lists."""

    ids: list[int]
    followers: list[int]
    followees: list[int]

    @classmethod
    def from_rows(cls, rows: Sequence[asyncpg.Record]) -> UserCounts:
        """From rows with ``id, follower_count, followee_count`` columns."""
        return cls([r["id"] for r in rows], [r["follower_count"] for r in rows], [r["followee_count"] for r in rows])


@dataclass(frozen=True, slots=True)
class FollowChange:
    """The outcome of a follow or unfollow: whether the edge changed, and the followee's follower count around it."""

    changed: bool
    followers_before: int
    followers_after: int


class Authors(Enum):
    """Which followees a timeline query reads (hybrid splits them at the celebrity threshold, adaptive per edge)."""

    ALL = "all"
    CELEBRITIES = "celebrities"
    ORDINARY = "ordinary"
    #: All but the listed followees (adaptive's pushed edges; a bulk materialisation pushes every edge).
    EXCEPT = "except"
    #: Only the listed followees (adaptive's pulled edges).
    AMONG = "among"


# The post, and a row per user it mentions (existing users other than the author). Returns the new post's id and
# time, the author's follower count and the mentioned users the post must be delivered to as a mention: those who do
# not follow the author (followers get it as followers). $3: the mentioned ids.
_INSERT_POST = f"""
WITH new AS (SELECT {{id_default}} AS id),
post AS (
    INSERT INTO posts (id, author_id, created_at, body)
    SELECT new.id, $1, to_timestamp(((new.id >> {SEQUENCE_BITS}) + {EPOCH_MS}) / 1000.0), $2
    FROM new WHERE EXISTS (SELECT 1 FROM users WHERE id = $1)
    RETURNING id, created_at
),
"""

# The same with an idempotency key ($4): a post the author already stored under the key is not stored again (the row
# then comes from _STORED_UNDER_KEY).
_INSERT_POST_ONCE = f"""
WITH new AS (SELECT {{id_default}} AS id),
post AS (
    INSERT INTO posts (id, author_id, created_at, body, idempotency_key)
    SELECT new.id, $1, to_timestamp(((new.id >> {SEQUENCE_BITS}) + {EPOCH_MS}) / 1000.0), $2, $4
    FROM new WHERE EXISTS (SELECT 1 FROM users WHERE id = $1)
    ON CONFLICT (author_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, created_at
),
"""

_MENTIONS = """named AS (
    INSERT INTO mentions (user_id, post_id)
    SELECT u.id, post.id FROM post CROSS JOIN users u WHERE u.id = ANY($3::bigint[]) AND u.id <> $1
    RETURNING user_id
)
SELECT post.id, post.created_at, (SELECT follower_count FROM users WHERE id = $1) AS followers,
    ARRAY(SELECT n.user_id FROM named n WHERE NOT EXISTS (
        SELECT 1 FROM follows f WHERE f.follower_id = n.user_id AND f.followee_id = $1) ORDER BY n.user_id
    ) AS mentioned
FROM post"""

_STORED_UNDER_KEY = """
SELECT p.id, p.created_at, p.body, u.follower_count AS followers,
    ARRAY(SELECT m.user_id FROM mentions m WHERE m.post_id = p.id AND NOT EXISTS (
        SELECT 1 FROM follows f WHERE f.follower_id = m.user_id AND f.followee_id = p.author_id) ORDER BY m.user_id
    ) AS mentioned
FROM posts p JOIN users u ON u.id = p.author_id WHERE p.author_id = $1 AND p.idempotency_key = $2
"""


# One keyset step down the (followee_id, follower_id) index gives an array of up to $3 follower ids; it is cut into
# slices of $4, each sent as text (array slicing is cheaper than numbering rows with a window and grouping them).
_CHUNK_SQL = """
SELECT s.slice[cardinality(s.slice)] AS last, cardinality(s.slice) AS n, array_to_string(s.slice, ',') AS ids
FROM (
    SELECT array_agg(follower_id ORDER BY follower_id) AS ids FROM (
        SELECT follower_id FROM follows WHERE followee_id = $1 AND follower_id > $2 ORDER BY follower_id LIMIT $3
    ) f
) a
CROSS JOIN LATERAL generate_series(1, cardinality(a.ids), $4) i
CROSS JOIN LATERAL (SELECT a.ids[i:i + $4 - 1] AS slice) s
ORDER BY i
"""


def _timeline_sql(authors: Authors, count_newer: bool) -> str:
    """One round trip for a timeline page: the newest posts of the user's followees below ``before``, and (for a
    home timeline: ``ALL`` or ``ORDINARY`` followees) of the posts mentioning the user by accounts it does not follow.

    Parameters: $1 user, $2 before (exclusive), $3 page size, $4 timeline cap, $5 celebrity threshold, and for
    ``EXCEPT`` and ``AMONG`` $6 the listed followees.
    Each followee contributes at most $3 posts through the (author_id, id DESC) index (a LATERAL top-N), so the
    cost is bounded by followees x page size, never by the followees' whole history; mentions come the same way from
    the (user_id, post_id) key. With ``count_newer`` every row also carries how many of the timeline's posts are at
    or above ``before`` (at most $4), which places the page against the cap that push timelines have; a single NULL
    row stands for an empty page.
    """
    followee_filter = {
        Authors.ALL: "AND $5::int IS NOT NULL",  # every parameter must appear for Postgres to type it
        Authors.CELEBRITIES: "AND EXISTS (SELECT 1 FROM users u WHERE u.id = f.followee_id AND u.follower_count >= $5)",
        Authors.ORDINARY: "AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = f.followee_id"
        " AND u.follower_count >= $5)",
        Authors.EXCEPT: "AND $5::int IS NOT NULL AND f.followee_id <> ALL($6::bigint[])",
        Authors.AMONG: "AND $5::int IS NOT NULL AND f.followee_id = ANY($6::bigint[])",
    }[authors]
    # A followed author's posts come from the followees' side only (so none is counted twice), whatever they mention.
    mentions = authors not in (Authors.CELEBRITIES, Authors.AMONG)
    not_followed = "NOT EXISTS (SELECT 1 FROM follows x WHERE x.follower_id = $1 AND x.followee_id = p.author_id)"
    mentioned_page = f"""
        UNION ALL (
            SELECT p.id, p.author_id, p.created_at, p.body FROM mentions m JOIN posts p ON p.id = m.post_id
            WHERE m.user_id = $1 AND m.post_id < $2 AND {not_followed} ORDER BY m.post_id DESC LIMIT $3)"""
    page = f"""
        SELECT p.* FROM (
            (SELECT p.id, p.author_id, p.created_at, p.body
            FROM followees f CROSS JOIN LATERAL (
                SELECT id, author_id, created_at, body FROM posts
                WHERE author_id = f.followee_id AND id < $2 ORDER BY id DESC LIMIT $3
            ) p){mentioned_page if mentions else ""}
        ) p ORDER BY p.id DESC LIMIT $3"""
    followees = f"""followees AS (
        SELECT f.followee_id FROM follows f WHERE f.follower_id = $1 {followee_filter})"""
    if not count_newer:
        return f"WITH {followees} SELECT 0::bigint AS newer, page.* FROM ({page}) page WHERE $4::int > 0"
    mentioned_newer = f"""
            UNION ALL (
                SELECT 1 FROM mentions m JOIN posts p ON p.id = m.post_id
                WHERE m.user_id = $1 AND m.post_id >= $2 AND {not_followed} ORDER BY m.post_id DESC LIMIT $4)"""
    return f"""WITH {followees},
    newer AS (SELECT count(*) AS n FROM (
        (SELECT 1 FROM followees f CROSS JOIN LATERAL (
            SELECT 1 FROM posts WHERE author_id = f.followee_id AND id >= $2 ORDER BY id DESC LIMIT $4
        ) x){mentioned_newer if mentions else ""} LIMIT $4) y)
    SELECT newer.n AS newer, page.* FROM newer LEFT JOIN ({page}) page ON true"""


class Social:
    """Reads and writes of the source of truth; one instance per asyncpg pool."""

    def __init__(self, pg: asyncpg.Pool, id_default_sql: str, reads: RoundRobin | None = None) -> None:
        self.pg = pg
        #: Where timeline pages computed in Postgres are read (:meth:`timeline`, :meth:`user_posts`): the primary, or
        #: the replicas in turn (``--read-from replica``). Everything else reads the primary, which has the writes.
        self.reads: asyncpg.Pool | RoundRobin = reads or pg
        self._insert_post = _INSERT_POST.format(id_default=id_default_sql) + _MENTIONS
        self._insert_post_once = _INSERT_POST_ONCE.format(id_default=id_default_sql) + _MENTIONS

    # -- users ------------------------------------------------------------------------------------------------
    async def require_user(self, user_id: int) -> None:
        """Raise :class:`UnknownUser` unless the user exists."""
        if not await self.pg.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", user_id):
            raise UnknownUser(user_id)

    async def follower_count(self, user_id: int) -> int:
        """The user's follower count (raises :class:`UnknownUser`)."""
        count = await self.pg.fetchval("SELECT follower_count FROM users WHERE id = $1", user_id)
        if count is None:
            raise UnknownUser(user_id)
        return int(count)

    async def user_count(self) -> int:
        """How many users there are."""
        return int(await self.pg.fetchval("SELECT count(*) FROM users"))

    async def users(self) -> UserCounts:
        """Every user with follower and followee counts."""
        return UserCounts.from_rows(
            await self.pg.fetch("SELECT id, follower_count, followee_count FROM users ORDER BY id")
        )

    async def sample_users(self, n: int, seed: int) -> UserCounts:
        """About ``n`` users (all when there are no more), a repeatable Bernoulli sample: same seed, same users."""
        total = await self.user_count()
        if total <= n:
            return await self.users()
        percent = min(100.0, 100.0 * (1.2 * n + 100) / total)
        rows = await self.pg.fetch(
            "SELECT id, follower_count, followee_count FROM users TABLESAMPLE BERNOULLI ($1) REPEATABLE ($2)"
            " ORDER BY id LIMIT $3",
            percent,
            seed,
            n,
        )
        return UserCounts.from_rows(rows)

    async def most_followed(self, k: int) -> list[tuple[int, int]]:
        """The ``k`` most followed users as (id, followers), most followed first."""
        rows = await self.pg.fetch("SELECT id, follower_count FROM users ORDER BY follower_count DESC, id LIMIT $1", k)
        return [(r["id"], r["follower_count"]) for r in rows]

    async def totals(self) -> tuple[int, int]:
        """How many follow edges and posts there are."""
        follows = await self.pg.fetchval("SELECT count(*) FROM follows")
        posts = await self.pg.fetchval("SELECT count(*) FROM posts")
        return int(follows), int(posts)

    async def ping(self) -> None:
        """One trivial query (raises when Postgres does not answer)."""
        await self.pg.fetchval("SELECT 1")

    async def vacuum_analyze(self) -> None:
        """VACUUM ANALYZE the tables: fresh statistics and visibility maps, so plans are settled and autovacuum has
        nothing to start on in the middle of a measured run."""
        async with self.pg.acquire() as conn:
            await conn.execute("VACUUM (ANALYZE) users, follows, posts, mentions")

    async def add_users(self, user_ids: Sequence[int]) -> None:
        """Create users that do not exist yet (tests and small setups; bulk loads use COPY)."""
        await self.pg.execute(
            "INSERT INTO users (id) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING", list(user_ids)
        )

    # -- posts ------------------------------------------------------------------------------------------------
    async def create_post(self, author_id: int, body: str) -> NewPost:
        """Insert a post with a fresh time-ordered id, and the mentions in its body (:mod:`targets.stores.mentions`).

        Raises :class:`UnknownUser` for an unknown author.
        """
        row = await self.pg.fetchrow(self._insert_post, author_id, body, mentioned_ids(body))
        if row is None:
            raise UnknownUser(author_id)
        return NewPost(Post(row["id"], author_id, row["created_at"], body), int(row["followers"]), row["mentioned"])

    async def create_post_once(self, author_id: int, body: str, key: str) -> NewPost:
        """:meth:`create_post` at most once per (author, ``key``): a repeated call returns the post stored the first
        time (its body, not ``body``), marked ``replayed``."""
        row = await self.pg.fetchrow(self._insert_post_once, author_id, body, mentioned_ids(body), key)
        if row is not None:
            return NewPost(Post(row["id"], author_id, row["created_at"], body), int(row["followers"]), row["mentioned"])
        stored = await self.pg.fetchrow(_STORED_UNDER_KEY, author_id, key)
        if stored is None:
            raise UnknownUser(author_id)
        post = Post(stored["id"], author_id, stored["created_at"], stored["body"])
        return NewPost(post, int(stored["followers"]), stored["mentioned"], replayed=True)

    async def posts_by_id(self, post_ids: Sequence[int]) -> dict[int, Post]:
        """Posts by id (missing ids are absent from the result)."""
        rows = await self.pg.fetch(
            "SELECT id, author_id, created_at, body FROM posts WHERE id = ANY($1::bigint[])", list(post_ids)
        )
        return {r["id"]: Post.from_row(r) for r in rows}

    async def all_posts(self, chunk: int) -> AsyncIterator[list[Post]]:
        """Every post, streamed through a server-side cursor in lists of up to ``chunk``."""
        batch: list[Post] = []
        async with self.pg.acquire() as conn, conn.transaction():
            async for row in conn.cursor("SELECT id, author_id, created_at, body FROM posts", prefetch=chunk):
                batch.append(Post.from_row(row))
                if len(batch) >= chunk:
                    yield batch
                    batch = []
        if batch:
            yield batch

    async def newest_post_id(self) -> int:
        """The highest post id (0 with no posts): every post published later has a higher one."""
        return int(await self.pg.fetchval("SELECT coalesce(max(id), 0) FROM posts"))

    async def delete_posts_above(self, post_id: int) -> list[int]:
        """Delete every post with an id above ``post_id``; returns the deleted ids."""
        async with self.pg.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM mentions WHERE post_id > $1", post_id)
            rows = await conn.fetch("DELETE FROM posts WHERE id > $1 RETURNING id", post_id)
        return [r["id"] for r in rows]

    async def user_posts(self, author_id: int, limit: int, before: int | None = None) -> list[Post]:
        """The author's own posts below ``before`` (all when None), newest first, at most ``limit`` (a page served to
        a reader: from a replica with ``--read-from replica``)."""
        rows = await self.reads.fetch(
            "SELECT id, author_id, created_at, body FROM posts WHERE author_id = $1 AND id < $2 "
            "ORDER BY id DESC LIMIT $3",
            author_id,
            MAX_POST_ID + 1 if before is None else before,
            limit,
        )
        return [Post.from_row(r) for r in rows]

    async def recent_post_ids(self, author_id: int, limit: int) -> list[int]:
        """The author's newest ``limit`` post ids, newest first."""
        rows = await self.pg.fetch(
            "SELECT id FROM posts WHERE author_id = $1 ORDER BY id DESC LIMIT $2", author_id, limit
        )
        return [r["id"] for r in rows]

    async def recent_posts_of(self, author_ids: Sequence[int], limit: int) -> dict[int, list[int]]:
        """Each existing author's newest ``limit`` post ids, newest first (empty for an author without posts)."""
        rows = await self.pg.fetch(
            "SELECT u.id, ARRAY(SELECT p.id FROM posts p WHERE p.author_id = u.id ORDER BY p.id DESC LIMIT $2) AS ids"
            " FROM users u WHERE u.id = ANY($1::bigint[])",
            list(author_ids),
            limit,
        )
        return {r["id"]: list(r["ids"]) for r in rows}

    async def mentioned_by(self, author_id: int, user_ids: Sequence[int]) -> list[int]:
        """Those of ``user_ids`` that a post by ``author_id`` mentions (ascending)."""
        rows = await self.pg.fetch(
            "SELECT DISTINCT m.user_id FROM mentions m JOIN posts p ON p.id = m.post_id"
            " WHERE m.user_id = ANY($2::bigint[]) AND p.author_id = $1 ORDER BY m.user_id",
            author_id,
            list(user_ids),
        )
        return [r["user_id"] for r in rows]

    # -- follows ----------------------------------------------------------------------------------------------
    async def celebrities_followed(self, user_ids: Sequence[int], threshold: int) -> dict[int, list[int]]:
        """For each existing user, the followees with at least ``threshold`` followers (ascending ids)."""
        rows = await self.pg.fetch(
            "SELECT u.id, ARRAY(SELECT f.followee_id FROM follows f JOIN users c ON c.id = f.followee_id"
            " WHERE f.follower_id = u.id AND c.follower_count >= $2 ORDER BY f.followee_id) AS ids"
            " FROM users u WHERE u.id = ANY($1::bigint[])",
            list(user_ids),
            threshold,
        )
        return {r["id"]: list(r["ids"]) for r in rows}

    async def followees_of(self, user_ids: Sequence[int]) -> dict[int, list[int]]:
        """For each existing user, every account it follows (ascending ids)."""
        return await self.celebrities_followed(user_ids, 0)  # every account has at least 0 followers

    async def follow(self, follower_id: int, followee_id: int) -> FollowChange:
        """Add the edge follower -> followee and keep both users' counts; a repeated follow changes nothing."""
        return await self._change_follow(follower_id, followee_id, +1)

    async def unfollow(self, follower_id: int, followee_id: int) -> FollowChange:
        """Remove the edge follower -> followee; unfollowing someone not followed changes nothing."""
        return await self._change_follow(follower_id, followee_id, -1)

    async def _change_follow(self, follower_id: int, followee_id: int, delta: int) -> FollowChange:
        if follower_id == followee_id:
            raise InvalidOperation(f"user {follower_id} cannot follow or unfollow itself")
        async with self.pg.acquire() as conn, conn.transaction():
            counts = dict(
                await conn.fetch(
                    "SELECT id, follower_count FROM users WHERE id = ANY($1::bigint[]) FOR UPDATE",
                    [follower_id, followee_id],
                )
            )
            for uid in (follower_id, followee_id):
                if uid not in counts:
                    raise UnknownUser(uid)
            before = counts[followee_id]
            if delta > 0:
                edge = await conn.fetchval(
                    "INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
                    follower_id,
                    followee_id,
                )
            else:
                edge = await conn.fetchval(
                    "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2 RETURNING 1",
                    follower_id,
                    followee_id,
                )
            if edge is None:
                return FollowChange(False, before, before)
            await conn.execute(
                "UPDATE users SET follower_count = follower_count + $2 WHERE id = $1", followee_id, delta
            )
            await conn.execute(
                "UPDATE users SET followee_count = followee_count + $2 WHERE id = $1", follower_id, delta
            )
            return FollowChange(True, before, before + delta)

    async def follower_batches(self, author_id: int, batch_size: int) -> AsyncIterator[list[int]]:
        """The author's followers in batches of ``batch_size``, by keyset pagination over the followee index.

        Never holds more than one batch in memory, however many followers the author has.
        """
        after = -1
        # One connection for the whole walk: each pool release costs a reset round trip.
        async with self.pg.acquire() as conn:
            while True:
                rows = await conn.fetch(
                    "SELECT follower_id FROM follows WHERE followee_id = $1 AND follower_id > $2"
                    " ORDER BY follower_id LIMIT $3",
                    author_id,
                    after,
                    batch_size,
                )
                if not rows:
                    return
                batch = [r[0] for r in rows]
                yield batch
                if len(batch) < batch_size:
                    return
                after = batch[-1]

    async def distinct_followers(self, account_ids: Sequence[int]) -> int:
        """How many users follow at least one of these accounts."""
        return int(
            await self.pg.fetchval(
                "SELECT count(DISTINCT follower_id) FROM follows WHERE followee_id = ANY($1::bigint[])",
                list(account_ids),
            )
        )

    async def follower_sample(self, account_ids: Sequence[int], n: int, seed: int) -> list[int]:
        """A seeded sample of up to ``n`` users who follow at least one of these accounts (same seed, same users)."""
        rows = await self.pg.fetch(
            "SELECT follower_id FROM (SELECT DISTINCT follower_id FROM follows WHERE followee_id = ANY($1::bigint[])) f"
            " ORDER BY md5(follower_id::text || $2) LIMIT $3",
            list(account_ids),
            str(seed),
            n,
        )
        return [r["follower_id"] for r in rows]

    async def follower_id_chunk(self, author_id: int, after: int, limit: int, batch_size: int) -> list[asyncpg.Record]:
        """Up to ``limit`` followers with ids above ``after``, cut into batches of ``batch_size`` encoded by Postgres.

        Each row is one batch: ``last`` (its highest id), ``n`` (its size) and ``ids`` (comma-separated text, handed
        untouched to the fan-out's Lua call, so a follower id never becomes a Python object).
        """
        return await self.pg.fetch(_CHUNK_SQL, author_id, after, limit, batch_size)

    # -- timelines --------------------------------------------------------------------------------------------
    async def timeline(
        self,
        user_id: int,
        limit: int,
        before: int | None,
        cap: int,
        *,
        authors: Authors = Authors.ALL,
        threshold: int = 0,
        listed: Sequence[int] = (),
        replica: bool = False,
    ) -> tuple[list[Post], int]:
        """A timeline page computed from the source of truth, in one round trip.

        Returns the page (newest first, ids below ``before``) and how many of the chosen followees' posts are at
        or above ``before``, counted up to ``cap``. The caller applies the cap: a timeline holds its newest
        ``cap`` posts, as a capped push timeline does. ``listed``: the followees ``EXCEPT`` and ``AMONG`` name.
        ``replica``: a page served to a reader, which a replica may answer (``--read-from replica``); a rebuild
        reads the primary, so that it misses no post the fan-out counts on it to find.
        """
        count_newer = before is not None
        listing = [list(listed)] if authors in (Authors.EXCEPT, Authors.AMONG) else []
        rows = await (self.reads if replica else self.pg).fetch(
            _timeline_sql(authors, count_newer),
            user_id,
            MAX_POST_ID + 1 if before is None else before,
            limit,
            cap,
            threshold,
            *listing,
        )
        newer = int(rows[0]["newer"]) if rows else 0
        posts = [Post.from_row(r) for r in rows if r["id"] is not None]
        return posts, newer
