"""Hybrid: push for ordinary accounts, pull for celebrities (follower count at or above a threshold), as Twitter did.

A celebrity's posts are never written into timelines. Every account keeps a capped author timeline in Redis (its own
newest post ids, :mod:`targets.stores.authors`) and every user a set of the celebrities it follows
(:mod:`targets.stores.celebrities`), so a read is one Redis call: the home timeline merged with those celebrities'
author timelines, cut to the timeline cap (:mod:`targets.stores.pages`). Postgres is read only on a cache miss: a
celebrity set or author timeline that is not materialised (a missing key) is rebuilt from Postgres, then read again.

When an account crosses the threshold its posts move with it: crossing up removes them from its followers' timelines
and adds it to their celebrity sets, crossing down merges them in and removes it, so nothing is lost or duplicated.
A cache fill races with writes as any cache does: a follow or post that lands between a miss's Postgres read and its
Redis write is missing until that key is rebuilt again (the oracle runs operations one at a time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from targets.errors import UnknownUser
from targets.stores.authors import AuthorTimelines
from targets.stores.celebrities import CelebritySets
from targets.stores.connections import Stores
from targets.stores.post_cache import PostCache
from targets.stores.postgres import Authors, FollowChange, Post
from targets.strategies.base import WrittenHook, capped_page
from targets.strategies.push import PushStrategy

#: Reads of one page before giving up on Redis: an inactive reader's, a miss of the celebrity set, then of author
#: timelines, then a hit.
READ_ATTEMPTS = 4


class HybridStrategy(PushStrategy):
    """Push below ``celebrity_threshold`` followers, pull at or above it, merged at read time from Redis."""

    name: ClassVar[str] = "hybrid"
    home_authors: ClassVar[Authors | None] = Authors.ORDINARY

    def __init__(self, stores: Stores, *, on_written: WrittenHook | None = None) -> None:
        super().__init__(stores, on_written=on_written)
        self.authors = AuthorTimelines(stores.redis, stores.settings.prefix, self.name, self.cap, stores.tags)
        self.celebrities = CelebritySets(stores.redis, stores.settings.prefix, self.name, stores.tags)

    def is_celebrity(self, followers: int) -> bool:
        """Whether an account with this many followers is read by pull rather than pushed."""
        return followers >= self.threshold

    def pushes(self, author_followers: int) -> bool:
        """Only ordinary accounts' posts are written into timelines."""
        return not self.is_celebrity(author_followers)

    # -- write path -------------------------------------------------------------------------------------------
    async def store_post(self, post: Post) -> None:
        """Cache the post and add it to its author's timeline (every account's, celebrity or not), in one call."""
        await self.authors.cache_and_add(self.posts.key(post.id), PostCache.encode(post), post.id, post.author_id)

    # -- follow graph changes ---------------------------------------------------------------------------------
    async def on_follow(self, follower_id: int, followee_id: int, change: FollowChange) -> None:
        """Merge an ordinary followee or note a celebrity; when this follow makes a celebrity, move its posts."""
        if not self.is_celebrity(change.followers_before) and self.is_celebrity(change.followers_after):
            await self._move_author(followee_id, to_pull=True)  # the new follower is among its followers
        elif self.is_celebrity(change.followers_after):
            await self.celebrities.add([follower_id], followee_id)
            await self.rebuild_mentioned(followee_id, [follower_id])  # its mentions now come from its author timeline
        else:
            await super().on_follow(follower_id, followee_id, change)

    async def on_unfollow(self, follower_id: int, followee_id: int, change: FollowChange) -> None:
        """Unmerge an ordinary followee or forget a celebrity; when this unfollow ends a celebrity, push its posts."""
        if self.is_celebrity(change.followers_before):
            await self.celebrities.remove([follower_id], followee_id)
            await self.rebuild_mentioned(followee_id, [follower_id])  # its mentions of the user stay, in the timeline
            if not self.is_celebrity(change.followers_after):
                await self._move_author(followee_id, to_pull=False)
        else:
            await super().on_unfollow(follower_id, followee_id, change)

    async def _move_author(self, author_id: int, *, to_pull: bool) -> None:
        """Move an author across the threshold for all its followers, batch by batch.

        The celebrity sets change on the side that keeps the posts visible: a read in between sees them twice
        (merged once), never not at all.
        """
        post_ids = await self.social.recent_post_ids(author_id, self.cap)
        async for batch in self.social.follower_batches(author_id, self.batch_size):
            if to_pull:
                await self.celebrities.add(batch, author_id)
                await self.unmerge_posts(batch, author_id, post_ids)
            else:
                for user_id in batch:
                    await self.timelines.merge(user_id, post_ids)
                await self.celebrities.remove(batch, author_id)

    async def rebuild_mentioned(self, author_id: int, user_ids: Sequence[int]) -> None:
        """Rebuild the home timelines of those of ``user_ids`` the author mentioned (a follow change moved where its
        posts mentioning them come from: the author timeline while they follow it as a celebrity, else their own)."""
        await self.rebuild_home(await self.social.mentioned_by(author_id, user_ids))

    # -- read path --------------------------------------------------------------------------------------------
    async def read(self, user_id: int, limit: int, before: int | None) -> list[Post]:
        """One Redis call on a hit; a miss rebuilds what is missing from Postgres and reads again."""
        for attempt in range(READ_ATTEMPTS):
            found = await self.pages.hybrid(user_id, limit, before, again=attempt > 0)
            if found.page is not None:
                if found.page.due:
                    await self.reconsider(user_id)
                return await self.page_posts(found.page)
            if found.inactive:
                await self.regenerate(user_id)
            elif found.celebrities_missing:
                await self.rebuild_celebrities([user_id], require=user_id)
            else:
                await self.rebuild_authors(found.authors_missing)
        # Keys vanishing as fast as they are rebuilt (a Redis evicting under memory pressure): answer from Postgres.
        return await self.read_from_postgres(user_id, limit, before)

    async def read_from_postgres(self, user_id: int, limit: int, before: int | None) -> list[Post]:
        """The same page from the home timeline and the followed celebrities' posts in Postgres (the fallback)."""
        home_task = self._home(user_id, limit, before)
        celeb_task = self.social.timeline(
            user_id, limit, before, self.cap, replica=True, **self.pulled_posts(await self.pulled(user_id))
        )
        (home_ids, home_newer), (celeb_posts, celeb_newer) = await asyncio.gather(home_task, celeb_task)
        merged: dict[int, Post | None] = dict.fromkeys(home_ids)
        merged.update({p.id: p for p in celeb_posts})
        page_ids = sorted(merged, reverse=True)
        newer = min(home_newer, self.cap) + celeb_newer
        chosen = capped_page(page_ids, newer, limit, self.cap)  # type: ignore[arg-type]
        cached = {p.id: p for p in await self.hydrate([i for i in chosen if merged[i] is None])}
        return [merged[i] or cached[i] for i in chosen if merged[i] is not None or i in cached]

    def pulled_posts(self, pulled: Sequence[int]) -> dict[str, Any]:
        """How a read from Postgres finds the posts of the followees read from author timelines: the celebrities."""
        return {"authors": Authors.CELEBRITIES, "threshold": self.threshold}

    async def reconsider(self, user_id: int) -> None:
        """Decide a reader's follow edges again when its read says they are due (nothing to decide here: hybrid
        decides by the author's follower count, which follow changes keep current)."""

    async def _home(self, user_id: int, limit: int, before: int | None) -> tuple[list[int], int]:
        """Page of home-timeline ids and how many entries lie at or above ``before``."""
        if before is None:
            return await self.timelines.page(user_id, limit, None), 0
        ids, newer = await asyncio.gather(
            self.timelines.page(user_id, limit, before), self.timelines.count_at_or_above(user_id, before)
        )
        return ids, newer

    # -- derived state ----------------------------------------------------------------------------------------
    async def rebuild(self, user_ids: Iterable[int]) -> int:
        """Recompute these users' home timelines, celebrity sets and author timelines; returns home entries written."""
        users = list(user_ids)
        written = await self.rebuild_home(users)
        await self.rebuild_celebrities(users)
        await self.rebuild_authors(users)
        return written

    async def rebuild_celebrities(self, user_ids: Sequence[int], *, require: int | None = None) -> None:
        """Rebuild these users' celebrity sets from Postgres (one query); ``require`` raises for an unknown user."""
        sets = await self.social.celebrities_followed(user_ids, self.threshold)
        if require is not None and require not in sets:
            raise UnknownUser(require)
        await self.celebrities.replace(sets)

    async def rebuild_authors(self, author_ids: Sequence[int]) -> None:
        """Rebuild these accounts' author timelines from Postgres (one query)."""
        await self.authors.replace(await self.social.recent_posts_of(author_ids, self.cap))
