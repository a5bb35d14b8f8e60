"""The correctness oracle: every strategy's pages must equal the pages computed from Postgres.

:func:`check_oracle` compares one strategy with pull after a benchmark run. :class:`Ensemble` keeps several strategies
over one source of truth for the property-based oracle tests: each operation is applied to Postgres once, then to every
strategy's derived state through its hooks, so that all strategies see the same posts (same ids) and the same follow
graph. This is how the correctness oracle compares push, pull and hybrid page for page.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from targets.stores.connections import Stores
from targets.stores.postgres import Post
from targets.strategies.base import Receipt, Strategy
from targets.strategies.pull import PullStrategy
from targets.strategies.registry import STRATEGIES, make_strategy

if TYPE_CHECKING:
    from bench.bindings.factory import PageSource


class Ensemble:
    """Push, pull and hybrid (or any subset) kept in step over one namespace."""

    def __init__(self, stores: Stores, names: Iterable[str] = STRATEGIES) -> None:
        self.strategies: dict[str, Strategy] = {name: make_strategy(name, stores) for name in names}
        self.social = next(iter(self.strategies.values())).social

    async def publish(self, author_id: int, body: str) -> dict[str, Receipt]:
        """Store one post and let every strategy deliver it; returns each strategy's receipt."""
        new = await self.social.create_post(author_id, body)
        return {
            name: Receipt(new.post, await s.distribute(new.post, new.followers, new.mentioned))
            for name, s in self.strategies.items()
        }

    async def follow(self, follower_id: int, followee_id: int) -> bool:
        """Add one follow edge and update every strategy's derived state."""
        change = await self.social.follow(follower_id, followee_id)
        if change.changed:
            for s in self.strategies.values():
                await s.on_follow(follower_id, followee_id, change)
        return change.changed

    async def unfollow(self, follower_id: int, followee_id: int) -> bool:
        """Remove one follow edge and update every strategy's derived state."""
        change = await self.social.unfollow(follower_id, followee_id)
        if change.changed:
            for s in self.strategies.values():
                await s.on_unfollow(follower_id, followee_id, change)
        return change.changed

    async def pages(self, user_id: int, limit: int, before: int | None = None) -> dict[str, list[Post]]:
        """The same page from every strategy."""
        return {name: await s.home_timeline(user_id, limit, before) for name, s in self.strategies.items()}


async def check_oracle(
    strategy: Strategy | PageSource,
    user_ids: Sequence[int],
    users: int,
    page_size: int,
    seed: int,
    *,
    stores: Stores | None = None,
) -> dict[str, Any]:
    """Compare the strategy's first two pages with Postgres's (pull's) for a seeded sample of ``users`` users.

    ``strategy`` may be any page source (a service read over HTTP); Postgres is then that of ``stores``. The
    reference reads the primary; when the strategy reads replicas, they first replay the primary's WAL up to now.
    """
    stores = stores or strategy.stores  # type: ignore[union-attr]
    assert stores is not None
    await stores.wait_replicas()
    reference = PullStrategy(stores.view(read_from="primary"))
    sample = random.Random(f"oracle:{seed}").sample(list(user_ids), min(users, len(user_ids)))
    mismatched = []
    for user in sample:
        got = [p.id for p in await strategy.home_timeline(user, page_size)]
        want = [p.id for p in await reference.home_timeline(user, page_size)]
        if got == want and got:
            got += [p.id for p in await strategy.home_timeline(user, page_size, got[-1])]
            want += [p.id for p in await reference.home_timeline(user, page_size, want[-1])]
        if got != want:
            mismatched.append(user)
    return {
        "verdict": "pass" if not mismatched else "fail",
        "users_checked": len(sample),
        "mismatched_users": mismatched[:50],
        "detail": "first two pages of each sampled user compared with the pages computed from Postgres",
    }
