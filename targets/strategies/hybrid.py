"""Hybrid: push for ordinary accounts, pull for celebrities (follower count at or above a threshold).

A celebrity's posts are never written into timelines; a read merges the home timeline with the recent posts of
the celebrities the user follows. When an account crosses the threshold its posts move with it: crossing up
removes them from its followers' timelines, crossing down merges them in, so nothing is lost or duplicated.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from targets.stores.postgres import Authors, FollowChange, Post
from targets.strategies.base import capped_page
from targets.strategies.push import PushStrategy


class HybridStrategy(PushStrategy):
    """Push below ``celebrity_threshold`` followers, pull at or above it, merged at read time."""

    name: ClassVar[str] = "hybrid"
    home_authors: ClassVar[Authors | None] = Authors.ORDINARY

    def is_celebrity(self, followers: int) -> bool:
        """Whether an account with this many followers is read by pull rather than pushed."""
        return followers >= self.threshold

    def pushes(self, author_followers: int) -> bool:
        """Only ordinary accounts' posts are written into timelines."""
        return not self.is_celebrity(author_followers)

    async def on_follow(self, follower_id: int, followee_id: int, change: FollowChange) -> None:
        """Merge an ordinary followee; when this follow makes a celebrity, take its posts out of timelines."""
        if not self.is_celebrity(change.followers_before) and self.is_celebrity(change.followers_after):
            await self._move_author(followee_id, to_pull=True)
        else:
            await super().on_follow(follower_id, followee_id, change)

    async def on_unfollow(self, follower_id: int, followee_id: int, change: FollowChange) -> None:
        """Unmerge an ordinary followee; when this unfollow ends a celebrity, push its posts to its followers."""
        if self.is_celebrity(change.followers_before) and not self.is_celebrity(change.followers_after):
            await self._move_author(followee_id, to_pull=False)
        else:
            await super().on_unfollow(follower_id, followee_id, change)

    async def _move_author(self, author_id: int, *, to_pull: bool) -> None:
        """Move an author's posts out of (or into) all its followers' timelines, batch by batch."""
        async for batch in self.social.follower_batches(author_id, self.batch_size):
            if to_pull:
                await self.unmerge_author(batch, author_id)
            else:
                for user_id in batch:
                    await self.merge_author(user_id, author_id)

    async def read(self, user_id: int, limit: int, before: int | None) -> list[Post]:
        """The home timeline (Redis) and the followed celebrities' posts (Postgres), fetched concurrently."""
        home_task = self._home(user_id, limit, before)
        celeb_task = self.social.timeline(
            user_id, limit, before, self.cap, authors=Authors.CELEBRITIES, threshold=self.threshold
        )
        (home_ids, home_newer), (celeb_posts, celeb_newer) = await asyncio.gather(home_task, celeb_task)
        # Merge by id, newest first; an id in both (mid-transition) counts once.
        merged: dict[int, Post | None] = dict.fromkeys(home_ids)
        merged.update({p.id: p for p in celeb_posts})
        page_ids = sorted(merged, reverse=True)
        newer = min(home_newer, self.cap) + celeb_newer
        chosen = capped_page(page_ids, newer, limit, self.cap)  # type: ignore[arg-type]
        cached = {p.id: p for p in await self.hydrate([i for i in chosen if merged[i] is None])}
        return [merged[i] or cached[i] for i in chosen if merged[i] is not None or i in cached]

    async def _home(self, user_id: int, limit: int, before: int | None) -> tuple[list[int], int]:
        """Page of home-timeline ids and how many entries lie at or above ``before``."""
        if before is None:
            return await self.timelines.page(user_id, limit, None), 0
        ids, newer = await asyncio.gather(
            self.timelines.page(user_id, limit, before), self.timelines.count_at_or_above(user_id, before)
        )
        return ids, newer
