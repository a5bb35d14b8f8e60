"""The one async strategy interface that push, pull and hybrid implement.

A strategy is a view over the shared source of truth (:mod:`targets.stores.postgres`, Postgres) plus whatever derived
state it keeps (Redis timelines). The public operations are the same for all three:

* :meth:`Strategy.publish` stores the post, then calls :meth:`Strategy.distribute` (the strategy's write path);
* :meth:`Strategy.follow` / :meth:`Strategy.unfollow` change the edge, then call the ``on_*`` hook;
* :meth:`Strategy.home_timeline` validates and calls :meth:`Strategy.read` (the strategy's read path);
* :meth:`Strategy.user_timeline` validates and calls :meth:`Strategy.read_user` (one account's own posts: from
  Postgres by default, from an author timeline where a strategy keeps one).

The hooks are public so that several strategies can keep their derived state over one source of truth (the
correctness oracle applies each operation to Postgres once and to every strategy's hooks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from targets.errors import DeliveryFailed, InvalidOperation
from targets.ids import MAX_POST_ID
from targets.stores.connections import Stores
from targets.stores.failures import LOST_STORE
from targets.stores.pages import Page
from targets.stores.post_cache import PostCache
from targets.stores.postgres import Authors, FollowChange, Post
from targets.stores.timelines import WrittenHook

DEFAULT_PAGE = 50
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Receipt:
    """What publishing returns to the author.

    ``entries_written`` counts timeline entries the write path actually added (Redis's own ZADD replies), not
    followers multiplied out; with asynchronous fan-out it is what was written before the acknowledgement (0) and
    the worker counts the rest.
    """

    post: Post
    entries_written: int
    #: The publish repeated an earlier one with the same idempotency key: nothing new was stored.
    replayed: bool = False

    @property
    def post_id(self) -> int:
        """The new post's id."""
        return self.post.id


class Strategy(ABC):
    """A home-timeline strategy over real Redis and Postgres."""

    name: ClassVar[str]
    #: Which followees' posts the strategy keeps in Redis timelines (none for pull).
    home_authors: ClassVar[Authors | None] = None
    #: Whether the strategy decides push or pull per follow edge (its fan-out skips followers whose edge is pulled).
    per_edge: ClassVar[bool] = False

    def __init__(self, stores: Stores, *, on_written: WrittenHook | None = None) -> None:
        self.stores = stores
        self.on_written = on_written
        self.settings = stores.settings
        self.cap = stores.settings.timeline_cap
        self.social = stores.social
        self.posts = PostCache.of(stores)

    # -- public operations ------------------------------------------------------------------------------------
    async def publish(self, author_id: int, body: str, *, key: str | None = None) -> Receipt:
        """Store a post by ``author_id`` and deliver it as the strategy does.

        With an idempotency ``key`` a retry stores nothing new: it delivers the post stored under the key again
        (delivery is idempotent, so a post already delivered gains no entry), which completes a delivery that failed.
        A delivery that fails after the post was stored raises :class:`DeliveryFailed` naming the post.
        """
        if key is None:
            new = await self.social.create_post(author_id, body)
        else:
            new = await self.social.create_post_once(author_id, body, key)
        try:
            return Receipt(new.post, await self.distribute(new.post, new.followers, new.mentioned), new.replayed)
        except LOST_STORE as exc:
            raise DeliveryFailed(new.post.id, f"{type(exc).__name__}: {exc}"[:200]) from exc

    async def follow(self, follower_id: int, followee_id: int) -> bool:
        """Make ``follower_id`` follow ``followee_id``; False when it already did."""
        change = await self.social.follow(follower_id, followee_id)
        if change.changed:
            await self.on_follow(follower_id, followee_id, change)
        return change.changed

    async def unfollow(self, follower_id: int, followee_id: int) -> bool:
        """Make ``follower_id`` stop following ``followee_id``; False when it did not follow."""
        change = await self.social.unfollow(follower_id, followee_id)
        if change.changed:
            await self.on_unfollow(follower_id, followee_id, change)
        return change.changed

    async def home_timeline(self, user_id: int, limit: int = DEFAULT_PAGE, before: int | None = None) -> list[Post]:
        """The user's home timeline page: at most ``limit`` posts with ids below ``before``, newest first.

        A timeline holds the newest ``timeline_cap`` posts of the accounts the user follows and of the posts that
        mention the user (:mod:`targets.stores.mentions`), in every strategy.
        Raises :class:`~targets.errors.UnknownUser` for a user that does not exist and
        :class:`~targets.errors.InvalidOperation` for a page size outside 1..1000 or a ``before`` that is no post id.
        """
        _check_page(limit, before)
        posts = await self.read(user_id, limit, before)
        if not posts:
            # Only an empty page pays for the existence check, so reads of real users stay one lookup.
            await self.social.require_user(user_id)
        return posts

    async def user_timeline(self, author_id: int, limit: int = DEFAULT_PAGE, before: int | None = None) -> list[Post]:
        """The author's own posts (a user timeline): at most ``limit`` with ids below ``before``, newest first.

        Not capped: every post the author ever made, paged with ``before``. Raises like :meth:`home_timeline`.
        """
        _check_page(limit, before)
        posts = await self.read_user(author_id, limit, before)
        if not posts:
            await self.social.require_user(author_id)
        return posts

    # -- what each strategy implements ------------------------------------------------------------------------
    @abstractmethod
    async def distribute(self, post: Post, author_followers: int, mentioned: Sequence[int] = ()) -> int:
        """The write path after the post is stored; returns timeline entries written. ``mentioned``: users the post
        mentions who do not follow its author (:mod:`targets.stores.mentions`), to be delivered to as well."""

    @abstractmethod
    async def read(self, user_id: int, limit: int, before: int | None) -> list[Post]:
        """The read path: one page, newest first, at most ``limit``, within the timeline cap."""

    async def read_user(self, author_id: int, limit: int, before: int | None) -> list[Post]:
        """The user-timeline read path: the author's posts from the source of truth (override to serve them from
        derived state, e.g. an author timeline)."""
        return await self.social.user_posts(author_id, limit, before)

    async def on_follow(self, follower_id: int, followee_id: int, change: FollowChange) -> None:
        """Derived-state update after a new follow edge (nothing for strategies without derived state)."""

    async def on_unfollow(self, follower_id: int, followee_id: int, change: FollowChange) -> None:
        """Derived-state update after a removed follow edge."""

    async def rebuild(self, user_ids: Iterable[int]) -> int:
        """Recompute these users' derived state from the source of truth; returns entries written."""
        return 0

    async def reset_derived(self) -> int:
        """Delete the strategy's derived state (its Redis keys); returns keys removed."""
        return 0

    # -- shared helpers ---------------------------------------------------------------------------------------
    async def hydrate(self, post_ids: list[int]) -> list[Post]:
        """Posts for ids, in the given order: from the post cache, misses from Postgres (and then cached)."""
        found, missing = await self.posts.get(post_ids)
        if missing:
            fetched = await self.social.posts_by_id(missing)
            await self.posts.put(list(fetched.values()))
            found.update(fetched)
        return [found[p] for p in post_ids if p in found]

    async def page_posts(self, page: Page) -> list[Post]:
        """A page read with its cached bodies as posts; the bodies the cache missed from Postgres (and then cached).

        A hot post is decoded once per process, not once per read (:meth:`PostCache.decode_page`).
        """
        if None not in page.cached:
            return self.posts.decode_page(page.ids, page.cached)  # type: ignore[arg-type]
        decode = PostCache.decode
        ids = [int(i) for i in page.ids]
        fetched = await self.social.posts_by_id([i for i, raw in zip(ids, page.cached, strict=True) if raw is None])
        await self.posts.put(list(fetched.values()))
        # A post deleted from the source of truth since it was timelined is left out, as hydrate leaves it out.
        return [
            fetched[i] if raw is None else decode(i, raw)
            for i, raw in zip(ids, page.cached, strict=True)
            if raw is not None or i in fetched
        ]


def _check_page(limit: int, before: int | None) -> None:
    """Raise :class:`InvalidOperation` for a page size outside 1..1000 or a ``before`` that is no post id."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidOperation(f"page size {limit} is outside 1..{MAX_PAGE}: pass a limit in that range")
    if before is not None and not 0 < before <= MAX_POST_ID + 1:
        raise InvalidOperation(f"before={before} is not a post id: pass an id from a previous page")


def capped_page(posts: list[Post], newer: int, limit: int, cap: int) -> list[Post]:
    """Cut a page computed from Postgres to what a capped timeline holds (``newer`` posts lie above the page)."""
    return posts[: max(0, min(limit, cap - newer))]
