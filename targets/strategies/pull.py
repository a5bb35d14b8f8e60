"""Pull (fan-out on read): a post is one row; every read merges the followees' latest posts in Postgres."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from targets.stores.postgres import Post
from targets.strategies.base import Strategy, capped_page


class PullStrategy(Strategy):
    """Writes cost one row; a read is one LATERAL top-N query over the followees (one round trip, no N+1)."""

    name: ClassVar[str] = "pull"

    async def distribute(self, post: Post, author_followers: int, mentioned: Sequence[int] = ()) -> int:
        """Nothing to deliver: readers fetch the post (and the posts that mention them) themselves."""
        return 0

    async def read(self, user_id: int, limit: int, before: int | None) -> list[Post]:
        """The page straight from the source of truth."""
        posts, newer = await self.social.timeline(user_id, limit, before, self.cap, replica=True)
        return capped_page(posts, newer, limit, self.cap)
