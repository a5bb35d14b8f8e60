"""One strategy's measured run, the same for every scenario.

The same seeded :class:`~bench.workload.Workload` drives the strategy through the open-loop
:class:`~bench.driver.Driver`, with the scenario's own operations merged in: in process, or a service over HTTP with
``--target`` (the binding is chosen by :func:`bench.bindings.factory.open_binding`, which also says what a service
lets the run observe). Around the load the servers' counters and memory are sampled; after it the fan-out is drained,
deliveries are read (from the strategy's write hook with sync fan-out, from the workers' delivery reports with async),
and the correctness oracle is checked on a sample of users. :func:`block` turns the outcome into the strategy's result
block.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.bindings.factory import Binding, open_binding, undo_through_api
from bench.bindings.operations import Tally
from bench.bindings.receipts import Published
from bench.bindings.service import counted_by_service, service_counters
from bench.disturbance import Guard
from bench.driver import Driver, DriveResult, Schedule
from bench.faults import FaultRun
from bench.metrics import memory, redis_used_memory, server_counters, write_amplification
from bench.recovery import LossWatch, posts_lost
from bench.results import latency_block
from bench.scenarios.base import RETURNING_READ, BenchConfig, Scenario
from bench.scenarios.changes import RunChanges
from bench.scenarios.oracle import check_oracle
from bench.scenarios.processes import drive_in_processes, merge_writes
from bench.scenarios.registry import SCENARIOS
from bench.workload import Mix, Op, Workload
from graphs.info import GraphInfo
from targets.eventloop import handled_cancel, raise_if_cancelled
from targets.fanout.reports import delivery_report, written_totals
from targets.fanout.worker import drain
from targets.histograms import merged, new_histogram, record_seconds
from targets.stores.activity import Activity
from targets.stores.connections import Stores
from targets.stores.replicas import LagSampler
from targets.stores.timelines import Timelines
from targets.strategies.adaptive import AdaptiveStrategy
from targets.strategies.registry import keeps_timelines, make_strategy, per_edge_owners, timeline_owners

#: How long to wait for the fan-out queue to empty after a strategy's load.


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


class WriteLog:
    """Listens to a strategy's timeline writes (its ``on_written`` hook): when each batch of a post landed."""

    def __init__(self) -> None:
        #: post id -> [(perf_counter when written, entries added)]
        self.batches: dict[int, list[tuple[float, int]]] = defaultdict(list)

    def __call__(self, post_id: int, entries: int) -> None:
        self.batches[post_id].append((time.perf_counter(), entries))


@dataclass
class StrategyOutcome:
    """What one strategy's run measured (turned into the result's ``strategies.<name>`` by :func:`block`)."""

    name: str
    scenario: Scenario
    #: The run's posts and churn, for the caller to undo.
    changes: RunChanges
    drive: DriveResult
    published: list[Published]
    deliveries: dict[int, Delivery] = field(default_factory=dict)
    store_counters: dict[str, Any] | None = None
    #: What the strategy's policy did: deliveries skipped (inactive followers, pulled edges), timelines rebuilt for
    #: returning readers, and for a per-edge strategy the edges pushed at the end (the result's ``policy`` block).
    policy: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    oracle: dict[str, Any] | None = None
    #: What else loaded the machine and the stores during the load (:mod:`bench.disturbance`).
    disturbance: dict[str, Any] | None = None
    complete: bool = False
    #: Why the run could not complete after its load (a store error, the queue not draining); None otherwise.
    failure: str | None = None
    #: The result's ``target`` block when the run drove a service (None in process).
    target: dict[str, Any] | None = None
    #: Result figures the binding could not observe (reported as null and named, never made up).
    not_measured: tuple[str, ...] = ()
    #: What the workload asked for (the result's ``workload`` block: read mix, pages, body sizes).
    workload: dict[str, Any] | None = None
    #: One block per fault injected during the load (``--fault``, :mod:`bench.faults`).
    faults: list[dict[str, Any]] | None = None
    #: Derived state rebuilt after Redis lost it, and the check that no post was lost (:mod:`bench.recovery`).
    recovery: dict[str, Any] | None = None
    #: How far the PostgreSQL replicas read from were behind during the load (:class:`LagSampler`); None without.
    replica_lag: dict[str, Any] | None = None

    def delivery_lag(self, posts: Sequence[Published]) -> HdrHistogram:
        """Lag of every timeline entry the posts' fan-out wrote (see :class:`Delivery` for its origin)."""
        return merged(self.deliveries[p.post_id].lag for p in posts if p.post_id in self.deliveries)

    def entries_written(self, posts: Sequence[Published]) -> int:
        """Timeline entries the posts' fan-out wrote: the publish receipts' counts plus, async, the workers'."""
        return sum(
            self.deliveries[p.post_id].entries if p.post_id in self.deliveries else p.entries_written for p in posts
        )


async def run_strategy(
    stores: Stores,
    name: str,
    config: BenchConfig,
    graph: GraphInfo,
    on_driver: Callable[[Driver[Op]], None] | None = None,
    *,
    workers: int = 0,
    on_phase: Callable[[str], None] | None = None,
    faults: FaultRun | None = None,
) -> StrategyOutcome:
    """Drive one strategy with the seeded workload and the scenario, then measure counters, memory and the oracle.

    The caller resets derived state before and undoes the run's changes after (``outcome.changes``). A cancelled
    load (Ctrl-C) returns what was measured with ``complete`` False and skips the after-run checks. ``workers``:
    fan-out worker processes running beside it (the disturbance guard allows for their own Redis commands).
    ``on_phase`` is told as the run enters the phases around its load ("warming up", "draining the fan-out queue").
    A Ctrl-C in the warm-up raises :class:`asyncio.CancelledError` (nothing was measured or changed yet). ``faults``
    are injected during the load. Whenever Redis loses the strategy's derived state (a fault or not) it is rebuilt at
    once, and after the drain every post of the run is checked against Postgres.
    """
    scenario = SCENARIOS[config.scenario](config, graph)
    writes = WriteLog()
    changes = await RunChanges.mark(stores)
    async with open_binding(
        config.target, name, stores, config.page_size, changes.churn, writes, config.max_in_flight
    ) as binding:
        outcome = await _drive(
            stores,
            name,
            config,
            graph,
            scenario,
            changes,
            binding,
            writes,
            on_driver,
            workers,
            on_phase or _quiet,
            faults,
        )
        if not binding.own_namespace and outcome.target is not None:
            changes.posts_here = False  # none of the run's posts is in the harness's stores
            outcome.target["undo"] = await undo_through_api(binding)
        return outcome


async def _drive(
    stores: Stores,
    name: str,
    config: BenchConfig,
    graph: GraphInfo,
    scenario: Scenario,
    changes: RunChanges,
    binding: Binding,
    writes: WriteLog,
    on_driver: Callable[[Driver[Op]], None] | None,
    workers: int,
    on_phase: Callable[[str], None],
    faults: FaultRun | None,
) -> StrategyOutcome:
    """:func:`run_strategy` once the binding is chosen; what the stores hold is read only when they are the target's."""
    own = binding.own_namespace
    mix = Mix(config.read_ratio, config.churn_ratio, config.user_timeline_ratio)
    model = make_workload(config, graph, mix, config.seed, scenario.quiet_authors())
    workload = Tally(model.next_op)
    if own and stores.settings.rate_source == "declared" and per_edge_owners([name]):
        await Activity(stores.redis, stores.settings.prefix, name).declare(*model.declared_rates())
    split = config.driver_processes > 1
    if config.warmup > 0 and not split:  # driver processes warm up their own connections
        on_phase("warming up")
        await warm_up(binding.target, config, graph)
    raise_if_cancelled()
    # Driver processes build their own drivers; here only one process drives.
    driver = (
        None
        if split
        else make_driver(binding.target, workload, config, scenario, on_record=faults.record if faults else None)
    )
    guard = Guard(stores)
    lag = LagSampler(stores.pg, len(stores.replicas) if own else 0)
    if own:
        await scenario.before_load(stores, name)
        policy_before = await written_totals(stores)
        before = await server_counters(stores)
        used_before = await redis_used_memory(stores)
    # The service's own counts (its /metrics), to report beside the harness's: after the warm-up, before the load.
    counted_before = await service_counters(binding.service) if binding.service else None
    await guard.start()
    watch = LossWatch(stores, timeline_owners([name]) if own else {})
    await watch.start()
    observer: asyncio.Task[None] | None = None

    def load_starts() -> None:
        nonlocal observer
        if on_driver and driver is not None:  # told just before the load starts, with no await in between
            on_driver(driver)
        elif split:
            on_phase(f"load running in {config.driver_processes} driver processes (figures when it ends)")
        watch.origin = time.perf_counter()
        lag.start()
        if faults is not None:
            faults.start()
        # The scenario samples the stores while the load runs: only when they hold the target's data.
        observer = asyncio.create_task(scenario.during_load(stores) if own else asyncio.sleep(0))

    try:
        if split:
            shared = await drive_in_processes(stores, name, config, graph, load_starts)
            result = shared.drive
            binding.published.extend(shared.published)
            merge_writes(writes, shared.batches)
            changes.churn.extend(shared.churn)
        else:
            assert driver is not None
            load_starts()
            result = await driver.run()
        assert observer is not None
        if not result.interrupted:
            try:
                await observer  # a scenario's last sample may be due right at the end of the load
            except asyncio.CancelledError:  # Ctrl-C right after the load: what the load measured stands
                handled_cancel()
                result.interrupted = True
    finally:
        if observer is not None and not observer.done():
            observer.cancel()
        replica_lag = await lag.stop()
    summary = shared.workload if split else workload.summary()
    outcome = StrategyOutcome(name, scenario, changes, result, binding.published, workload=summary)
    outcome.target, outcome.not_measured = binding.description, binding.not_measured
    outcome.replica_lag = replica_lag
    if result.interrupted:
        guard.cancel()
        watch.cancel()
        if faults is not None:
            faults.cancel()
        outcome.deliveries = receipt_deliveries(binding, writes)
        return outcome
    if split and shared.failure is not None:  # the other processes' figures stand, and their changes are undone
        guard.cancel()
        watch.cancel()
        outcome.failure = shared.failure
        outcome.deliveries = receipt_deliveries(binding, writes)
        return outcome
    try:
        raise_if_cancelled()
        if faults is not None:  # a restart under way at the end of the load completes before the drain
            await faults.settle()
            outcome.faults = faults.block(result, scenario.publish_kinds)
        await watch.stop()
        if own and binding.fanout == "async":
            on_phase("draining the fan-out queue")
        if own:
            await drain(stores, config.drain_timeout, "--drain-timeout")
        if own and binding.fanout == "async":
            outcome.deliveries = await async_deliveries(stores, name, binding.published)
        else:
            outcome.deliveries = receipt_deliveries(binding, writes)
        outcome.disturbance = await guard.stop(
            entries_written=outcome.entries_written(binding.published), posts=len(binding.published), workers=workers
        )
        if own:
            after = await server_counters(stores)
            outcome.store_counters = after.since(before, result.completed)
            outcome.policy = await policy_block(stores, name, graph, policy_before)
            timelines = _timeline_sample(stores, name, graph, config.seed)
            outcome.memory = await memory(stores, used_before, timelines=timelines)
        # After the counters and the memory: its reads are the check's, not the run's.
        if own and (faults is not None or watch.rebuilds):
            owners = timeline_owners([name])
            acknowledged = [p.post_id for p in binding.published]
            lost = await posts_lost(stores, name if owners else None, owners.get(name), changes.post_mark, acknowledged)
            outcome.recovery = {**watch.block(), "posts_lost": lost}
        if binding.service is not None and outcome.target is not None:  # before the oracle's reads
            outcome.target["service_counted"] = await counted_by_service(binding.service, counted_before)
        raise_if_cancelled()
        if binding.pages is None:
            outcome.oracle = {"verdict": "skipped", "users_checked": 0, "detail": binding.oracle_skipped or ""}
        else:
            outcome.oracle = await check_oracle(
                binding.pages, graph.user_ids, config.oracle_users, config.page_size, config.seed, stores=stores
            )
    except asyncio.CancelledError:  # Ctrl-C after the load: keep what the load measured
        handled_cancel()
        guard.cancel()
        watch.cancel()
        if not outcome.deliveries:
            outcome.deliveries = receipt_deliveries(binding, writes)
        return outcome
    except Exception as exc:  # a store or the queue failing after the load: what the load measured stands
        guard.cancel()
        watch.cancel()
        outcome.failure = f"{type(exc).__name__}: {exc}"[:500]
        if not outcome.deliveries:
            outcome.deliveries = receipt_deliveries(binding, writes)
        return outcome
    outcome.complete = True
    return outcome


def _quiet(phase: str) -> None:
    """Phases go unannounced."""


def target_note(outcome: StrategyOutcome) -> str | None:
    """One line on the service a ``--target`` run drove: its namespace, what was not measured, the oracle, the undo."""
    t = outcome.target
    if t is None:
        return None
    parts = [f"drove {t['url']} ({t['namespace']} namespace: {t['namespace_detail']})"]
    if t["not_measured"]:
        parts.append(f"not measured: {', '.join(t['not_measured'])}")
    if outcome.oracle and outcome.oracle["verdict"] == "skipped":
        parts.append("oracle skipped")
    if "undo" in t:
        parts.append(t["undo"])
    return "; ".join(parts)


async def policy_block(
    stores: Stores, name: str, graph: GraphInfo, before: dict[str, dict[str, int]]
) -> dict[str, Any] | None:
    """What the strategy's policy did during the run, from the fan-out's own counts (None for pull)."""
    if not keeps_timelines(name):
        return None
    now, then = (await written_totals(stores)).get(name, {}), before.get(name, {})

    def since(what: str) -> int:
        return now.get(what, 0) - then.get(what, 0)

    block: dict[str, Any] = {
        "active_window_s": stores.settings.active_window_s,
        "deliveries_skipped_inactive": since("skipped"),
        "timelines_regenerated": since("regenerated"),
    }
    if per_edge_owners([name]):
        strategy = make_strategy(name, stores)
        assert isinstance(strategy, AdaptiveStrategy)
        pulled, edges = await strategy.edges_pulled(graph.user_ids)
        block |= {
            "deliveries_skipped_pulled": since("pulled"),
            "edges_pulled_by_fanout": since("flipped"),
            "rate_source": stores.settings.rate_source,
            "cost_ratio": stores.settings.cost_ratio,
            "edges": edges,
            "edges_pulled": pulled,
            "edges_pushed_fraction": round(1 - pulled / edges, 6) if edges else None,
        }
    return block


#: Users whose home timelines are weighed (MEMORY USAGE) to estimate a strategy's timelines memory.
TIMELINE_SAMPLE = 500


def _timeline_sample(stores: Stores, name: str, graph: GraphInfo, seed: int) -> tuple[list[str], int] | None:
    """A seeded sample of the strategy's timeline keys and the user count, or None if it keeps no timelines."""
    if not keeps_timelines(name):
        return None
    users = graph.user_ids
    sample = random.Random(seed).sample(list(users), min(TIMELINE_SAMPLE, len(users)))
    timelines = Timelines(stores.redis, stores.settings.prefix, name, stores.settings.timeline_cap, tags=stores.tags)
    return [timelines.key(u) for u in sample], len(users)


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
        body_sizes=config.body_sizes(),
        page_depths=config.page_depths(),
        max_mentions=config.mentions,
        author_rates=config.author_rate_model,
        dormant=config.dormant,
        returning=config.returning,
        horizon=max(1, round(config.rate * config.duration)),  # returning users come back within the run
    )


def make_driver(
    target: Callable[[Op], Awaitable[None]],
    source: Callable[[], Op],
    config: BenchConfig,
    scenario: Scenario,
    *,
    share: tuple[int, int] = (0, 1),
    on_record: Callable[[str, float, str | None], None] | None = None,
) -> Driver[Op]:
    """The driver of a strategy's measured load: the configured schedule, with the scenario's own operations."""
    return Driver(
        target,
        source,
        Schedule(config.rate, config.duration, config.arrival, config.seed),
        max_in_flight=config.max_in_flight,
        kind_of=scenario.kind_of,
        subset_of=scenario.subset_of,
        extra=scenario.extra_ops(),
        on_record=on_record,
        share=share,
    )


async def warm_up(target: Callable[[Op], Awaitable[None]], config: BenchConfig, graph: GraphInfo) -> None:
    """Reads only (they change nothing), at the target rate for ``warmup`` seconds, not measured.

    Connection pools grow to what the load needs and caches settle, so the first measured second of a strategy is
    not its set-up; a different seed keeps the measured operations exactly the configured workload.
    """
    if config.warmup <= 0:
        return
    reads = make_workload(config, graph, Mix(1.0, 0.0, config.user_timeline_ratio), config.seed + 1_000_003)
    driver: Driver[Op] = Driver(target, reads.next_op, Schedule(config.rate, config.warmup))
    if (await driver.run()).interrupted:  # Ctrl-C: the measured load must not start after all
        raise asyncio.CancelledError


def receipt_deliveries(binding: Binding, writes: WriteLog) -> dict[int, Delivery]:
    """Deliveries as the publish receipts counted them: timed batch by batch by the write hook in process; over HTTP
    with the entries the service reported and no lag (the client cannot see when each timeline was written)."""
    return sync_deliveries(binding.published, writes if binding.write_hook else WriteLog())


def sync_deliveries(published: Sequence[Published], writes: WriteLog) -> dict[int, Delivery]:
    """Deliveries as the publish calls themselves wrote them (sync fan-out), timed batch by batch."""
    deliveries = {}
    for post in published:
        batches = [(t, n) for t, n in writes.batches.get(post.post_id, ()) if n]
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


# -- the result block ---------------------------------------------------------------------------------------------
def block(outcome: StrategyOutcome, config: BenchConfig) -> dict[str, Any]:
    """The result's ``strategies.<name>`` block (the scenario adds its own under its name)."""
    r = outcome.drive
    kinds = r.kinds
    empty = new_histogram()

    def measured(*names: str) -> dict[str, Any]:
        stats = [kinds[n] for n in names if n in kinds]
        return latency_block(
            merged(s.latency for s in stats) if stats else empty,
            uncorrected=merged(s.service for s in stats) if stats else empty,
        )

    entries: int | None = outcome.entries_written(outcome.published)
    if "write_amplification" in outcome.not_measured:
        entries = None
    errors: Counter[str] = Counter()
    for stats in kinds.values():
        errors.update(stats.errors)
    series = r.series()
    reads = r.series(["read"])
    for row, read_row in zip(series, reads, strict=False):
        row["read_p99_ms"] = read_row["p99_ms"]
    doc: dict[str, Any] = {
        "complete": outcome.complete,
        **({"incomplete_reason": outcome.failure} if outcome.failure else {}),
        "read": measured("read"),
        "publish": measured("post", *outcome.scenario.publish_kinds),
        "delivery_lag": latency_block(outcome.delivery_lag(outcome.published)),
        "write_amplification": None if entries is None else write_amplification(entries, len(outcome.published)),
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
    for optional in ("user_timeline", "follow", "unfollow"):
        if optional in kinds:
            doc[optional] = measured(optional)
    returning = r.subsets.get(RETURNING_READ)
    if returning is not None:
        doc[RETURNING_READ] = latency_block(returning.latency, uncorrected=returning.service)
    if outcome.workload is not None:
        doc["workload"] = outcome.workload
    if outcome.store_counters is not None:
        doc["store_counters"] = outcome.store_counters
    if outcome.policy is not None:
        doc["policy"] = outcome.policy
    if outcome.memory is not None:
        doc["memory"] = outcome.memory
    if outcome.oracle is not None:
        doc["oracle"] = outcome.oracle
    if outcome.target is not None:
        doc["target"] = outcome.target
    if outcome.disturbance is not None:
        doc["disturbance"] = outcome.disturbance
    if outcome.faults is not None:
        doc["faults"] = outcome.faults
    if outcome.recovery is not None:
        doc["recovery"] = outcome.recovery
    if outcome.replica_lag is not None:
        doc["replica_lag"] = outcome.replica_lag
    extra = outcome.scenario.result(outcome)
    if extra is not None:
        doc[outcome.scenario.name] = extra
    return doc
