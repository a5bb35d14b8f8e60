"""What a benchmark run changed in the source of truth, so that it can be undone and every strategy starts alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.bindings.receipts import net_churn
from targets.fanout.queue import FanoutQueue
from targets.stores.connections import Stores
from targets.stores.post_cache import PostCache
from targets.stores.postgres import Social
from targets.strategies.registry import timeline_owners

#: Posts whose cache and fan-out accounting keys are removed per UNLINK.
UNLINK_CHUNK = 5_000


@dataclass
class RunChanges:
    """What a run changed in the source of truth, so it can be undone: posts above a mark, follow churn."""

    #: Every post with an id above this was published by the run.
    post_mark: int
    #: Follow edges the run changed, in order: (+1 follow added, -1 removed), follower, followee.
    churn: list[tuple[int, int, int]] = field(default_factory=list)
    #: The run's posts are in these stores (False when it drove a service in another namespace: nothing to delete).
    posts_here: bool = True

    @classmethod
    async def mark(cls, stores: Stores) -> RunChanges:
        """Start recording: note the newest post id now."""
        return cls(await stores.social.newest_post_id())

    async def undo(self, stores: Stores, social: Social) -> int:
        """Delete the run's posts (rows and cache entries) and revert its churn; returns posts deleted."""
        for (follower, followee), delta in net_churn(self.churn).items():
            if delta > 0:
                await social.unfollow(follower, followee)
            else:
                await social.follow(follower, followee)
        self.churn.clear()
        if not self.posts_here:
            return 0
        ids: Sequence[int] = await social.delete_posts_above(self.post_mark)
        cache = PostCache.of(stores)
        queue = FanoutQueue(stores.redis, stores.settings)
        # Jobs a run cut short left undelivered must not deliver deleted posts later.
        await queue.discard_posts(set(ids))
        for start in range(0, len(ids), UNLINK_CHUNK):
            chunk = ids[start : start + UNLINK_CHUNK]
            keys = [cache.key(i) for i in chunk]
            for owner in timeline_owners():  # the posts' fan-out accounting, if they were queued
                keys += [
                    k
                    for i in chunk
                    for k in (queue.report_key(owner, i), queue.lag_key(owner, i), queue.progress_key(owner, i))
                ]
            await stores.redis.unlink(*keys)
        return len(ids)
