"""Adaptive: push or pull decided per follow edge from rates, by Feeding Frenzy's rule (Silberstein et al. 2010).

Pushing a producer's posts to one consumer costs H per post; pulling them costs L per read of that consumer. Over an
edge (p, c) pushing costs posts(p) x H and pulling reads(c) x L, so the edge is pushed when
``reads(c) / posts(p) >= H / L`` (``Settings.cost_ratio``). Deciding each edge so minimises the total cost; a follower
threshold decides by producer alone and can only approximate it (a celebrity who rarely posts is cheap to push, an
account that posts every minute to readers who look once a day is cheap to pull).

The state is hybrid's: home timelines hold the posts of pushed edges (and mentions), every account has an author
timeline, and each user's set (the ``celebs`` key; here its *pulled* followees) names the author timelines its reads
merge. Fan-out skips a follower whose set holds the author. Rates are the activity hashes' decayed counts
(:mod:`targets.stores.activity`; ``--rate-source online``) or what the workload declared (``--rate-source
declared``). A reader's edges are decided again on its read, at most every ``reevaluate_s`` seconds; the fan-out
moves an edge to pull as it delivers when the rule says so (:data:`targets.stores.lua.EDGE_LUA`); a newly followed
account's edge is decided at once. An edge that flips moves its posts as hybrid's threshold crossing does:
to pull, the followee joins the set before its posts leave the timeline; to push, its posts are merged in before it
leaves the set, so a read in between sees them (once), never not at all. A bulk materialisation pushes every edge
(nothing is known of rates yet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from targets.errors import UnknownUser
from targets.stores.activity import Touch
from targets.stores.postgres import Authors, FollowChange, Post
from targets.stores.timelines import EdgeRule
from targets.strategies.hybrid import HybridStrategy


class AdaptiveStrategy(HybridStrategy):
    """Hybrid's machinery with the celebrity threshold replaced by a decision per follow edge."""

    name: ClassVar[str] = "adaptive"
    home_authors: ClassVar[Authors | None] = Authors.EXCEPT
    per_edge: ClassVar[bool] = True

    def touch(self) -> Touch:
        """Reads record when they happen (an active window), count themselves (online rates) and say when the
        reader's edges are due to be decided again."""
        s = self.settings
        half_life = s.rate_half_life_s if s.rate_source == "online" else 0
        return Touch(window_s=s.active_window_s, half_life_s=half_life, every_s=s.reevaluate_s)

    def is_celebrity(self, followers: int) -> bool:
        """No account is pulled for its follower count: edges are."""
        return False

    def pushes_edge(self, reads: float, posts: float) -> bool:
        """Feeding Frenzy's rule: push when the consumer reads at least ``cost_ratio`` times as often as the producer
        posts (a producer that never posts costs nothing to push)."""
        return reads >= self.settings.cost_ratio * posts

    def edge_rule(self) -> EdgeRule:
        """Fan-out skips followers whose set of pulled followees holds the author, and moves to pull the edges of
        followers who read too rarely for the author's rate of posting (their set gains the author, their home timeline
        loses its posts and is rebuilt on its next read if the cap had trimmed it)."""
        s = self.settings
        return EdgeRule(
            self.celebrities.key_prefix,
            self.authors.key_prefix,
            s.cost_ratio,
            s.rate_source == "declared",
            s.rate_half_life_s,
        )

    # -- write path -------------------------------------------------------------------------------------------
    async def store_post(self, post: Post) -> None:
        """Hybrid's (cache the post, add it to its author timeline) and, with online rates, count it."""
        if self.settings.rate_source != "online":
            await super().store_post(post)
            return
        await asyncio.gather(
            super().store_post(post), self.activity.count_post(post.author_id, self.settings.rate_half_life_s)
        )

    # -- follow graph changes ---------------------------------------------------------------------------------
    async def on_follow(self, follower_id: int, followee_id: int, change: FollowChange) -> None:
        """Decide the new edge: merge the followee's posts (push) or add it to the follower's pulled set."""
        rates = await self.activity.rates([follower_id, followee_id], **self._rate_source())
        # A follower whose set is not built pushes every edge until a read builds it (and decides them all).
        if self.pushes_edge(rates.reads[follower_id], rates.posts[followee_id]) or not await self.celebrities.add(
            [follower_id], followee_id
        ):
            await self.merge_author(follower_id, followee_id)
        else:
            await self.rebuild_mentioned(followee_id, [follower_id])  # its mentions now come from its author timeline

    async def on_unfollow(self, follower_id: int, followee_id: int, change: FollowChange) -> None:
        """Forget a pulled edge, or unmerge a pushed one's posts."""
        if await self.celebrities.remove([follower_id], followee_id):
            await self.rebuild_mentioned(followee_id, [follower_id])  # its mentions of the user stay, in the timeline
        else:
            await self.unmerge_author([follower_id], followee_id)

    # -- deciding edges ---------------------------------------------------------------------------------------
    def _rate_source(self) -> dict[str, Any]:
        return {"half_life_s": self.settings.rate_half_life_s, "declared": self.settings.rate_source == "declared"}

    async def decide(self, user_ids: Sequence[int]) -> dict[int, list[int]]:
        """Each existing user's followees whose edge should be pulled now, by the rule (ascending ids)."""
        followees = await self.social.followees_of(user_ids)
        everyone = sorted(set(followees) | {p for ps in followees.values() for p in ps})
        rates = await self.activity.rates(everyone, **self._rate_source())
        return {
            c: [p for p in ps if not self.pushes_edge(rates.reads[c], rates.posts[p])] for c, ps in followees.items()
        }

    async def reconsider(self, user_id: int) -> None:
        """Decide the reader's edges again and move the posts of those that flip (see the module's docstring)."""
        have = await self.celebrities.members(user_id)
        if have is None:
            await self.rebuild_celebrities([user_id])
            return
        want = set((await self.decide([user_id])).get(user_id, ()))
        to_push, to_pull = sorted(have - want), sorted(want - have)
        for author_id in to_push:
            await self.merge_author(user_id, author_id)
        if to_push:
            await self.celebrities.remove_from(user_id, to_push)
        if to_pull:
            await self.celebrities.add_to(user_id, to_pull)
            await self.rebuild_home([user_id])  # one query rather than an unmerge (and maybe a refill) per followee

    async def edges_pulled(self, user_ids: Sequence[int]) -> tuple[int, int]:
        """Of these users' follow edges: how many are pulled, and how many there are (for the pushed fraction)."""
        followees = await self.social.followees_of(user_ids)
        sets = await self.celebrities.members_of(list(followees))
        pulled = sum(len(s or ()) for s in sets)
        return pulled, sum(len(ps) for ps in followees.values())

    # -- derived state ----------------------------------------------------------------------------------------
    async def pulled(self, user_id: int) -> list[int]:
        """The user's pulled followees, which its home timeline leaves out (none while its set is not built)."""
        return sorted(await self.celebrities.members(user_id) or ())

    def pulled_posts(self, pulled: Sequence[int]) -> dict[str, Any]:
        """How a read from Postgres finds the pulled followees' posts."""
        return {"authors": Authors.AMONG, "listed": pulled}

    async def rebuild(self, user_ids: Iterable[int]) -> int:
        """Decide these users' edges, then rebuild their pulled sets, home timelines and author timelines."""
        users = list(user_ids)
        written = await self._rebuild_edges(users)
        await self.rebuild_authors(users)
        return written

    async def rebuild_celebrities(self, user_ids: Sequence[int], *, require: int | None = None) -> None:
        """Decide these users' edges, store their pulled sets and rebuild their home timelines to match (a set
        rebuilt alone could disagree with the timeline)."""
        await self._rebuild_edges(user_ids, require=require)

    async def _rebuild_edges(self, user_ids: Sequence[int], *, require: int | None = None) -> int:
        sets = await self.decide(user_ids)
        if require is not None and require not in sets:
            raise UnknownUser(require)
        await self.celebrities.replace(sets)
        return await self.rebuild_home(list(sets))
