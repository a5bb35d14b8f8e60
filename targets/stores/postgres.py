"""The source of truth in Postgres: users, follows and posts, and the queries every strategy shares.

Strategies keep derived state (Redis timelines) on top of this; what is here is the same for all of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import asyncpg

from targets.errors import InvalidOperation, UnknownUser
from targets.ids import EPOCH_MS, MAX_POST_ID, SEQUENCE_BITS


@dataclass(frozen=True, slots=True)
class Post:
    """One post as a timeline returns it."""

    id: int
    author_id: int
    created_at: datetime
    body: str


@dataclass(frozen=True, slots=True)
class FollowChange:
    """The outcome of a follow or unfollow: whether the edge changed, and the followee's follower count around it."""

    changed: bool
    followers_before: int
    followers_after: int


class Authors(Enum):
    """Which followees a timeline query reads (hybrid splits them at the celebrity threshold)."""

    ALL = "all"
    CELEBRITIES = "celebrities"
    ORDINARY = "ordinary"


_INSERT_POST = f"""
WITH new AS (SELECT {{id_default}} AS id)
INSERT INTO posts (id, author_id, created_at, body)
SELECT new.id, $1, to_timestamp(((new.id >> {SEQUENCE_BITS}) + {EPOCH_MS}) / 1000.0), $2
FROM new WHERE EXISTS (SELECT 1 FROM users WHERE id = $1)
RETURNING id, created_at, (SELECT follower_count FROM users WHERE id = $1) AS followers
"""


def _timeline_sql(authors: Authors, count_newer: bool) -> str:
    """One round trip for a timeline page: the newest posts of the user's followees below ``before``.

    Parameters: $1 user, $2 before (exclusive), $3 page size, $4 timeline cap, $5 celebrity threshold.
    Each followee contributes at most $3 posts through the (author_id, id DESC) index (a LATERAL top-N), so the
    cost is bounded by followees x page size, never by the followees' whole history. With ``count_newer`` every
    row also carries how many of the timeline's posts are at or above ``before`` (at most $4), which places the
    page against the cap that push timelines have; a single NULL row stands for an empty page.
    """
    followee_filter = {
        Authors.ALL: "AND $5::int IS NOT NULL",  # every parameter must appear for Postgres to type it
        Authors.CELEBRITIES: "AND EXISTS (SELECT 1 FROM users u WHERE u.id = f.followee_id AND u.follower_count >= $5)",
        Authors.ORDINARY: "AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = f.followee_id"
        " AND u.follower_count >= $5)",
    }[authors]
    page = """
        SELECT p.id, p.author_id, p.created_at, p.body
        FROM followees f CROSS JOIN LATERAL (
            SELECT id, author_id, created_at, body FROM posts
            WHERE author_id = f.followee_id AND id < $2 ORDER BY id DESC LIMIT $3
        ) p ORDER BY p.id DESC LIMIT $3"""
    followees = f"""followees AS (
        SELECT f.followee_id FROM follows f WHERE f.follower_id = $1 {followee_filter})"""
    if not count_newer:
        return f"WITH {followees} SELECT 0::bigint AS newer, page.* FROM ({page}) page WHERE $4::int > 0"
    return f"""WITH {followees},
    newer AS (SELECT count(*) AS n FROM (
        SELECT 1 FROM followees f CROSS JOIN LATERAL (
            SELECT 1 FROM posts WHERE author_id = f.followee_id AND id >= $2 ORDER BY id DESC LIMIT $4
        ) x LIMIT $4) y)
    SELECT newer.n AS newer, page.* FROM newer LEFT JOIN ({page}) page ON true"""


class Social:
    """Reads and writes of the source of truth; one instance per asyncpg pool."""

    def __init__(self, pg: asyncpg.Pool, id_default_sql: str) -> None:
        self.pg = pg
        self._insert_post = _INSERT_POST.format(id_default=id_default_sql)

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

    async def add_users(self, user_ids: Sequence[int]) -> None:
        """Create users that do not exist yet (tests and small setups; bulk loads use COPY)."""
        await self.pg.execute(
            "INSERT INTO users (id) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING", list(user_ids)
        )

    # -- posts ------------------------------------------------------------------------------------------------
    async def create_post(self, author_id: int, body: str) -> tuple[Post, int]:
        """Insert a post with a fresh time-ordered id; returns it and the author's follower count.

        Raises :class:`UnknownUser` for an unknown author.
        """
        row = await self.pg.fetchrow(self._insert_post, author_id, body)
        if row is None:
            raise UnknownUser(author_id)
        return Post(row["id"], author_id, row["created_at"], body), int(row["followers"])

    async def posts_by_id(self, post_ids: Sequence[int]) -> dict[int, Post]:
        """Posts by id (missing ids are absent from the result)."""
        rows = await self.pg.fetch(
            "SELECT id, author_id, created_at, body FROM posts WHERE id = ANY($1::bigint[])", list(post_ids)
        )
        return {r["id"]: Post(r["id"], r["author_id"], r["created_at"], r["body"]) for r in rows}

    async def recent_post_ids(self, author_id: int, limit: int) -> list[int]:
        """The author's newest ``limit`` post ids, newest first."""
        rows = await self.pg.fetch(
            "SELECT id FROM posts WHERE author_id = $1 ORDER BY id DESC LIMIT $2", author_id, limit
        )
        return [r["id"] for r in rows]

    # -- follows ----------------------------------------------------------------------------------------------
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
    ) -> tuple[list[Post], int]:
        """A timeline page computed from the source of truth, in one round trip.

        Returns the page (newest first, ids below ``before``) and how many of the chosen followees' posts are at
        or above ``before``, counted up to ``cap``. The caller applies the cap: a timeline holds its newest
        ``cap`` posts, as a capped push timeline does.
        """
        count_newer = before is not None
        rows = await self.pg.fetch(
            _timeline_sql(authors, count_newer),
            user_id,
            MAX_POST_ID + 1 if before is None else before,
            limit,
            cap,
            threshold,
        )
        newer = int(rows[0]["newer"]) if rows else 0
        posts = [Post(r["id"], r["author_id"], r["created_at"], r["body"]) for r in rows if r["id"] is not None]
        return posts, newer
