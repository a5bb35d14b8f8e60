"""Push (fan-out on write): every post is written into each follower's capped Redis home timeline.

A read is one round trip: a Lua call that ranges the home timeline and MGETs the cached posts
(:mod:`targets.stores.pages`). The write path reads followers in keyset batches
and writes each batch with one Lua call (ZADD + trim per follower), never one round trip per follower: by default
asynchronously (publish queues one job for :mod:`targets.fanout.worker`), or inside publish with ``fanout_mode="sync"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import ClassVar

from targets.fanout.queue import FanoutQueue
from targets.stores.activity import Activity, Touch
from targets.stores.connections import Stores
from targets.stores.failures import LOST_STORE
from targets.stores.pages import PageReader
from targets.stores.postgres import Authors, FollowChange, Post
from targets.stores.timelines import EdgeRule, Timelines, fanout_stats_key, owner_pattern
from targets.strategies.base import Strategy, WrittenHook, capped_page

#: Reads of one page before answering from Postgres: an inactive reader's, a rebuild, a read that finds it active.
READ_ATTEMPTS = 3


class PushStrategy(Strategy):
    """Fan-out on write into capped sorted sets, one set per follower."""

    name: ClassVar[str] = "push"
    home_authors: ClassVar[Authors | None] = Authors.ALL

    def __init__(self, stores: Stores, *, on_written: WrittenHook | None = None) -> None:
        super().__init__(stores, on_written=on_written)
        self.batch_size = stores.settings.fanout_batch
        self.threshold = stores.settings.celebrity_threshold
        prefix, window = stores.settings.prefix, stores.settings.active_window_s
        tags = stores.tags
        self.timelines = Timelines(
            stores.redis, prefix, self.name, self.cap, on_written=on_written, window_s=window, tags=tags
        )
        self.fanout_queue = FanoutQueue(stores.redis, stores.settings)
        self.pages = PageReader(stores.redis, prefix, self.name, self.cap, self.touch(), tags=tags)
        self.activity = Activity(stores.redis, prefix, self.name, tags)

    def touch(self) -> Touch:
        """What each read records of its reader: with an active window, when it read."""
        return Touch(window_s=self.settings.active_window_s)

    # -- write path -------------------------------------------------------------------------------------------
    def pushes(self, author_followers: int) -> bool:
        """Whether posts of an author with this many followers go into timelines (always, for push)."""
        return True

    async def distribute(self, post: Post, author_followers: int, mentioned: Sequence[int] = ()) -> int:
        """Cache the post, deliver it to the users it mentions (at once: they are few), then fan it out to every
        follower's timeline."""
        await self.store_post(post)
        written = await self.timelines.add_to_many(mentioned, post.id) if mentioned else 0
        if not self.pushes(author_followers):
            return written
        return written + await self.fan_out(post)

    async def store_post(self, post: Post) -> None:
        """What publish keeps of the post itself before any fan-out: its cached body."""
        await self.posts.put([post])

    async def fan_out(self, post: Post) -> int:
        """Deliver the post to every follower's timeline; returns entries written before the acknowledgement.

        In ``async`` mode (the default) this queues one fan-out job and returns 0: workers write the timelines
        (:mod:`targets.fanout.worker`) and count what they write in the post's delivery report. In ``sync`` mode it
        writes every batch itself, so the publish latency includes the whole fan-out.
        """
        if self.settings.fanout_mode == "async":
            await self.fanout_queue.enqueue(self.name, post.id, post.author_id)
            return 0
        written = 0
        async for batch in self.social.follower_batches(post.author_id, self.batch_size):
            written += await self.timelines.add_to_many(batch, post.id, rule=self.edge_rule(), author=post.author_id)
        return written

    def edge_rule(self) -> EdgeRule | None:
        """How fan-out tells followers whose edge to the author is pulled (none for push: every edge is pushed)."""
        return None

    # -- follow graph changes (Mastodon's merge / unmerge) ----------------------------------------------------
    async def on_follow(self, follower_id: int, followee_id: int, change: FollowChange) -> None:
        """Merge the followee's recent posts into the follower's timeline."""
        if self.pushes(change.followers_after):
            await self.merge_author(follower_id, followee_id)

    async def on_unfollow(self, follower_id: int, followee_id: int, change: FollowChange) -> None:
        """Remove the followee's posts from the follower's timeline."""
        if self.pushes(change.followers_before):
            await self.unmerge_author([follower_id], followee_id)

    async def merge_author(self, user_id: int, author_id: int) -> int:
        """Put the author's newest ``cap`` posts into one timeline (older ones could never be in it)."""
        return await self.timelines.merge(user_id, await self.social.recent_post_ids(author_id, self.cap))

    async def unmerge_author(self, user_ids: Iterable[int], author_id: int) -> None:
        """Remove the author's posts from these timelines, refilling any that the cap had trimmed.

        A timeline at its cap may have lost older posts of other followees to trimming; once entries are
        removed it is rebuilt from the source of truth, so it again holds exactly its newest ``cap`` posts.
        """
        await self.unmerge_posts(user_ids, author_id, await self.social.recent_post_ids(author_id, self.cap))

    async def unmerge_posts(self, user_ids: Iterable[int], author_id: int, post_ids: list[int]) -> None:
        """Remove one author's posts (its newest ``cap``) from these timelines, refilling trimmed ones.

        A user the author mentioned keeps those posts, as mentions: its timeline is rebuilt from Postgres instead.
        """
        users = list(user_ids)
        if not post_ids or not users:
            return
        refill = set(await self.social.mentioned_by(author_id, users))
        for user_id in users:
            if user_id in refill:
                continue
            size, removed = await self.timelines.unmerge(user_id, post_ids)
            if removed and size >= self.cap:
                refill.add(user_id)
        await self.rebuild_home(sorted(refill))

    # -- read path --------------------------------------------------------------------------------------------
    async def read(self, user_id: int, limit: int, before: int | None) -> list[Post]:
        """The home timeline's page and its cached posts in one round trip (misses from Postgres).

        A reader inactive beyond the active window may lack posts fan-out skipped: its timeline is rebuilt first.
        """
        page = await self.pages.push(user_id, limit, before)
        for _ in range(READ_ATTEMPTS):
            if not page.inactive:
                return await self.page_posts(page)
            await self.regenerate(user_id)
            page = await self.pages.push(user_id, limit, before, again=True)
        # A window shorter than a rebuild: answer from Postgres.
        posts, newer = await self.social.timeline(user_id, limit, before, self.cap, replica=True)
        return capped_page(posts, newer, limit, self.cap)

    async def regenerate(self, user_id: int) -> None:
        """Rebuild a returning reader's state from Postgres (Mastodon's regeneration), counted per owner.

        The read that found it inactive has already marked it active, so fan-out delivers to it from then on and a
        post stored before that is in Postgres for the rebuild. A rebuild that fails unmarks it: its next read
        rebuilds again rather than trust a timeline with gaps.
        """
        try:
            await self.rebuild([user_id])
        except BaseException:
            with contextlib.suppress(*LOST_STORE):
                await self.activity.forget_seen(user_id)
            raise
        stats = fanout_stats_key(self.settings.prefix, self.stores.tags is not None)
        await self.stores.redis.hincrby(stats, f"regenerated:{self.name}", 1)

    # -- derived state ----------------------------------------------------------------------------------------
    async def rebuild(self, user_ids: Iterable[int]) -> int:
        """Recompute these users' timelines from Postgres; returns entries written."""
        return await self.rebuild_home(user_ids)

    async def rebuild_home(self, user_ids: Iterable[int]) -> int:
        """Recompute these users' home timelines from Postgres (one query and one transaction each)."""
        assert self.home_authors is not None
        written = 0
        for user_id in user_ids:
            listed = await self.pulled(user_id)
            posts, _ = await self.social.timeline(
                user_id, self.cap, None, self.cap, authors=self.home_authors, threshold=self.threshold, listed=listed
            )
            await self.timelines.replace(user_id, [p.id for p in posts])
            written += len(posts)
        return written

    async def pulled(self, user_id: int) -> list[int]:
        """The followees the user's home timeline leaves out by name (none: push keeps every followee's posts)."""
        return []

    async def reset_derived(self) -> int:
        """Delete this strategy's derived state (its home timelines, and whatever else it keeps per user)."""
        return await self.stores.delete_keys(owner_pattern(self.name))
