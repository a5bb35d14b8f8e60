"""An author's followers as ready-to-send batches, read ahead from Postgres while Redis works on earlier ones.

Postgres does the encoding (:meth:`Social.follower_id_chunk`): each query returns up to ``chunk`` batches, every batch
one comma-separated text of follower ids (plus its last id and size), by keyset pagination over the ``(followee_id,
follower_id)`` index. Python passes the text through untouched to the Lua call that writes the timelines, so each
follower is encoded once and never becomes a Python object. A producer task keeps a few chunks queued, so the writer
never waits on Postgres between batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from targets.fanout.queue import Batch
from targets.stores.postgres import Social


async def follower_chunks(
    social: Social, author_id: int, after: int, batch_size: int, *, chunk: int = 16, depth: int = 4
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
                rows = await social.follower_id_chunk(author_id, position, limit, batch_size)
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
