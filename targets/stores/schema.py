"""The harness's Postgres schema: users, follows (indexed both ways), posts (indexed by author, newest first) and the
users each post mentions (by user, newest first).

Tables carry no foreign keys so that bulk loads (COPY) stay fast; the targets check that users exist themselves.
Indexes are separate from the tables so a bulk load can build them after the rows are in.
"""

from __future__ import annotations

import asyncpg

from targets.ids import id_default_sql


def table_ddl(schema: str) -> list[str]:
    """Statements that create the schema's sequence and tables (idempotent)."""
    post_id_default = id_default_sql(schema)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"CREATE SEQUENCE IF NOT EXISTS {schema}.post_seq",
        f"""CREATE TABLE IF NOT EXISTS {schema}.users (
            id bigint PRIMARY KEY,
            follower_count integer NOT NULL DEFAULT 0,
            followee_count integer NOT NULL DEFAULT 0
        )""",
        f"""CREATE TABLE IF NOT EXISTS {schema}.follows (
            follower_id bigint NOT NULL,
            followee_id bigint NOT NULL,
            PRIMARY KEY (follower_id, followee_id)
        )""",
        f"""CREATE TABLE IF NOT EXISTS {schema}.posts (
            id bigint PRIMARY KEY DEFAULT {post_id_default},
            author_id bigint NOT NULL,
            created_at timestamptz NOT NULL,
            body text NOT NULL,
            idempotency_key text
        )""",
        # A namespace created before the column existed gets it (nullable: no table rewrite).
        f"ALTER TABLE {schema}.posts ADD COLUMN IF NOT EXISTS idempotency_key text",
        # An @<user id> in a post's body (see targets.stores.mentions): the post is delivered to that user's home
        # timeline as well. Keyed by user: a timeline reads a user's mentions newest first.
        f"""CREATE TABLE IF NOT EXISTS {schema}.mentions (
            user_id bigint NOT NULL,
            post_id bigint NOT NULL,
            PRIMARY KEY (user_id, post_id)
        )""",
    ]


def index_ddl(schema: str) -> list[str]:
    """Statements that create the secondary indexes (idempotent): follows by followee, posts by author then id."""
    return [
        f"CREATE INDEX IF NOT EXISTS follows_followee_idx ON {schema}.follows (followee_id, follower_id)",
        f"CREATE INDEX IF NOT EXISTS posts_author_id_idx ON {schema}.posts (author_id, id DESC)",
        # A publish retried with the same key stores one post (only posts published with a key are indexed).
        f"CREATE UNIQUE INDEX IF NOT EXISTS posts_idempotency_idx ON {schema}.posts (author_id, idempotency_key)"
        " WHERE idempotency_key IS NOT NULL",
        # Who a post mentions: a replayed publish, an undo of a run's posts, an author's mentions of one user.
        f"CREATE INDEX IF NOT EXISTS mentions_post_idx ON {schema}.mentions (post_id)",
    ]


async def create_schema(conn: asyncpg.Connection, schema: str, *, indexes: bool = True) -> None:
    """Create the schema, its tables and (unless ``indexes`` is False) its indexes, if they do not exist."""
    # Two sessions creating the same schema at once race on the catalog; an advisory lock keyed by name serialises.
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"fanout-schema:{schema}")
        for statement in table_ddl(schema) + (index_ddl(schema) if indexes else []):
            await conn.execute(statement)
