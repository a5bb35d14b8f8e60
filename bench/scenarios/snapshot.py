"""Copies of a strategy's rebuilt timelines, so later rounds restore them instead of rebuilding from Postgres.

Every run of a strategy must start from the state a bulk rebuild makes (:mod:`targets.stores.materialise`). On the
quick graph that rebuild writes 2,000,000 entries and takes 30 to 45 s on the 2-core machine, once per strategy and
round; a repeated run or a sweep would spend most of its time there. So the first time a strategy's state is built
(or found freshly loaded) its timelines are copied with DUMP, and later runs put the copy back with RESTORE: the
exact bytes of the rebuilt sorted sets, including users whose timeline was empty (their key is removed). Every kind
of per-user state the strategy owns is copied: home timelines, and for hybrid also author timelines and celebrity
sets (a run's posts land in its author timelines too).

At the end of a benchmark the same copy puts every strategy that ran back into the rebuilt state (:meth:`settle`):
the run's posts are deleted from Postgres, and their ids must leave the timelines too, including the older entries
the cap trimmed to make room for them. Removing the ids alone would leave those timelines short.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from targets.stores.connections import Stores
from targets.stores.materialise import READER_STATE, rebuild_timelines, restart_activity
from targets.stores.timelines import owner_key_prefix, user_key
from targets.strategies.registry import keeps_timelines, timeline_owners

#: Keys per pipeline round trip.
BATCH = 1_000


@dataclass
class TimelineSnapshot:
    """The DUMP payload of each user's timeline key (None: the key did not exist)."""

    keys: list[str]
    payloads: list[bytes | None]

    @classmethod
    async def take(cls, stores: Stores, owner: str, user_ids: Sequence[int]) -> TimelineSnapshot:
        """Copy all of ``owner``'s per-user state of ``user_ids`` as it is now."""
        keys = [
            user_key(owner_key_prefix(stores.settings.prefix, owner, kind), u, stores.tags)
            for kind in derived_kinds(owner)
            for u in user_ids
        ]
        payloads: list[bytes | None] = []
        for start in range(0, len(keys), BATCH):
            async with stores.redis.pipeline(transaction=False) as pipe:
                for key in keys[start : start + BATCH]:
                    pipe.dump(key)
                payloads += await pipe.execute()
        return cls(keys, payloads)

    async def restore(self, stores: Stores) -> int:
        """Put every timeline back exactly as copied; returns how many keys were restored."""
        restored = 0
        for start in range(0, len(self.keys), BATCH):
            async with stores.redis.pipeline(transaction=False) as pipe:
                for key, payload in zip(
                    self.keys[start : start + BATCH], self.payloads[start : start + BATCH], strict=True
                ):
                    if payload is None:  # raw: a cluster pipeline does not queue unlink()
                        pipe.execute_command("UNLINK", key)
                    else:
                        pipe.restore(key, 0, payload, replace=True)
                        restored += 1
                await pipe.execute()
        return restored

    @property
    def size_bytes(self) -> int:
        """Bytes the copy holds in this process."""
        return sum(len(p) for p in self.payloads if p is not None)


def derived_kinds(owner: str) -> tuple[str, ...]:
    """The kinds of per-user keys a timeline owner keeps (as :func:`targets.stores.materialise.rebuild_timelines`
    writes them): home timelines, and for an owner of ordinary authors' timelines author timelines and celebrity
    sets."""
    authors = timeline_owners([owner])[owner]
    return ("home", "author", "celebs") if authors in READER_STATE else ("home",)


class DerivedState:
    """Resets a strategy's timelines before each of its runs: built (or found fresh) once, then restored from a copy.

    ``keep_copies`` False rebuilds when asked and copies nothing (then :meth:`settle` rebuilds too).
    """

    def __init__(self, user_ids: Sequence[int], *, keep_copies: bool) -> None:
        self.user_ids = user_ids
        self.keep_copies = keep_copies
        self._copies: dict[tuple[str, int], TimelineSnapshot] = {}

    async def reset(self, stores: Stores, name: str, *, rebuild: bool) -> str | None:
        """Make ``name``'s timelines (at the stores' threshold) the rebuilt state; returns what was done, or None.

        ``rebuild`` False: they already are (a fresh load), so at most a copy is taken.
        """
        if not keeps_timelines(name):
            return None
        began = time.perf_counter()
        key = (name, stores.settings.celebrity_threshold)
        copy = self._copies.get(key)
        if rebuild and copy is not None:
            restored = await copy.restore(stores)
            await restart_activity(stores, [name])
            return (
                f"derived state restored from its copy ({restored:,} timelines) in {time.perf_counter() - began:.1f}s"
            )
        done = None
        if rebuild:
            entries = await rebuild_timelines(stores, timeline_owners([name]))
            done = f"derived state rebuilt ({entries:,} timeline entries) in {time.perf_counter() - began:.1f}s"
        if self.keep_copies:
            self._copies[key] = await TimelineSnapshot.take(stores, name, self.user_ids)
        return done

    async def settle(self, stores: Stores, names: Sequence[str]) -> list[str]:
        """Put every timeline-keeping strategy among ``names`` back into the rebuilt state at the stores' threshold
        (its copy when there is one, else a rebuild); returns the strategies settled, after a run's undo.
        """
        settled = []
        for name in dict.fromkeys(names):
            if not keeps_timelines(name):
                continue
            copy = self._copies.get((name, stores.settings.celebrity_threshold))
            if copy is not None:
                await copy.restore(stores)
                await restart_activity(stores, [name])
            else:
                await rebuild_timelines(stores, timeline_owners([name]))
            settled.append(name)
        return settled
