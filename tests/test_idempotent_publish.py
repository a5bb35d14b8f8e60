"""Publishing is safe to retry: a delivery that fails after the post was stored names the post, and a retry with the
same idempotency key stores nothing new and completes the delivery (over HTTP: tests/test_service.py)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from graphs.star import load_star
from targets.errors import DeliveryFailed
from targets.stores.connections import Stores
from targets.strategies.push import PushStrategy
from tests.test_cli_errors import unused_port
from tests.test_fanout import holders

AUTHOR, FOLLOWERS = 0, range(1, 101)


async def posts_under(stores: Stores, key: str) -> int:
    return await stores.pg.fetchval("SELECT count(*) FROM posts WHERE idempotency_key = $1", key)


async def test_a_failed_delivery_names_the_stored_post_and_a_keyed_retry_delivers_it_once(stores: Stores) -> None:
    await load_star(stores.pg, stores.settings.schema, AUTHOR, FOLLOWERS)
    sync = stores.settings.with_(fanout_mode="sync")
    # The same Postgres, but a Redis that is not there: the post is stored, its delivery fails.
    away = aioredis.Redis(host="127.0.0.1", port=unused_port(), socket_connect_timeout=1)
    try:
        broken = PushStrategy(Stores(sync, away, stores.pg))
        with pytest.raises(DeliveryFailed) as failed:
            await broken.publish(AUTHOR, "first try", key="k-1")
    finally:
        await away.aclose()
    stored = failed.value.post_id
    assert f"post {stored} was stored" in str(failed.value) and "Idempotency-Key" in str(failed.value)
    assert await posts_under(stores, "k-1") == 1
    push = PushStrategy(Stores(sync, stores.redis, stores.pg))
    assert await holders(stores, "push", FOLLOWERS, stored) == 0
    retry = await push.publish(AUTHOR, "second try", key="k-1")
    assert retry.replayed and retry.post.id == stored and retry.post.body == "first try"
    assert retry.entries_written == len(FOLLOWERS)  # the retry delivered what the failure had not
    assert await holders(stores, "push", FOLLOWERS, stored) == len(FOLLOWERS)
    again = await push.publish(AUTHOR, "third try", key="k-1")
    assert again.replayed and again.entries_written == 0  # delivering twice writes nothing twice
    assert await posts_under(stores, "k-1") == 1
    other = await push.publish(AUTHOR, "another post", key="k-2")
    assert not other.replayed and other.post.id != stored
    plain = await push.publish(AUTHOR, "no key")
    assert not plain.replayed
