"""Derived state lost with Redis: noticing it, and rebuilding it from the source of truth.

Redis holds nothing Postgres does not: timelines, author timelines, celebrity sets, the post cache and the fan-out
queue are all derived. A Redis that restarts without its data (no persistence, a failover to an empty replica, an
operator's FLUSHALL) comes back empty, and a timeline that is merely missing reads as an empty page. So whenever
derived state is materialised a marker key is written beside it (:func:`~targets.stores.materialise.mark_built`; a
watcher that starts on state built before markers existed writes it first); a Redis without the marker has
lost what was built (:func:`lost`), and :func:`rebuild_lost` builds it again from Postgres, as Mastodon regenerates
feeds.

The rebuild *merges* into whatever Redis holds by then (ZADD then trim to the cap, never delete first): fan-out keeps
delivering while it runs, and both write the same members with the same scores, so neither can undo the other. A
post whose fan-out job was lost with the queue is in Postgres, so the rebuild delivers it; no job needs re-queueing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from targets.stores.connections import Stores
from targets.stores.materialise import marker_key, rebuild_timelines
from targets.stores.post_cache import PostCache
from targets.stores.postgres import Authors


async def lost(stores: Stores) -> bool:
    """Whether this Redis lost the derived state built in it (the marker is gone)."""
    return not await stores.redis.exists(marker_key(stores))


@dataclass(frozen=True)
class Rebuilt:
    """What :func:`rebuild_lost` wrote."""

    timeline_entries: int
    posts_cached: int
    seconds: float


async def rebuild_lost(stores: Stores, owners: Mapping[str, Authors]) -> Rebuilt:
    """Rebuild ``owners``' derived state and the post cache from Postgres, merged into what Redis holds now.

    ``owners`` as for :func:`~targets.stores.materialise.rebuild_timelines` (``timeline_owners`` of the strategies
    in use). The marker is written once the timelines are (by the rebuild), so a rebuild cut short by another loss
    is noticed again.
    """
    began = time.perf_counter()
    entries = await rebuild_timelines(stores, owners, clear=False)
    cached = await PostCache.of(stores).warm(stores.social)
    return Rebuilt(entries, cached, time.perf_counter() - began)


#: How long one process may hold the right to rebuild (a process that dies mid-rebuild frees it by then).
REBUILD_LOCK_S = 600


async def rebuild_if_lost(stores: Stores, owners: Mapping[str, Authors]) -> Rebuilt | None:
    """Rebuild as :func:`rebuild_lost` when this Redis lost the derived state, once across processes; else None.

    Several processes may watch one namespace (a service's worker processes): the first to take a short-lived lock
    in Redis rebuilds, the others find the lock taken and look again later.
    """
    if not owners or not await lost(stores):
        return None
    lock = stores.settings.prefix + "derived:rebuilding"
    if not await stores.redis.set(lock, "1", nx=True, ex=REBUILD_LOCK_S):
        return None
    try:
        return await rebuild_lost(stores, owners)
    finally:
        await stores.redis.delete(lock)
