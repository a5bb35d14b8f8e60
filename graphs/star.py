"""A star graph in the harness's Postgres schema: one author followed by many users, loaded by COPY.

The fan-out tests and ``fanout perf fanout`` need an account with 10^5-10^6 followers in seconds; COPY of the
users and follows rows is the fast path (no per-row INSERT), and the indexes may be built after the rows are in.
"""

from __future__ import annotations

import asyncpg

from targets.stores.schema import index_ddl


async def load_star(
    pg: asyncpg.Pool, schema: str, author_id: int, follower_ids: range, *, indexes: bool = False
) -> None:
    """Add ``author_id`` and its followers to ``users`` and the edges to ``follows`` (ids must be new to the schema).

    With ``indexes`` the secondary indexes are (re)built afterwards, for a schema created without them.
    """
    async with pg.acquire() as conn, conn.transaction():
        await conn.copy_records_to_table(
            "users",
            schema_name=schema,
            columns=["id", "follower_count", "followee_count"],
            records=[(author_id, len(follower_ids), 0), *((f, 0, 1) for f in follower_ids)],
        )
        await conn.copy_records_to_table(
            "follows",
            schema_name=schema,
            columns=["follower_id", "followee_id"],
            records=((f, author_id) for f in follower_ids),
        )
        if indexes:
            for statement in index_ddl(schema):
                await conn.execute(statement)
    async with pg.acquire() as conn:
        # Sets the visibility map too, so follower scans are index-only.
        await conn.execute(f"VACUUM ANALYZE {schema}.users, {schema}.follows")
