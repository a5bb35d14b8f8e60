"""The stores before and between benchmark runs: load a graph, warm the post cache, restore the starting state.

Bulk work goes through the graph loader (:func:`graphs.load.load_graph`) and the bulk timeline path
(:func:`targets.stores.materialise.rebuild_timelines`). Between strategies the run's own changes are undone (its posts deleted,
its follow churn reverted) and derived state is rebuilt, so every strategy starts from the same data.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import Progress

from graphs.edgelist import write_edges
from graphs.generate import GraphSpec, generate, header
from graphs.load import load_graph
from targets.fanout.queue import FanoutQueue
from targets.stores.connections import Stores
from targets.stores.materialise import materialised
from targets.stores.postgres import Post, Social
from targets.stores.timelines import PostCache
from targets.strategies.registry import STRATEGIES

#: Posts cached per MSET when warming the post cache.
CACHE_CHUNK = 5_000


@dataclass(frozen=True)
class GraphInfo:
    """The loaded graph's users (ascending ids) with their follower and followee counts, and headline statistics."""

    user_ids: list[int]
    follower_counts: list[int]
    followee_counts: list[int]
    follows: int
    posts: int

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
    rows = await stores.pg.fetch("SELECT id, follower_count, followee_count FROM users ORDER BY id")
    follows = await stores.pg.fetchval("SELECT count(*) FROM follows")
    posts = await stores.pg.fetchval("SELECT count(*) FROM posts")
    return GraphInfo(
        [r["id"] for r in rows],
        [r["follower_count"] for r in rows],
        [r["followee_count"] for r in rows],
        int(follows),
        int(posts),
    )


async def load_generated(
    stores: Stores, spec: GraphSpec, posts_per_user: int, seed: int, progress: Progress | None = None
) -> str:
    """Generate the graph ``spec`` describes, load it with a post history; returns a description of its source."""
    edges = generate(spec)
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as tmp:
        path = Path(tmp) / "graph.txt"
        write_edges(path, edges.followers, edges.followees, header(spec, edges))
        await load_graph(stores, path, posts_per_user=posts_per_user, seed=seed, progress=progress)
    return f"generated {spec.describe()}"


async def load_file(
    stores: Stores, path: Path, posts_per_user: int, seed: int, progress: Progress | None = None
) -> str:
    """Load an edge list with a post history; returns a description of its source."""
    await load_graph(stores, path, posts_per_user=posts_per_user, seed=seed, progress=progress)
    return f"file {path}"


async def settle(stores: Stores) -> None:
    """VACUUM ANALYZE the harness's tables: fresh statistics and visibility maps, and nothing left for autovacuum
    to start on in the middle of a measured run."""
    async with stores.pg.acquire() as conn:
        await conn.execute("VACUUM (ANALYZE) users, follows, posts")


async def warm_post_cache(stores: Stores) -> int:
    """Put every post into the post cache (streamed, one MSET per chunk), so reads start warm; returns posts."""
    cache = PostCache(stores.redis, stores.settings.prefix)
    cached = 0
    chunk: list[Post] = []
    async with stores.transaction() as conn:
        async for r in conn.cursor("SELECT id, author_id, created_at, body FROM posts", prefetch=CACHE_CHUNK):
            chunk.append(Post(r["id"], r["author_id"], r["created_at"], r["body"]))
            if len(chunk) >= CACHE_CHUNK:
                await cache.put(chunk)
                cached += len(chunk)
                chunk = []
    await cache.put(chunk)
    return cached + len(chunk)


@dataclass
class RunChanges:
    """What a run changed in the source of truth, so it can be undone: posts above a mark, follow churn."""

    #: Every post with an id above this was published by the run.
    post_mark: int
    #: Follow edges the run changed, in order: (+1 follow added, -1 removed), follower, followee.
    churn: list[tuple[int, int, int]] = field(default_factory=list)

    @classmethod
    async def mark(cls, stores: Stores) -> RunChanges:
        """Start recording: note the newest post id now."""
        return cls(int(await stores.pg.fetchval("SELECT coalesce(max(id), 0) FROM posts")))

    async def undo(self, stores: Stores, social: Social) -> int:
        """Delete the run's posts (rows and cache entries) and revert its churn; returns posts deleted."""
        for delta, follower, followee in reversed(self.churn):
            if delta > 0:
                await social.unfollow(follower, followee)
            else:
                await social.follow(follower, followee)
        self.churn.clear()
        rows = await stores.pg.fetch("DELETE FROM posts WHERE id > $1 RETURNING id", self.post_mark)
        ids: Sequence[int] = [r["id"] for r in rows]
        cache = PostCache(stores.redis, stores.settings.prefix)
        queue = FanoutQueue(stores.redis, stores.settings)
        for start in range(0, len(ids), CACHE_CHUNK):
            chunk = ids[start : start + CACHE_CHUNK]
            keys = [cache.key(i) for i in chunk]
            for owner in materialised(STRATEGIES):  # the posts' fan-out accounting, if they were queued
                keys += [k for i in chunk for k in (queue.report_key(owner, i), queue.lag_key(owner, i))]
            await stores.redis.unlink(*keys)
        return len(ids)
