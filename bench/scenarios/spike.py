"""``spike``: a celebrity's burst of posts during steady load, and what it does to everyone else.

At ``spike_at`` the most-followed (or named) accounts publish ``spike_posts`` posts each; those accounts post
nothing else, so before and after the burst show the steady state. The result's ``spike`` block has everyone's
reads before, during and after the burst, the burst's publish latency, delivery lag, write amplification, time to
full delivery, and the memory growth of Redis and of the strategy's own follower timelines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from bench.metrics import keys_memory, redis_used_memory, write_amplification
from bench.results import latency_block
from bench.scenarios.base import BenchConfig, Scenario
from bench.workload import Op
from graphs.info import GraphInfo
from targets.declared import option
from targets.histograms import new_histogram
from targets.stores.connections import Stores
from targets.stores.timelines import Timelines
from targets.strategies.registry import keeps_timelines

if TYPE_CHECKING:
    from bench.scenarios.run import StrategyOutcome

#: Kind under which the driver records the spike's posts (ordinary posts are "post").
SPIKE = "spike"
#: Followers whose timelines are weighed (MEMORY USAGE) around the spike.
MEMORY_SAMPLE = 500


@dataclass(frozen=True)
class SpikeOptions:
    """The spike's own options."""

    spike_at: float = option(10.0, "Spike: seconds into the load when the burst starts.", min=0)
    spike_window: float = option(5.0, "Spike: seconds counted as 'during'.", min=0, min_open=True)
    spike_accounts: int = option(1, "Spike: the K most-followed accounts post.", min=1)
    spike_users: tuple[int, ...] = option(
        (), "Spike: a named account posts instead (repeatable).", flag="--spike-user", multiple=True
    )
    spike_posts: int = option(1, "Spike: posts per account in the burst.", min=1)


@dataclass(frozen=True)
class SpikeMemory:
    """Redis memory just before the burst and at the end of the spike window.

    ``used_*`` is the server's used_memory (every client's keys); ``sampled_*`` is MEMORY USAGE of the strategy's
    timelines of a seeded sample of the spike accounts' followers, which scales to all ``followers``.
    """

    used_before: int
    used_after: int
    sampled_before: int
    sampled_after: int
    sample_size: int
    followers: int

    @property
    def timelines_growth(self) -> int | None:
        """Estimated growth of the followers' timelines (None when the strategy keeps none)."""
        if not self.sample_size:
            return None
        return round((self.sampled_after - self.sampled_before) * self.followers / self.sample_size)


class Spike(Scenario):
    """A burst of posts by the most followed (or named) accounts at ``spike_at``."""

    name: ClassVar[str] = "spike"
    Options: ClassVar[type] = SpikeOptions
    publish_kinds: ClassVar[tuple[str, ...]] = (SPIKE,)

    @classmethod
    def check(cls, config: BenchConfig) -> None:
        o: SpikeOptions = config.options
        if not 0 <= o.spike_at < config.duration:
            raise ValueError(f"spike time {o.spike_at}s is not within the {config.duration}s run: pass --spike-at")

    def __init__(self, config: BenchConfig, graph: GraphInfo) -> None:
        super().__init__(config, graph)
        o: SpikeOptions = self.options
        #: The burst's accounts as (user id, followers).
        self.accounts = self._accounts(o, graph)
        self.memory: SpikeMemory | None = None
        self._keys: list[str] = []
        self._followers = 0

    @staticmethod
    def _accounts(o: SpikeOptions, graph: GraphInfo) -> list[tuple[int, int]]:
        if o.spike_users:
            counts = dict(zip(graph.user_ids, graph.follower_counts, strict=True))
            missing = [u for u in o.spike_users if u not in counts]
            if missing:
                raise ValueError(f"--spike-user {missing[0]} is not in the loaded graph: name an existing user id")
            return [(u, counts[u]) for u in o.spike_users]
        return graph.top_accounts(o.spike_accounts)

    def quiet_authors(self) -> Sequence[int]:
        return [user for user, _ in self.accounts]

    def extra_ops(self) -> Sequence[tuple[float, Op]]:
        o: SpikeOptions = self.options
        n = len(self.accounts)
        return [
            (o.spike_at, Op("post", user, None, -1 - (i * n + j)))
            for i in range(o.spike_posts)
            for j, (user, _) in enumerate(self.accounts)
        ]

    def kind_of(self, op: Op) -> str:
        return SPIKE if op.seq < 0 else op.kind

    async def before_load(self, stores: Stores, strategy: str) -> None:
        """Pick the seeded sample of the accounts' followers whose timelines are weighed around the burst."""
        if not keeps_timelines(strategy):
            return
        ids = [user for user, _ in self.accounts]
        s = stores.settings
        timelines = Timelines(stores.redis, s.prefix, strategy, s.timeline_cap, tags=stores.tags)
        self._followers = await stores.social.distinct_followers(ids)
        sample = await stores.social.follower_sample(ids, MEMORY_SAMPLE, self.config.seed)
        self._keys = [timelines.key(u) for u in sample]

    async def during_load(self, stores: Stores) -> None:
        """Redis memory just before the burst and at the end of the spike window (see :class:`SpikeMemory`)."""
        o: SpikeOptions = self.options
        start = time.perf_counter()
        await asyncio.sleep(max(0.0, o.spike_at - 0.1))
        used_before, sampled_before = await redis_used_memory(stores), await keys_memory(stores, self._keys)
        await asyncio.sleep(max(0.0, start + o.spike_at + o.spike_window - time.perf_counter()))
        used_after, sampled_after = await redis_used_memory(stores), await keys_memory(stores, self._keys)
        self.memory = SpikeMemory(
            used_before, used_after, sampled_before, sampled_after, len(self._keys), self._followers
        )

    def result(self, outcome: StrategyOutcome) -> dict[str, Any]:
        """The ``spike`` block: everyone's reads around the burst, and what the burst cost."""
        o: SpikeOptions = self.options
        r = outcome.drive
        reads = r.kinds.get("read")
        first = int(o.spike_at / r.window_s)
        last = first + max(1, round(o.spike_window / r.window_s)) - 1

        def phase(lo: int, hi: int) -> dict[str, Any]:
            return latency_block(reads.window_latency(lo, hi) if reads else new_histogram(), encode=False)

        burst = [p for p in outcome.published if p.scenario]
        # Unobservable through a foreign service with async fan-out: reported as null, not as the receipts' zeros.
        entries = None if "write_amplification" in outcome.not_measured else outcome.entries_written(burst)
        delivered = [outcome.deliveries[p.post_id] for p in burst if p.post_id in outcome.deliveries]
        done = [d.done for d in delivered if d.done is not None]
        spike_stats = r.kinds.get(SPIKE)
        memory = self.memory
        return {
            "at_s": o.spike_at,
            "during_s": (last - first + 1) * r.window_s,
            "celebrities": [{"user_id": u, "followers": f} for u, f in self.accounts],
            "posts": len(burst),
            "reads": {"before": phase(0, first - 1), "during": phase(first, last), "after": phase(last + 1, 10**9)},
            "publish": latency_block(
                spike_stats.latency if spike_stats else new_histogram(),
                uncorrected=spike_stats.service if spike_stats else None,
            ),
            "delivery_lag": latency_block(outcome.delivery_lag(burst)),
            "time_to_full_delivery_ms": (
                round((max(done) - min(d.origin for d in delivered)) * 1000, 3) if done else None
            ),
            "write_amplification": None if entries is None else write_amplification(entries, len(burst)),
            "timeline_entries_written": entries,
            # None when the load ran against a service whose Redis the harness cannot see (never sampled).
            "redis_memory_growth_bytes": memory.used_after - memory.used_before if memory else None,
            # The server's used_memory counts every client; this is the strategy's own timelines, from a sample.
            "timelines_memory_growth_bytes": memory.timelines_growth if memory else None,
        }
