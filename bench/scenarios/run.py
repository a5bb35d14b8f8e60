"""Benchmark scenarios, one strategy at a time: ``steady`` load, and a celebrity ``spike`` during steady load.

For each strategy the same seeded :class:`~bench.workload.Workload` drives the strategy in process through the
open-loop :class:`~bench.driver.Driver`. Around the load: the servers' counters and memory are sampled, and after it
the fan-out is drained and the correctness oracle checked on a sample of users (the strategy's pages must equal the
pages computed from Postgres). The spike adds a burst of posts by the most-followed (or named) accounts at a set
time and reports everyone's reads before, during and after it, the burst's publish latency, delivery lag and write
amplification, and Redis memory growth.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.driver import Arrival, Driver, DriveResult, Schedule
from bench.metrics import keys_memory, memory, redis_used_memory, server_counters, write_amplification
from bench.results import latency_block
from bench.scenarios.prepare import GraphInfo, RunChanges
from bench.workload import Mix, Op, Workload
from targets.fanout.reports import delivery_report
from targets.fanout.worker import drain
from targets.histograms import merged, new_histogram, record_seconds
from targets.stores.connections import Stores
from targets.stores.timelines import Timelines
from targets.strategies.base import Strategy
from targets.strategies.pull import PullStrategy
from targets.strategies.registry import make_strategy

SCENARIOS = ("steady", "spike")
READER_ORDERS = ("followees", "random")
#: Followers whose timelines are weighed (MEMORY USAGE) around the spike.
MEMORY_SAMPLE = 500
#: How long to wait for the fan-out queue to empty after a strategy's load.
DRAIN_TIMEOUT_S = 120.0
#: Kind under which the driver records the spike's posts (ordinary posts are "post").
SPIKE = "spike"


@dataclass(frozen=True)
class BenchConfig:
    """Every parameter of a benchmark run (all of them go into the result's ``run.parameters``)."""

    scenario: str = "steady"
    rate: float = 200.0
    duration: float = 30.0
    read_ratio: float = 0.95
    churn_ratio: float = 0.0
    seed: int = 1
    arrival: Arrival = "constant"
    max_in_flight: int = 256
    page_size: int = 50
    reader_skew: float = 1.0
    #: "followees": the most active readers are those who follow the most accounts; "random": a seeded order.
    readers: str = "followees"
    author_alpha: float = 0.5
    #: Spike: when the burst starts (seconds into the load), how long "during" lasts, and the burst itself.
    spike_at: float = 10.0
    spike_window: float = 5.0
    spike_accounts: int = 1
    spike_users: tuple[int, ...] = ()
    spike_posts: int = 1
    oracle_users: int = 100
    #: Seconds of unmeasured, read-only load before each strategy's measured run.
    warmup: float = 2.0

    def __post_init__(self) -> None:
        if self.readers not in READER_ORDERS:
            raise ValueError(f"reader order {self.readers!r} is not one of {', '.join(READER_ORDERS)}")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario {self.scenario!r} is not one of {', '.join(SCENARIOS)}")
        Mix(self.read_ratio, self.churn_ratio)  # validates the mix
        Schedule(self.rate, self.duration, self.arrival)  # validates the schedule
        if self.scenario == "spike" and not 0 <= self.spike_at < self.duration:
            raise ValueError(f"spike time {self.spike_at}s is not within the {self.duration}s run: pass --spike-at")
        if self.spike_posts < 1 or (self.spike_accounts < 1 and not self.spike_users):
            raise ValueError("a spike needs at least one account and one post: check --spike-accounts/--spike-posts")

    def parameters(self) -> dict[str, Any]:
        """The parameters as JSON values."""
        values = asdict(self)
        values["spike_users"] = list(self.spike_users)
        return values


# -- timing of timeline writes ----------------------------------------------------------------------------------------
class TimedTimelines(Timelines):
    """Timelines that note when each batch of a post's fan-out was written and how many entries it added."""

    def __init__(self, base: Timelines) -> None:
        super().__init__(base.redis, base.prefix, base.owner, base.cap)
        #: post id -> [(perf_counter when written, entries added)]
        self.batches: dict[int, list[tuple[float, int]]] = defaultdict(list)

    async def add_to_many(self, user_ids: Sequence[int], post_id: int) -> int:
        added = await super().add_to_many(user_ids, post_id)
        self.batches[post_id].append((time.perf_counter(), added))
        return added


@dataclass(frozen=True)
class Delivery:
    """How one post reached its followers' timelines, as the write path counted it.

    ``origin`` and ``done`` are seconds on one clock: with sync fan-out the driver's (``origin`` is the publish
    call, since sync fan-out writes before it acknowledges); with async fan-out Redis's (``origin`` is the
    acknowledgement, as the queue records it). ``lag`` holds one value per timeline entry written.
    """

    entries: int
    lag: HdrHistogram
    origin: float
    done: float | None


@dataclass(frozen=True, slots=True)
class Published:
    """One post the run published: when it was started and acknowledged, and what its receipt counted."""

    post_id: int
    author: int
    began: float
    acked: float
    entries_written: int
    spike: bool


@dataclass
class StrategyTarget:
    """The async callable the driver drives: applies one :class:`Op` to a strategy and keeps its receipts."""

    strategy: Strategy
    page_size: int
    changes: RunChanges
    published: list[Published] = field(default_factory=list)

    async def __call__(self, op: Op) -> None:
        s = self.strategy
        if op.kind == "read":
            await s.home_timeline(op.user, self.page_size)
        elif op.kind == "post":
            began = time.perf_counter()
            receipt = await s.publish(op.user, f"bench post {op.seq} by {op.user}")
            acked = time.perf_counter()
            self.published.append(
                Published(receipt.post_id, op.user, began, acked, receipt.entries_written, op.seq < 0)
            )
        elif op.kind == "follow":
            assert op.other is not None
            if await s.follow(op.user, op.other):
                self.changes.churn.append((1, op.user, op.other))
        elif op.kind == "unfollow":
            assert op.other is not None
            if await s.unfollow(op.user, op.other):
                self.changes.churn.append((-1, op.user, op.other))
        else:  # pragma: no cover - the workload only makes the four kinds
            raise ValueError(f"unknown operation kind {op.kind!r}")


def kind_of(op: Op) -> str:
    """The driver's recording kind: the op's kind, with the spike's posts (negative seq) apart."""
    return SPIKE if op.seq < 0 else op.kind


# -- one strategy's run -------------------------------------------------------------------------------------------
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


@dataclass
class StrategyOutcome:
    """What one strategy's run measured (turned into the result's ``strategies.<name>`` by :func:`block`)."""

    name: str
    #: The run's posts and churn, for the caller to undo.
    changes: RunChanges
    drive: DriveResult
    published: list[Published]
    deliveries: dict[int, Delivery]
    spike_accounts: list[tuple[int, int]]
    spike_memory: SpikeMemory | None = None
    store_counters: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    oracle: dict[str, Any] | None = None
    complete: bool = False


def spike_accounts(config: BenchConfig, graph: GraphInfo) -> list[tuple[int, int]]:
    """The spike's accounts as (user id, followers): the named ones, else the K most followed."""
    if config.spike_users:
        counts = dict(zip(graph.user_ids, graph.follower_counts, strict=True))
        missing = [u for u in config.spike_users if u not in counts]
        if missing:
            raise ValueError(f"spike account(s) {missing} are not in the loaded graph: name existing user ids")
        return [(u, counts[u]) for u in config.spike_users]
    return graph.top_accounts(config.spike_accounts)


def spike_ops(config: BenchConfig, accounts: list[tuple[int, int]]) -> list[tuple[float, Op]]:
    """The burst as extra driver operations at ``spike_at`` (negative seqs mark them)."""
    ops = []
    for i in range(config.spike_posts):
        for j, (user, _) in enumerate(accounts):
            ops.append((config.spike_at, Op("post", user, None, -1 - (i * len(accounts) + j))))
    return ops


async def run_strategy(
    stores: Stores,
    name: str,
    config: BenchConfig,
    graph: GraphInfo,
    on_driver: Callable[[Driver[Op]], None] | None = None,
) -> StrategyOutcome:
    """Drive one strategy with the seeded workload, then measure counters, memory and the oracle.

    The caller resets derived state before and undoes the run's changes after (see :mod:`bench.scenarios.prepare`). A
    cancelled load (Ctrl-C) returns what was measured with ``complete`` False and skips the after-run checks.
    """
    strategy = make_strategy(name, stores)
    timed: TimedTimelines | None = None
    if isinstance(getattr(strategy, "timelines", None), Timelines):
        timed = TimedTimelines(strategy.timelines)  # type: ignore[attr-defined]
        strategy.timelines = timed  # type: ignore[attr-defined]
    changes = await RunChanges.mark(stores)
    target = StrategyTarget(strategy, config.page_size, changes)
    accounts = spike_accounts(config, graph) if config.scenario == "spike" else []
    # The spike's accounts post only in the burst, so before and after it show the steady state.
    quiet = [user for user, _ in accounts]
    workload = make_workload(config, graph, Mix(config.read_ratio, config.churn_ratio), config.seed, quiet)
    await warm_up(target, config, graph)
    driver: Driver[Op] = Driver(
        target,
        workload.next_op,
        Schedule(config.rate, config.duration, config.arrival, config.seed),
        max_in_flight=config.max_in_flight,
        kind_of=kind_of,
        extra=spike_ops(config, accounts) if accounts else (),
    )
    sample, followers = await follower_timeline_sample(strategy, accounts, config.seed)
    before = await server_counters(stores)
    used_before = await redis_used_memory(stores)
    if on_driver:  # told just before the load starts, with no await in between
        on_driver(driver)
    sampler = asyncio.create_task(_sample_spike_memory(stores, config, sample, followers)) if accounts else None
    try:
        result = await driver.run()
        if sampler is not None and not result.interrupted:
            try:
                await sampler  # its last sample is due at the end of the spike window
            except asyncio.CancelledError:  # Ctrl-C right after the load: what the load measured stands
                result.interrupted = True
    finally:
        if sampler is not None and not sampler.done():
            sampler.cancel()
    spike_memory = None
    if sampler is not None and sampler.done() and not sampler.cancelled():
        spike_memory = sampler.result()
    outcome = StrategyOutcome(name, changes, result, target.published, {}, accounts, spike_memory)
    if result.interrupted:
        outcome.deliveries = sync_deliveries(target.published, timed)
        return outcome
    try:
        await drain(stores, DRAIN_TIMEOUT_S)
        if stores.settings.fanout_mode == "async" and timed is not None:
            outcome.deliveries = await async_deliveries(stores, name, target.published)
        else:
            outcome.deliveries = sync_deliveries(target.published, timed)
        after = await server_counters(stores)
        outcome.store_counters = after.since(before, result.completed)
        outcome.memory = await memory(stores, used_before)
        outcome.oracle = await check_oracle(strategy, graph, config)
    except asyncio.CancelledError:  # Ctrl-C after the load: keep what the load measured
        if not outcome.deliveries:
            outcome.deliveries = sync_deliveries(target.published, timed)
        return outcome
    outcome.complete = True
    return outcome


def make_workload(
    config: BenchConfig, graph: GraphInfo, mix: Mix, seed: int, quiet_authors: Sequence[int] = ()
) -> Workload:
    """The configured workload over the loaded graph (``quiet_authors`` never post in it)."""
    return Workload(
        graph.user_ids,
        graph.follower_counts,
        mix,
        seed,
        reader_skew=config.reader_skew,
        author_alpha=config.author_alpha,
        followee_counts=graph.followee_counts if config.readers == "followees" else None,
        quiet_authors=quiet_authors,
    )


async def warm_up(target: StrategyTarget, config: BenchConfig, graph: GraphInfo) -> None:
    """Reads only (they change nothing), at the target rate for ``warmup`` seconds, not measured.

    Connection pools grow to what the load needs and caches settle, so the first measured second of a strategy is
    not its set-up; a different seed keeps the measured operations exactly the configured workload.
    """
    if config.warmup <= 0:
        return
    reads = make_workload(config, graph, Mix(1.0), config.seed + 1_000_003)
    driver: Driver[Op] = Driver(target, reads.next_op, Schedule(config.rate, config.warmup), kind_of=kind_of)
    await driver.run()


async def follower_timeline_sample(
    strategy: Strategy, accounts: Sequence[tuple[int, int]], seed: int
) -> tuple[list[str], int]:
    """Timeline keys of a seeded sample of the spike accounts' followers, and how many followers they have."""
    timelines = getattr(strategy, "timelines", None)
    if not accounts or not isinstance(timelines, Timelines):
        return [], 0
    ids = [user for user, _ in accounts]
    pg = strategy.stores.pg
    followers = await pg.fetchval(
        "SELECT count(DISTINCT follower_id) FROM follows WHERE followee_id = ANY($1::bigint[])", ids
    )
    rows = await pg.fetch(
        "SELECT follower_id FROM (SELECT DISTINCT follower_id FROM follows WHERE followee_id = ANY($1::bigint[])) f"
        " ORDER BY md5(follower_id::text || $2) LIMIT $3",
        ids,
        str(seed),
        MEMORY_SAMPLE,
    )
    return [timelines.key(r["follower_id"]) for r in rows], int(followers)


async def _sample_spike_memory(stores: Stores, config: BenchConfig, keys: list[str], followers: int) -> SpikeMemory:
    """Redis memory just before the burst and at the end of the spike window (see :class:`SpikeMemory`)."""
    start = time.perf_counter()
    await asyncio.sleep(max(0.0, config.spike_at - 0.1))
    used_before, sampled_before = await redis_used_memory(stores), await keys_memory(stores, keys)
    await asyncio.sleep(max(0.0, start + config.spike_at + config.spike_window - time.perf_counter()))
    used_after, sampled_after = await redis_used_memory(stores), await keys_memory(stores, keys)
    return SpikeMemory(used_before, used_after, sampled_before, sampled_after, len(keys), followers)


def sync_deliveries(published: Sequence[Published], timed: TimedTimelines | None) -> dict[int, Delivery]:
    """Deliveries as the publish calls themselves wrote them (sync fan-out), timed batch by batch."""
    deliveries = {}
    for post in published:
        batches = [(t, n) for t, n in (timed.batches.get(post.post_id, ()) if timed else ()) if n]
        lag = new_histogram()
        for written_at, entries in batches:
            record_seconds(lag, written_at - post.began, entries)
        done = max((t for t, _ in batches), default=None)
        deliveries[post.post_id] = Delivery(post.entries_written, lag, post.began, done)
    return deliveries


async def async_deliveries(stores: Stores, owner: str, published: Sequence[Published]) -> dict[int, Delivery]:
    """Deliveries as the fan-out workers recorded them (async fan-out), from each post's delivery report."""
    deliveries = {}
    for post in published:
        report = await delivery_report(stores, post.post_id, owner)
        origin = (report.enqueued_us or 0) / 1e6
        done = report.completed_us / 1e6 if report.completed_us is not None and report.written else None
        deliveries[post.post_id] = Delivery(post.entries_written + report.written, report.lag_us, origin, done)
    return deliveries


async def check_oracle(strategy: Strategy, graph: GraphInfo, config: BenchConfig) -> dict[str, Any]:
    """Compare the strategy's first two pages with Postgres's for a seeded sample of users."""
    reference = PullStrategy(strategy.stores)
    users = random.Random(f"oracle:{config.seed}").sample(graph.user_ids, min(config.oracle_users, len(graph.user_ids)))
    mismatched = []
    for user in users:
        got = [p.id for p in await strategy.home_timeline(user, config.page_size)]
        want = [p.id for p in await reference.home_timeline(user, config.page_size)]
        if got == want and got:
            got += [p.id for p in await strategy.home_timeline(user, config.page_size, got[-1])]
            want += [p.id for p in await reference.home_timeline(user, config.page_size, want[-1])]
        if got != want:
            mismatched.append(user)
    return {
        "verdict": "pass" if not mismatched else "fail",
        "users_checked": len(users),
        "mismatched_users": mismatched[:50],
        "detail": "first two pages of each sampled user compared with the pages computed from Postgres",
    }


# -- the result block ---------------------------------------------------------------------------------------------
def delivery_lag(outcome: StrategyOutcome, posts: Sequence[Published]) -> HdrHistogram:
    """Lag of every timeline entry the posts' fan-out wrote (see :class:`Delivery` for where it is counted from)."""
    return merged(outcome.deliveries[p.post_id].lag for p in posts if p.post_id in outcome.deliveries)


def entries_written(outcome: StrategyOutcome, posts: Sequence[Published]) -> int:
    """Timeline entries the posts' fan-out wrote: the publish receipts' counts plus, async, the workers'."""
    return sum(
        outcome.deliveries[p.post_id].entries if p.post_id in outcome.deliveries else p.entries_written for p in posts
    )


def block(outcome: StrategyOutcome, config: BenchConfig) -> dict[str, Any]:
    """The result's ``strategies.<name>`` block."""
    r = outcome.drive
    kinds = r.kinds
    empty = new_histogram()

    def measured(*names: str) -> dict[str, Any]:
        stats = [kinds[n] for n in names if n in kinds]
        return latency_block(
            merged(s.latency for s in stats) if stats else empty,
            uncorrected=merged(s.service for s in stats) if stats else empty,
        )

    entries = entries_written(outcome, outcome.published)
    errors: Counter[str] = Counter()
    for stats in kinds.values():
        errors.update(stats.errors)
    series = r.series()
    reads = r.series(["read"])
    for row, read_row in zip(series, reads, strict=False):
        row["read_p99_ms"] = read_row["p99_ms"]
    doc: dict[str, Any] = {
        "complete": outcome.complete,
        "read": measured("read"),
        "publish": measured("post", SPIKE),
        "delivery_lag": latency_block(delivery_lag(outcome, outcome.published)),
        "write_amplification": write_amplification(entries, len(outcome.published)),
        "timeline_entries_written": entries,
        "load": {
            "target_rate": config.rate,
            "offered_rate": round(r.offered_rate, 3),
            "achieved_rate": round(r.achieved_rate, 3),
            "duration_s": round(r.elapsed_s, 3),
            "operations": r.completed,
            "arrivals": config.arrival,
            "in_flight_limit": r.in_flight_bound,
            "in_flight_limit_hits": r.bound_hits,
        },
        "series": series,
        "series_window_s": r.window_s,
        "errors": dict(errors),
    }
    for churn in ("follow", "unfollow"):
        if churn in kinds:
            doc[churn] = measured(churn)
    if outcome.store_counters is not None:
        doc["store_counters"] = outcome.store_counters
    if outcome.memory is not None:
        doc["memory"] = outcome.memory
    if outcome.oracle is not None:
        doc["oracle"] = outcome.oracle
    if outcome.spike_accounts:
        doc["spike"] = spike_block(outcome, config)
    return doc


def spike_block(outcome: StrategyOutcome, config: BenchConfig) -> dict[str, Any]:
    """The ``spike`` block: everyone's reads around the burst, and what the burst cost."""
    r = outcome.drive
    reads = r.kinds.get("read")
    first = int(config.spike_at / r.window_s)
    last = first + max(1, round(config.spike_window / r.window_s)) - 1

    def phase(lo: int, hi: int) -> dict[str, Any]:
        return latency_block(reads.window_latency(lo, hi) if reads else new_histogram(), encode=False)

    burst = [p for p in outcome.published if p.spike]
    entries = entries_written(outcome, burst)
    delivered = [outcome.deliveries[p.post_id] for p in burst if p.post_id in outcome.deliveries]
    done = [d.done for d in delivered if d.done is not None]
    spike_stats = r.kinds.get(SPIKE)
    memory = outcome.spike_memory
    return {
        "at_s": config.spike_at,
        "during_s": (last - first + 1) * r.window_s,
        "celebrities": [{"user_id": u, "followers": f} for u, f in outcome.spike_accounts],
        "posts": len(burst),
        "reads": {"before": phase(0, first - 1), "during": phase(first, last), "after": phase(last + 1, 10**9)},
        "publish": latency_block(
            spike_stats.latency if spike_stats else new_histogram(),
            uncorrected=spike_stats.service if spike_stats else None,
        ),
        "delivery_lag": latency_block(delivery_lag(outcome, burst)),
        "time_to_full_delivery_ms": round((max(done) - min(d.origin for d in delivered)) * 1000, 3) if done else None,
        "write_amplification": write_amplification(entries, len(burst)),
        "timeline_entries_written": entries,
        "redis_memory_growth_bytes": memory.used_after - memory.used_before if memory else 0,
        # The server's used_memory counts every client; this is the strategy's own timelines, from a sample.
        "timelines_memory_growth_bytes": memory.timelines_growth if memory else None,
    }
