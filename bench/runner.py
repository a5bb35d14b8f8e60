"""What ``fanout bench`` (and ``fanout sweep``) runs: a plan from the command's options, then the whole run.

Each chosen strategy runs in turn on the same graph with the same seeded workload, in rounds (``--repeat``) of rotated
order; between runs the run's posts and follow churn are undone and derived state is restored, so every run starts
from the same data. One result JSON per run goes to ``results/`` (its path is printed); Ctrl-C stops the run and still
writes what was measured, marked incomplete.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from bench.bindings.service import check_target, target_graph
from bench.driver import Driver
from bench.faults import Fault, FaultRun, fault_actions, replace_worker
from bench.output import (
    IntervalLines,
    OutputOptions,
    WorkerLogs,
    live_text,
    progress_columns,
    status,
)
from bench.report.hdrlog import write_hdr_logs
from bench.report.tables import FittedTable, fitted_table, strategies_side_by_side
from bench.results import finish, new_result, run_metadata, utc_now, write_result
from bench.scenarios.base import BenchConfig
from bench.scenarios.registry import SCENARIOS
from bench.scenarios.rounds import finish_run, run_rounds, settle_after_runs
from bench.scenarios.run import StrategyOutcome, run_strategy, target_note
from bench.scenarios.snapshot import DerivedState
from bench.sweep import Point
from graphs.formats import ReadOptions
from graphs.generate import GraphSpec
from graphs.info import GraphInfo
from graphs.load import load_file, load_generated
from targets.config import Settings
from targets.errors import FanoutError
from targets.eventloop import handled_cancel, run
from targets.fanout.processes import start_workers, stop_workers
from targets.stores.connections import Stores
from targets.stores.post_cache import PostCache
from targets.strategies.registry import DEFAULT_STRATEGIES, timeline_owners

#: What --quick means: a complete spike run on a generated 20,000-user graph with one celebrity followed by half of
#: the users and a hybrid threshold far below its reach but above every other account. A post history of 40 posts per
#: user makes pull reads real work: nine in ten follows are followed back, so the busiest readers (ranked by
#: followees) follow hundreds of accounts. Timelines capped at 100 entries stay compact in Redis (two pages each).
#: Fan-out batches of 200 followers with one call in flight per worker keep each atomic Redis call short, so reads
#: are not queued behind the celebrity's fan-out on a 2-core machine.
QUICK: dict[str, Any] = {
    "scenario": "spike",
    "users": 20_000,
    "reciprocity": 0.9,
    "posts_per_user": 40,
    "timeline_cap": 100,
    "fanout_batch": 200,
    "worker_inflight": 1,
    "rate": 250.0,
    "duration": 20.0,
    "spike_at": 8.0,
    "spike_window": 4.0,
    "spike_posts": 1,
    "celebrity_threshold": 2_000,
    "oracle_users": 100,
}
#: Timeline entries (users x cap, at most) up to which every strategy's rebuilt timelines are copied in memory, so
#: that the end of a run restores them in seconds instead of rebuilding (larger graphs rebuild at the end).
COPY_ENTRIES = 5_000_000
#: The generated graph of --users N: Barabási–Albert (each new user follows --follows earlier ones), --reciprocity of
#: the follows followed back, and one celebrity followed by half of the users.
GENERATED = {"model": "ba", "celebrities": 1, "celebrity_reach": 0.5}


def run_plan(plan: Plan, console: Console) -> Outcome:
    """Run a plan to its result file (printing progress to ``console``)."""
    return run(_bench(plan, console))


@dataclass(frozen=True)
class Plan:
    """What one invocation does."""

    settings: Settings
    workers: int
    config: BenchConfig
    #: Empty with --target and no --strategy: the one the service serves (resolved once the stores are open).
    strategies: tuple[str, ...]
    graph_file: Path | None
    users: int | None
    follows: int
    reciprocity: float
    posts_per_user: int
    out: Path | None
    graph_read: ReadOptions | None = None
    output: OutputOptions = field(default_factory=OutputOptions)
    repeat: int = 1
    #: A sweep's points for the loaded graph (``fanout sweep``); None runs ``strategies`` as they are.
    points: Callable[[GraphInfo], Sequence[Point]] | None = None
    #: A sweep's stopping rule: (point name, the result so far) -> skip that point.
    skip: Callable[[str, dict[str, Any]], bool] | None = None
    #: Faults injected during each strategy's load (``--fault``).
    faults: tuple[Fault, ...] = ()
    #: Fault kind -> the command that carries it out on an external server (``--fault-exec``).
    fault_exec: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """What the command prints at the end."""

    table: FittedTable
    path: Path
    interrupted: bool
    oracle_failed: bool
    #: The result document written to ``path``.
    doc: dict[str, Any]
    #: Why a run failed after its load (its figures are kept and its changes undone); None otherwise.
    failure: str | None = None


async def _bench(plan: Plan, console: Console) -> Outcome:
    config, settings = plan.config, plan.settings
    started_at = utc_now()
    # Connecting first: unreachable stores fail here, before anything runs.
    async with await Stores.connect(settings) as stores:
        if config.target:  # a service over HTTP: it must answer, and serve one strategy (and our graph, to load one)
            loads = bool(plan.graph_file or plan.users)
            strategies, service = await check_target(config.target, plan.strategies, stores, loads=loads)
            plan = replace(plan, strategies=strategies)
        source = await _load(stores, plan, console)
        graph = await target_graph(config.target, stores)
        if len(graph.user_ids) < 2:
            raise FanoutError("no graph is loaded: pass --graph FILE or --users N (or run `fanout graph load` first)")
        try:
            SCENARIOS[config.scenario](config, graph)  # options that do not fit the loaded graph fail here
        except ValueError as exc:
            raise FanoutError(str(exc)) from None
        points = {p.name: p for p in plan.points(graph)} if plan.points else {}
        names = tuple(points) or plan.strategies
        parameters = {
            **config.parameters(),
            "strategies": list(names),
            "celebrity_threshold": settings.celebrity_threshold,
            "timeline_cap": settings.timeline_cap,
            "fanout_batch": settings.fanout_batch,
            "fanout": settings.fanout_mode,
            "workers": plan.workers if settings.fanout_mode == "async" and not config.target else 0,
            "worker_inflight": settings.worker_inflight,
            "active_window_s": settings.active_window_s,
            "cost_ratio": settings.cost_ratio,
            "rate_source": settings.rate_source,
            "rate_half_life_s": settings.rate_half_life_s,
            "reevaluate_s": settings.reevaluate_s,
            "read_from": settings.read_from,
            "pg_replicas": len(stores.replicas),
            "redis_cluster": settings.redis_cluster,
            "graph": str(plan.graph_file) if plan.graph_file else None,
            "users": plan.users,
            "follows": plan.follows if plan.users else None,
            "reciprocity": plan.reciprocity if plan.users else None,
            "posts_per_user": plan.posts_per_user if (plan.graph_file or plan.users) else None,
            "repeat": plan.repeat,
            "faults": [f.label for f in plan.faults],
            "fault_exec": sorted(plan.fault_exec),  # which kinds ran a command of the user's (not the command)
        }
        if points:
            parameters["points"] = [p.as_json() for p in points.values()]
        meta = await run_metadata(stores, parameters=parameters, seed=config.seed, started_at=started_at)
        doc = new_result(config.scenario, meta, graph.stats(settings.celebrity_threshold, source))
        interrupted = False
        # A strategy that runs more than once restores a copy of its rebuilt timelines instead of rebuilding; so does
        # the end of the run (:func:`settle_after_runs`), unless copies would be too big to hold.
        small = len(graph.user_ids) * settings.timeline_cap <= COPY_ENTRIES
        derived = DerivedState(graph.user_ids, keep_copies=plan.repeat > 1 or bool(points) or small)
        ran: list[str] = []  # strategies whose run started, in order
        failures: list[str] = []  # runs that failed after their load
        # Workers start first so their start-up is over before any load; the tables are vacuumed so autovacuum does
        # not start on a freshly loaded table in the middle of a run.
        logs = WorkerLogs(console, plan.output.worker_log)  # above the live display, never into it
        workers = _start_workers(plan, console, logs.queue)
        progress = Progress(*progress_columns(console), console=console)
        try:
            with status(console, "vacuuming the tables and warming the post cache"):
                await stores.social.vacuum_analyze()
                await PostCache.of(stores).warm(stores.social)
            with progress:
                # Loading a graph with posts materialises every strategy's timelines from exactly the data each run
                # starts from (runs are undone), and a strategy's run touches only its own timelines: those stay
                # valid until that strategy has run. Otherwise (a graph loaded earlier) every strategy rebuilds.
                fresh = bool(plan.graph_file or plan.users) and plan.posts_per_user > 0
                lost_state = False  # Redis lost derived state during a run: every later run rebuilds its own

                async def run_one(name: str, round_no: int, rebuild: bool) -> tuple[dict[str, Any], bool]:
                    nonlocal lost_state
                    label = name if plan.repeat == 1 else f"{name} r{round_no}"
                    point = points.get(name)
                    strategy, here = (name, stores) if point is None else (point.strategy, _stores_for(stores, point))
                    ran.append(strategy)
                    at = config if point is None or point.rate is None else dataclasses.replace(config, rate=point.rate)
                    faults = _fault_run(plan, workers, logs.queue, progress.console) if plan.faults else None
                    outcome = await _run_one(
                        here,
                        strategy,
                        plan,
                        at,
                        graph,
                        progress,
                        rebuild=rebuild or lost_state,
                        label=label,
                        derived=derived,
                        faults=faults,
                    )
                    lost_state = lost_state or bool((outcome.recovery or {}).get("rebuilds"))
                    if outcome.failure:
                        failures.append(f"{label}: {outcome.failure}")
                    if plan.output.hdr_log is not None:
                        hdr_name = name if plan.repeat == 1 else f"{name}-r{round_no}"
                        write_hdr_logs(plan.output.hdr_log, hdr_name, outcome.drive, outcome.scenario.publish_kinds)
                    return await finish_run(here, at, outcome)

                # What a fresh load materialised: each default timeline-keeping strategy at the settings' threshold.
                loaded = timeline_owners([s for s in plan.strategies if s in DEFAULT_STRATEGIES]) if fresh else {}
                valid = _fresh_runs(names, points, loaded, settings.celebrity_threshold)
                if config.target and not service.own_namespace:
                    valid = list(names)  # the service's timelines are not in our stores: nothing to rebuild
                skip = (lambda name: plan.skip(name, doc)) if plan.skip else None
                interrupted = await run_rounds(names, plan.repeat, run_one, doc, valid=valid, skip=skip)
        except asyncio.CancelledError:
            handled_cancel()  # what follows writes what was measured and undoes the run
            interrupted = True
        except Exception as exc:  # a store failing mid-run: keep what was measured, then report the error
            finish(doc, complete=False, reason=f"stopped by {type(exc).__name__}: {exc}"[:500])
            console.print(f"partial result: {write_result(doc, plan.out)}", soft_wrap=True, highlight=False)
            raise
        finally:
            stop_workers(workers)
            logs.close()
        if ran and (not config.target or service.own_namespace):
            # Also after a Ctrl-C or a failure: the state after a benchmark equals the state before it.
            with status(console, "restoring the timelines and checking them against Postgres"):
                doc["after_undo"] = await settle_after_runs(stores, derived, ran, graph.user_ids, config)
        failure = "; ".join(failures) if interrupted and failures else None
        finish(doc, complete=not interrupted, reason=failure or ("interrupted (Ctrl-C)" if interrupted else None))
        path = write_result(doc, plan.out)
    failed = any(s.get("oracle", {}).get("verdict") == "fail" for s in doc["strategies"].values())
    failed = failed or doc.get("after_undo", {}).get("verdict") == "fail"
    return Outcome(comparison_table(doc), path, interrupted and failure is None, failed, doc, failure)


def _stores_for(stores: Stores, point: Point) -> Stores:
    """The stores as a sweep point sees them: the same connections, with the point's hybrid threshold and read
    source."""
    changes: dict[str, object] = {}
    if point.threshold is not None:
        changes["celebrity_threshold"] = point.threshold
    if point.read_from is not None:
        changes["read_from"] = point.read_from
    return stores.view(**changes) if changes else stores


def _fresh_runs(names: Sequence[str], points: dict[str, Point], loaded: dict[str, Any], threshold: int) -> list[str]:
    """The runs that may start from what a fresh load materialised: per derived state, the first run that uses it.

    Several sweep points share one state (a strategy at several rates): only the first of them finds it fresh.
    """
    fresh, seen = [], set()
    for name in names:
        point = points.get(name)
        strategy, at = (name, threshold) if point is None else (point.strategy, point.threshold or threshold)
        if (strategy, at) in seen:
            continue
        seen.add((strategy, at))
        if strategy in loaded and at == threshold:
            fresh.append(name)
    return fresh


async def _run_one(
    stores: Stores,
    name: str,
    plan: Plan,
    config: BenchConfig,
    graph: GraphInfo,
    progress: Progress,
    *,
    rebuild: bool,
    label: str,
    derived: DerivedState,
    faults: FaultRun | None = None,
) -> StrategyOutcome:
    """Reset derived state, then run one strategy with a live progress line."""
    task = progress.add_task(label, total=config.duration, status="resetting derived state")
    done = await derived.reset(stores, name, rebuild=rebuild)
    if done:
        progress.console.print(f"{label}: {done}")
    # Without a terminal the live display shows nothing until it ends: print interval lines instead.
    watch: _Watch | IntervalLines = (
        _Watch(progress, task, config)
        if progress.console.is_terminal
        else IntervalLines(progress.console, label, plan.output.interval, _announce(label, config))
    )
    try:
        workers = plan.workers if plan.settings.fanout_mode == "async" else 0
        outcome = await run_strategy(
            stores,
            name,
            config,
            graph,
            watch.attach,
            workers=workers,
            on_phase=lambda phase: progress.console.print(f"{label}: {phase}", highlight=False),
            faults=faults,
        )
    finally:
        watch.stop()
    note = target_note(outcome)
    if note:
        progress.console.print(f"{name}: {note}", highlight=False)
    oracle = outcome.oracle["verdict"] if outcome.oracle else "not checked"
    progress.update(task, completed=config.duration, status=f"done, oracle: {oracle}")
    return outcome


async def _load(stores: Stores, plan: Plan, console: Console) -> str:
    """Load the graph the plan names (if any); returns the graph's source for the result."""
    if plan.graph_file:
        with status(console, f"loading {plan.graph_file}"):
            return await load_file(stores, plan.graph_file, plan.posts_per_user, plan.config.seed, read=plan.graph_read)
    if plan.users:
        spec = GraphSpec(
            GENERATED["model"],
            plan.users,
            seed=plan.config.seed,
            celebrities=GENERATED["celebrities"],
            celebrity_reach=GENERATED["celebrity_reach"],
            reciprocity=plan.reciprocity,
            params={"m": plan.follows},
        )
        with status(console, f"generating and loading a {plan.users}-user graph"):
            return await load_generated(stores, spec, plan.posts_per_user, plan.config.seed)
    return "already loaded"


def _start_workers(plan: Plan, console: Console, log_queue: Any = None) -> list[BaseProcess]:
    """Fan-out worker processes for async push and hybrid (none for sync fan-out or pull alone)."""
    if plan.settings.fanout_mode != "async" or not timeline_owners(plan.strategies) or plan.config.target:
        return []  # a service (--target) delivers its posts itself
    if plan.workers == 0:
        console.print("starting no fan-out worker (--workers 0): workers of your own must deliver the posts")
        return []
    console.print(f"starting {plan.workers} fan-out worker process(es)")
    # The bench stops its workers itself, after a Ctrl-C too (its undo needs the queue quiet).
    return start_workers(plan.settings, plan.workers, log_queue, stop_on_sigint=False)


def _fault_run(plan: Plan, workers: list[BaseProcess], log_queue: Any, console: Console) -> FaultRun:
    """The faults of one strategy's run, carried out on the plan's servers and on this run's workers."""

    def kill_worker() -> str:
        return replace_worker(workers, lambda: start_workers(plan.settings, 1, log_queue, stop_on_sigint=False)[0])

    act = fault_actions(plan.settings, plan.fault_exec, kill_worker, announce=lambda text: console.print(text))
    return FaultRun(plan.faults, act, plan.config.duration)


def _announce(name: str, config: BenchConfig) -> str:
    return f"{name}: load running, {config.rate:g} ops/s for {config.duration:g}s"


class _Watch:
    """Refreshes a strategy's progress line from its driver's live numbers."""

    def __init__(self, progress: Progress, task: Any, config: BenchConfig) -> None:
        self.progress, self.task, self.config = progress, task, config
        self._loop: asyncio.Task[None] | None = None

    def attach(self, driver: Driver[Any]) -> None:
        """Start following ``driver`` (its load starts right after this)."""
        name = self.progress.tasks[self.task].description
        self.progress.console.print(_announce(name, self.config), highlight=False)
        self._loop = asyncio.create_task(self._refresh(driver))

    def stop(self) -> None:
        """Stop following."""
        if self._loop is not None:
            self._loop.cancel()

    async def _refresh(self, driver: Driver[Any]) -> None:
        while True:
            live = driver.live()
            self.progress.update(
                self.task,
                completed=min(live.elapsed_s, self.config.duration),
                status=live_text(live, self.progress.console),
            )
            await asyncio.sleep(0.25)


# -- the final table --------------------------------------------------------------------------------------------------
def comparison_table(doc: dict[str, Any]) -> FittedTable:
    """The strategies side by side: the very table `fanout report` prints for this result file (compact if narrow)."""
    return fitted_table(strategies_side_by_side(doc))


def exit_as_run_ended(outcome: Outcome, console: Console) -> None:
    """Print where the result went, then exit as the run ended: 130 when interrupted, 1 when the oracle failed."""
    console.print(f"result: {outcome.path}", soft_wrap=True, highlight=False)
    if outcome.failure:
        console.print(
            f"[red]the run could not complete: {outcome.failure}[/]\n"
            "the result holds every figure measured, marked incomplete, and the run's changes were undone",
            soft_wrap=True,
            highlight=False,
        )
        sys.exit(2)
    if outcome.interrupted:
        console.print("[yellow]interrupted: the result holds what was measured and is marked incomplete[/]")
        sys.exit(130)
    if outcome.oracle_failed:
        after = outcome.doc.get("after_undo", {})
        when = " after the run was undone" if after.get("verdict") == "fail" else ""
        console.print(f"[red]the oracle failed{when}: a strategy returned pages that differ from Postgres's[/]")
        sys.exit(1)
