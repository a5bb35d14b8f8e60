"""A run that outlives a Redis which lost its data: rebuild derived state at once, then prove no post was lost.

:class:`LossWatch` runs beside one strategy's load and drain. Every ``interval`` it asks Redis whether the derived
state built in it is still there (:func:`targets.stores.recovery.lost`, one EXISTS); when Redis came back empty it
rebuilds that strategy's timelines and the post cache from Postgres at once, merged with what fan-out has written
since, and records when and how much. It is not tied to ``--fault``: a restart the harness did not cause is handled
the same way.

:func:`posts_lost` is the check after the drain: every post of the run that Postgres holds must be in every timeline
that should hold it (each follower's home timeline; for hybrid, a celebrity's post in the author's own timeline),
unless the cap has since trimmed it; and every post a client was told was published must be in Postgres.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from targets.stores.authors import AuthorTimelines
from targets.stores.celebrities import CelebritySets
from targets.stores.connections import Stores
from targets.stores.failures import LOST_STORE
from targets.stores.materialise import mark_built
from targets.stores.postgres import Authors
from targets.stores.recovery import lost, rebuild_if_lost
from targets.stores.timelines import Timelines

log = logging.getLogger(__name__)

#: Seconds between two looks at the marker.
WATCH_INTERVAL_S = 0.25
#: How long :meth:`LossWatch.stop` keeps looking for a store that is still away.
STOP_PATIENCE_S = 60.0
#: (post, timeline) pairs checked per pipeline.
CHECK_BATCH = 5_000

# The run's posts, with the followers whose home timeline should hold each and whether the author is a celebrity.
_POST_HOLDERS = """
SELECT p.id, p.author_id, u.follower_count,
       coalesce(array_agg(f.follower_id) FILTER (WHERE f.follower_id IS NOT NULL), '{}') AS followers
FROM posts p JOIN users u ON u.id = p.author_id LEFT JOIN follows f ON f.followee_id = p.author_id
WHERE p.id > $1 GROUP BY p.id, p.author_id, u.follower_count ORDER BY p.id
"""


class LossWatch:
    """Rebuilds one strategy's derived state whenever Redis lost it, while a run goes on."""

    def __init__(self, stores: Stores, owners: Mapping[str, Authors], interval: float = WATCH_INTERVAL_S) -> None:
        self.stores, self.owners, self.interval = stores, owners, interval
        #: perf_counter() of the load's start, to which rebuild times are relative (the caller sets it then).
        self.origin = time.perf_counter()
        #: One entry per rebuild: when it began (s from ``origin``), how long it took, what it wrote.
        self.rebuilds: list[dict[str, Any]] = []
        #: Looks that failed (Redis or Postgres still away), retried at the next tick.
        self.failed_looks = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._give_up_at = 0.0

    async def start(self) -> None:
        """Start watching. State built before markers existed is taken as complete (it is what the run starts from)."""
        if self.owners and await lost(self.stores):
            await mark_built(self.stores)
        if self.owners:
            self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        """Stop watching, after one last look (a loss right at the end of the load is rebuilt before the drain)."""
        self._give_up_at = time.perf_counter() + STOP_PATIENCE_S
        self._stop.set()
        if self._task is not None:
            await self._task

    def cancel(self) -> None:
        """Stop at once (Ctrl-C): a rebuild cut short is noticed by the next run's reset, which rebuilds anyway."""
        if self._task is not None:
            self._task.cancel()

    def block(self) -> dict[str, Any]:
        """The result's ``recovery`` block."""
        return {"rebuilds": self.rebuilds, "failed_looks": self.failed_looks}

    async def _watch(self) -> None:
        while True:
            stopping = self._stop.is_set()
            looked = await self._look()
            if stopping and (looked or time.perf_counter() > self._give_up_at):
                return
            await asyncio.sleep(self.interval)  # stopping, but a store is still away: look again a little later

    async def _look(self) -> bool:
        """One look (and a rebuild when the state was lost); False when a store did not answer."""
        try:
            began = time.perf_counter()
            done = await rebuild_if_lost(self.stores, self.owners)
            if done is not None:
                log.warning("Redis had lost the derived state: rebuilt %s from Postgres", ", ".join(self.owners))
                self.rebuilds.append(
                    {
                        "at_s": round(began - self.origin, 3),
                        "seconds": round(done.seconds, 3),
                        "timeline_entries": done.timeline_entries,
                        "posts_cached": done.posts_cached,
                    }
                )
        except LOST_STORE as exc:  # a store still away: look again at the next tick (a bug's error is raised)
            self.failed_looks += 1
            log.info("looking for lost derived state failed (%s): retrying", type(exc).__name__)
            return False
        return True


async def posts_lost(
    stores: Stores, owner: str | None, authors: Authors | None, post_mark: int, acknowledged: Iterable[int]
) -> dict[str, Any]:
    """The result's ``posts_lost`` block: the run's posts (ids above ``post_mark``) checked against Postgres.

    ``owner``/``authors``: the strategy's timelines (None for a strategy without them: then only acknowledged posts
    missing from Postgres count). A timeline lacks a post legitimately only when Postgres has ``timeline_cap`` newer
    posts that belong in it (the cap trimmed it).
    """
    rows = await stores.pg.fetch(_POST_HOLDERS, post_mark)
    in_pg = {int(r["id"]) for r in rows}
    missing_in_pg = sorted(set(acknowledged) - in_pg)
    checks: list[_Check] = []
    if owner is not None and authors is not None:
        s = stores.settings
        homes = Timelines(stores.redis, s.prefix, owner, s.timeline_cap, tags=stores.tags)
        own = AuthorTimelines(stores.redis, s.prefix, owner, s.timeline_cap, stores.tags)
        # Per-edge owners (adaptive) leave out of a home timeline the followees its user pulls: those posts must be
        # in the author's own timeline instead.
        pulled: dict[int, set[int]] = {}
        if authors is Authors.EXCEPT:
            readers = sorted({int(f) for r in rows for f in r["followers"]})
            sets = await CelebritySets(stores.redis, s.prefix, owner, stores.tags).members_of(readers)
            pulled = {u: members for u, members in zip(readers, sets, strict=True) if members}
        for r in rows:
            post, author = int(r["id"]), int(r["author_id"])
            if authors is Authors.ORDINARY and int(r["follower_count"]) >= s.celebrity_threshold:
                checks.append(_Check(post, own.key(author), author, _NEWER_OWN))
                continue
            newer = _NEWER_ORDINARY if authors is Authors.ORDINARY else _NEWER_FOLLOWED
            pushed = [int(f) for f in r["followers"] if author not in pulled.get(int(f), ())]
            checks += [_Check(post, homes.key(f), f, newer) for f in pushed]
            if len(pushed) < len(r["followers"]):
                checks.append(_Check(post, own.key(author), author, _NEWER_OWN))
    missing = await _not_held(stores, checks)
    return {
        "posts_checked": len(rows),
        "timeline_entries_checked": len(checks),
        "posts_lost": len({c.post for c in missing}) + len(missing_in_pg),
        "timeline_entries_missing": len(missing),
        "acknowledged_not_in_postgres": len(missing_in_pg),
    }


@dataclass(frozen=True)
class _Check:
    """A post that the timeline ``key`` of ``holder`` should hold; ``newer`` counts (up to $3) the posts newer than
    $2 that belong in it, per Postgres."""

    post: int
    key: str
    holder: int
    newer: str


_NEWER_FOLLOWED = """SELECT count(*) FROM (SELECT 1 FROM follows f JOIN posts p ON p.author_id = f.followee_id
WHERE f.follower_id = $1 AND p.id > $2 LIMIT $3) t"""
_NEWER_ORDINARY = """SELECT count(*) FROM (SELECT 1 FROM follows f JOIN users u ON u.id = f.followee_id
JOIN posts p ON p.author_id = f.followee_id WHERE f.follower_id = $1 AND u.follower_count < $4 AND p.id > $2
LIMIT $3) t"""
_NEWER_OWN = "SELECT count(*) FROM (SELECT 1 FROM posts WHERE author_id = $1 AND id > $2 LIMIT $3) t"


async def _not_held(stores: Stores, checks: list[_Check]) -> list[_Check]:
    """The checks whose timeline lacks the post, though the cap did not trim it (Postgres has fewer than
    ``timeline_cap`` newer posts for that timeline). Postgres is asked about the misses only."""
    misses: list[_Check] = []
    for start in range(0, len(checks), CHECK_BATCH):
        chunk = checks[start : start + CHECK_BATCH]
        async with stores.redis.pipeline(transaction=False) as pipe:
            for check in chunk:
                pipe.zscore(check.key, check.post)
            misses += [c for c, score in zip(chunk, await pipe.execute(), strict=True) if score is None]
    s, lost = stores.settings, []
    for c in misses:
        args = (c.holder, c.post, s.timeline_cap) + ((s.celebrity_threshold,) if c.newer is _NEWER_ORDINARY else ())
        if await stores.pg.fetchval(c.newer, *args) < s.timeline_cap:
            lost.append(c)
    return lost
