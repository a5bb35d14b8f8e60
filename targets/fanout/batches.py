"""An author's followers as ready-to-send batches, read ahead from Postgres while Redis works on earlier ones.

Postgres does the encoding: each query returns up to ``chunk`` batches, every batch one comma-separated text of
follower ids (plus its last id and size), by keyset pagination over the ``(followee_id, follower_id)`` index. Python
passes the text through untouched to the Lua call that writes the timelines, so each follower is encoded once and
never becomes a Python object. A producer task keeps a few chunks queued, so the writer never waits on Postgres
between batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg

from targets.fanout.queue import Batch

# One keyset step down the index gives an array of up to $3 follower ids; it is cut into slices of $4, each sent as
# text (array slicing is cheaper than numbering rows with a window and grouping them).
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


async def follower_chunks(
    pg: asyncpg.Pool, author_id: int, after: int, batch_size: int, *, chunk: int = 16, depth: int = 4
) -> AsyncIterator[tuple[list[Batch], bool]]:
    """The author's followers with ids above ``after``, as (batches, is_last_chunk), in follower order.

    Each chunk holds up to ``chunk`` batches of ``batch_size``; the last chunk may be empty (when the followers end
    exactly at a chunk boundary). Up to ``depth`` chunks are fetched ahead of the consumer.
    """
    queue: asyncio.Queue[tuple[list[Batch], bool] | BaseException] = asyncio.Queue(depth)
    limit = batch_size * chunk

    async def produce() -> None:
        position = after
        try:
            while True:
                rows = await pg.fetch(_CHUNK_SQL, author_id, position, limit, batch_size)
                batches = [Batch(r["last"], r["n"], r["ids"]) for r in rows]
                done = sum(b.count for b in batches) < limit
                await queue.put((batches, done))
                if done:
                    return
                position = batches[-1].last
        except Exception as exc:  # handed to the consumer, which raises it
            await queue.put(exc)

    producer = asyncio.create_task(produce())
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item[1]:
                return
    finally:
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
