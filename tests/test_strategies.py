"""Each strategy's public API on its own: publish, follow, unfollow, timelines, and the documented errors."""

from __future__ import annotations

import pytest

from targets.errors import InvalidOperation, UnknownUser
from targets.ids import post_id_time_ms
from targets.stores.connections import Stores
from targets.stores.pages import HybridRead
from targets.strategies.base import MAX_PAGE
from targets.strategies.hybrid import READ_ATTEMPTS, HybridStrategy
from targets.strategies.registry import STRATEGIES, make_strategy

ALL = sorted(STRATEGIES)


@pytest.fixture
async def small(stores: Stores) -> Stores:
    """Users 1..5; 1 follows 2 and 3. Fan-out runs inside publish (tests/test_fanout*.py cover the async mode)."""
    strategy = make_strategy("pull", stores)
    await strategy.social.add_users(range(1, 6))
    await strategy.follow(1, 2)
    await strategy.follow(1, 3)
    return Stores(stores.settings.with_(fanout_mode="sync"), stores.redis, stores.pg, stores.counters)


@pytest.mark.parametrize("name", ALL)
async def test_publish_then_read_newest_first(small: Stores, name: str) -> None:
    strategy = make_strategy(name, small)
    first = await strategy.publish(2, "hello")
    second = await strategy.publish(3, "world")
    await strategy.publish(4, "not followed")
    page = await strategy.home_timeline(1)
    assert [(p.id, p.author_id, p.body) for p in page] == [(second.post_id, 3, "world"), (first.post_id, 2, "hello")]
    assert second.post_id > first.post_id
    # created_at is the time encoded in the id, to the millisecond.
    assert int(page[0].created_at.timestamp() * 1000) == post_id_time_ms(second.post_id)
    assert await strategy.home_timeline(1, limit=1, before=second.post_id) == page[1:]


@pytest.mark.parametrize("name", ALL)
async def test_follow_merges_and_unfollow_removes(small: Stores, name: str) -> None:
    strategy = make_strategy(name, small)
    old = await strategy.publish(4, "before the follow")
    assert await strategy.home_timeline(1) == []
    assert await strategy.follow(1, 4) is True
    assert await strategy.follow(1, 4) is False  # idempotent
    assert [p.id for p in await strategy.home_timeline(1)] == [old.post_id]
    assert await strategy.unfollow(1, 4) is True
    assert await strategy.unfollow(1, 4) is False
    assert await strategy.home_timeline(1) == []


@pytest.mark.parametrize("name", ALL)
async def test_entries_written_are_counted(small: Stores, name: str) -> None:
    strategy = make_strategy(name, small)
    for follower in (3, 4, 5):
        await strategy.follow(follower, 2)
    receipt = await strategy.publish(2, "to four followers")  # 1 already follows 2
    # The default hybrid threshold is far above 4; adaptive pushes edges to an account that had not posted yet.
    expected = {"push": 4, "hybrid": 4, "adaptive": 4, "pull": 0}[name]
    assert receipt.entries_written == expected


async def test_hybrid_does_not_push_celebrity_posts(stores: Stores) -> None:
    hybrid = make_strategy("hybrid", Stores(stores.settings.with_(celebrity_threshold=2), stores.redis, stores.pg))
    await hybrid.social.add_users(range(1, 5))
    for follower in (2, 3, 4):
        await hybrid.follow(follower, 1)
    receipt = await hybrid.publish(1, "celebrity post")
    assert receipt.entries_written == 0
    assert [p.id for p in await hybrid.home_timeline(2)] == [receipt.post_id]  # pulled at read time


@pytest.mark.parametrize("name", ALL)
async def test_user_timeline_is_the_accounts_own_posts_newest_first(small: Stores, name: str) -> None:
    strategy = make_strategy(name, small)
    own = [(await strategy.publish(2, f"mine {i}")).post_id for i in range(3)]
    await strategy.publish(3, "someone else's")
    page = await strategy.user_timeline(2)
    assert [(p.id, p.author_id) for p in page] == [(i, 2) for i in reversed(own)]
    assert [p.body for p in page] == ["mine 2", "mine 1", "mine 0"]
    first = await strategy.user_timeline(2, limit=2)
    assert first == page[:2] and await strategy.user_timeline(2, limit=2, before=first[-1].id) == page[2:]
    assert await strategy.user_timeline(5) == []  # an account without posts
    with pytest.raises(UnknownUser):
        await strategy.user_timeline(99)
    with pytest.raises(InvalidOperation, match="page size"):
        await strategy.user_timeline(2, limit=0)


@pytest.mark.parametrize("name", ALL)
async def test_errors(small: Stores, name: str) -> None:
    strategy = make_strategy(name, small)
    with pytest.raises(UnknownUser, match="user 99 does not exist"):
        await strategy.home_timeline(99)
    with pytest.raises(UnknownUser):
        await strategy.publish(99, "nobody")
    with pytest.raises(UnknownUser):
        await strategy.follow(1, 99)
    with pytest.raises(InvalidOperation, match="itself"):
        await strategy.follow(1, 1)
    for limit in (0, -1, MAX_PAGE + 1):
        with pytest.raises(InvalidOperation, match="page size"):
            await strategy.home_timeline(1, limit=limit)
    with pytest.raises(InvalidOperation, match="not a post id"):
        await strategy.home_timeline(1, before=-5)
    # A user who exists but follows nobody has an empty timeline, not an error.
    assert await strategy.home_timeline(5) == []


async def test_hybrid_reads_from_postgres_when_redis_keeps_missing(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A celebrity set that vanishes as fast as it is rebuilt: after READ_ATTEMPTS the page comes from Postgres."""
    view = Stores(stores.settings.with_(celebrity_threshold=2, fanout_mode="sync"), stores.redis, stores.pg)
    hybrid, pull = make_strategy("hybrid", view), make_strategy("pull", view)
    await hybrid.social.add_users(range(1, 5))
    for follower in (2, 3):
        await hybrid.follow(follower, 1)  # 1 is a celebrity
    await hybrid.follow(2, 4)
    posts = [await hybrid.publish(author, f"p{n}") for n, author in enumerate((1, 4, 1))]
    assert isinstance(hybrid, HybridStrategy)
    misses = 0

    async def always_missing(user_id: int, limit: int, before: int | None, *, again: bool = False) -> HybridRead:
        nonlocal misses
        misses += 1
        return HybridRead(celebrities_missing=True)

    monkeypatch.setattr(hybrid.pages, "hybrid", always_missing)
    page = [p.id for p in await hybrid.home_timeline(2, limit=2)]
    assert misses == READ_ATTEMPTS
    assert page == [p.id for p in await pull.home_timeline(2, limit=2)] == [posts[2].post_id, posts[1].post_id]
