"""Push publish to 100,000 followers: round trips grow with followers / batch, and the count is what Redis holds."""

from __future__ import annotations

import math

from graphs.star import load_star
from targets.stores.connections import Stores
from targets.strategies.push import PushStrategy

FOLLOWERS = 100_000
BATCH = 1_000
AUTHOR = 0


async def test_push_publish_is_batched_and_counted(stores: Stores) -> None:
    await load_star(stores.pg, stores.settings.schema, AUTHOR, range(1, FOLLOWERS + 1))  # by COPY
    # Synchronous fan-out: the publish call itself writes every batch (the async worker is tested in test_fanout*.py).
    view = Stores(
        stores.settings.with_(fanout_batch=BATCH, fanout_mode="sync"), stores.redis, stores.pg, stores.counters
    )
    push = PushStrategy(view)
    await push.publish(AUTHOR, "warm-up")  # loads the Lua script and prepares the statements once
    before = stores.counters.snapshot()
    receipt = await push.publish(AUTHOR, "to everyone")
    sent = stores.counters.since(before)

    batches = math.ceil(FOLLOWERS / BATCH)
    # Redis: one Lua call per batch plus the post cache write. Postgres: one keyset query per batch plus the last,
    # empty page, the insert, and the pool's reset after each of the two connections. Never one per follower.
    assert batches <= sent.redis_round_trips <= batches + 2
    assert batches <= sent.pg_queries <= batches + 4

    # The receipt counts what Redis replied it added; check it against what is in Redis.
    present = 0
    for start in range(1, FOLLOWERS + 1, 10_000):
        async with stores.redis.pipeline(transaction=False) as pipe:
            for user in range(start, min(start + 10_000, FOLLOWERS + 1)):
                pipe.zscore(push.timelines.key(user), receipt.post_id)
            present += sum(score is not None for score in await pipe.execute())
    assert receipt.entries_written == present == FOLLOWERS
