"""What graph is loaded now: users with follower and followee counts, and the headline figures a result records."""

from __future__ import annotations

from dataclasses import dataclass

from targets.stores.connections import Stores


@dataclass(frozen=True)
class GraphInfo:
    """The loaded graph's users (ascending ids) with their follower and followee counts, and headline statistics."""

    user_ids: list[int]
    follower_counts: list[int]
    followee_counts: list[int]
    follows: int
    #: None when not known (a service of another namespace, seen only through its user sample).
    posts: int | None

    def stats(self, threshold: int, source: str) -> dict[str, object]:
        """The ``graph`` block of a result."""
        counts = self.follower_counts
        return {
            "users": len(self.user_ids),
            "follows": self.follows,
            "posts": self.posts,
            "source": source,
            "max_followers": max(counts, default=0),
            "mean_followers": round(sum(counts) / len(counts), 3) if counts else 0.0,
            "max_followees": max(self.followee_counts, default=0),
            "celebrities": sum(1 for c in counts if c >= threshold),
        }

    def top_accounts(self, k: int) -> list[tuple[int, int]]:
        """The ``k`` accounts with most followers, as (user id, followers), most followed first."""
        ranked = sorted(zip(self.user_ids, self.follower_counts, strict=True), key=lambda uc: (-uc[1], uc[0]))
        return ranked[:k]

    def followers_of(self, user_id: int) -> int:
        """One account's follower count (0 for an unknown id)."""
        return dict(zip(self.user_ids, self.follower_counts, strict=True)).get(user_id, 0)


async def graph_info(stores: Stores) -> GraphInfo:
    """What is loaded now: users and follower counts, follow and post totals."""
    users = await stores.social.users()
    follows, posts = await stores.social.totals()
    return GraphInfo(users.ids, users.followers, users.followees, follows, posts)
