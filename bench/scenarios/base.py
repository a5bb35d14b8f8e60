"""The Scenario interface, and the parameters every scenario shares (:class:`BenchConfig`).

A scenario is what happens during one strategy's measured load besides the steady workload: operations of its own
at set times (a celebrity's burst), accounts kept out of the steady workload, something it samples while the load
runs, and a block of its own in each strategy's result. Everything else (the driver, the workload, deliveries, the
oracle, undoing the run) is the same for every scenario and lives in :mod:`bench.scenarios.run`. A new scenario is
one module with a :class:`Scenario` subclass, one line in :mod:`bench.scenarios.registry`, and its block in
``results/schema.json``.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from bench.driver import ARRIVALS, DEFAULT_MAX_IN_FLIGHT, MAX_DURATION_S, MAX_IN_FLIGHT, Arrival, Schedule
from bench.driver_processes import MAX_PROCESSES
from bench.workload import (
    AUTHOR_RATE_MODELS,
    DEFAULT_AUTHOR_ALPHA,
    DEFAULT_READ_RATIO,
    DEFAULT_READER_SKEW,
    MAX_MENTIONS,
    Depths,
    Mix,
    Op,
    Sizes,
    check_activity,
)
from graphs.info import GraphInfo
from targets.declared import option
from targets.stores.connections import Stores

if TYPE_CHECKING:
    from bench.scenarios.run import StrategyOutcome

READER_ORDERS = ("followees", "random")


@dataclass(frozen=True)
class NoOptions:
    """A scenario that has no options of its own."""


@dataclass(frozen=True)
class BenchConfig:
    """The parameters of a benchmark run every scenario shares (all go into the result's ``run.parameters``)."""

    scenario: str = option("steady", "Steady load, or a celebrity spike during it.")
    rate: float = option(200.0, "Target operations per second.", min=0, min_open=True)
    duration: float = option(30.0, "Seconds of load per strategy.", min=0, min_open=True)
    read_ratio: float = option(
        DEFAULT_READ_RATIO, "Fraction of timeline reads (the rest are posts and churn).", min=0, max=1
    )
    churn_ratio: float = option(0.0, "Fraction of follow/unfollow operations.", flag="--churn", min=0, max=1)
    seed: int = option(1, "Seed of the workload (and of a generated graph).")
    arrival: Arrival = option("constant", "Arrival process.", choices=ARRIVALS)
    max_in_flight: int = option(
        DEFAULT_MAX_IN_FLIGHT, "Bound on concurrent operations (caps the driver's memory).", min=1, max=MAX_IN_FLIGHT
    )
    driver_processes: int = option(
        1,
        "Driver processes sharing the schedule (each issues every N-th arrival; their histograms are merged).",
        min=1,
        max=MAX_PROCESSES,
    )
    page_size: int = option(50, "Posts per timeline read.", min=1, max=1000)
    user_timeline_ratio: float = option(
        0.0, "Fraction of reads that read one account's own posts (a user timeline), not a home timeline.", min=0, max=1
    )
    page_depth: str = option(
        "1", "Pages per read, each below the previous page's last post: N, MIN-MAX, or N:W,N:W (depth:weight)."
    )
    body_bytes: str | None = option(
        None, "Post body size in bytes: N or MIN-MAX (uniform, seeded) [default: a short body of about 20 bytes]."
    )
    mentions: int = option(
        0,
        "Each post mentions 0..N users, drawn uniformly (@<id> in its body); they get it in their home timelines too.",
        min=0,
        max=MAX_MENTIONS,
    )
    reader_skew: float = option(DEFAULT_READER_SKEW, "Zipf exponent of reader activity.", min=0)
    #: "followees": the most active readers are those who follow the most accounts; "random": a seeded order.
    readers: str = option(
        "followees",
        "Who reads most: those who follow the most accounts, or a seeded random order.",
        choices=READER_ORDERS,
    )
    author_alpha: float = option(DEFAULT_AUTHOR_ALPHA, "Posting weight = (1 + followers) ** alpha.", min=0)
    author_rate_model: str = option(
        "reach",
        "Posting rate: by reach ((1 + followers) ** alpha), its inverse (** -alpha: celebrities post rarely), or "
        "independent of reach (a seeded heavy-tailed rate per account).",
        choices=AUTHOR_RATE_MODELS,
    )
    dormant: float = option(0.0, "Share of users who do not read during the run (seeded).", min=0, max=1)
    returning: float = option(
        0.0, "Share of the dormant users who come back during the run, each at a seeded moment.", min=0, max=1
    )
    oracle_users: int = option(100, "Users whose pages are checked against Postgres after each strategy.", min=0)
    warmup: float = option(
        2.0,
        "Seconds of unmeasured read-only load before each strategy (pools and caches settle).",
        min=0,
        max=MAX_DURATION_S,
    )
    drain_timeout: float = option(
        120.0,
        "Seconds to wait after the load for the fan-out queue to drain before the run is cut short (figures kept).",
        min=0,
        min_open=True,
        max=MAX_DURATION_S,
    )
    #: A service speaking the ``fanout serve`` API to drive over HTTP instead of the strategy in process.
    target: str | None = option(
        None,
        "Drive the service at this URL (the fanout serve API, see /openapi.json) instead of the strategy in process.",
        flag="--target",
    )
    #: The scenario's own options (an instance of its ``Options``), checked against these by the scenario.
    options: Any = NoOptions()

    def __post_init__(self) -> None:
        if self.readers not in READER_ORDERS:
            raise ValueError(f"reader order {self.readers!r} is not one of {', '.join(READER_ORDERS)}")
        if self.target is not None and not self.target.startswith(("http://", "https://")):
            raise ValueError(
                f"target {self.target!r} is not an http:// or https:// URL: pass --target http://HOST:PORT"
            )
        Mix(self.read_ratio, self.churn_ratio, self.user_timeline_ratio)  # validates the mix
        check_activity(self.mentions, self.author_rate_model, self.dormant, self.returning, horizon=1)
        self.body_sizes()
        self.page_depths()
        Schedule(self.rate, self.duration, self.arrival)  # validates the schedule

    def body_sizes(self) -> Sizes:
        """The post body sizes ``body_bytes`` asks for (raises ValueError naming the option)."""
        return Sizes.parse(self.body_bytes)

    def page_depths(self) -> Depths:
        """The read depths ``page_depth`` asks for (raises ValueError naming the option)."""
        return Depths.parse(self.page_depth)

    def parameters(self) -> dict[str, Any]:
        """The parameters as JSON values, the scenario's options among them."""
        values = {k: v for k, v in asdict(self).items() if k != "options"}
        values.update({k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.options).items()})
        return values


#: The subset of the reads that are returning users' first (measured among the reads, and on their own).
RETURNING_READ = "returning_read"


class Scenario(ABC):
    """What one scenario adds to a strategy's measured load (the default: nothing, which is ``steady``)."""

    #: The scenario's name on the command line and in results.
    name: ClassVar[str]
    #: The dataclass of its own options (fields made by :func:`targets.declared.option`).
    Options: ClassVar[type] = NoOptions
    #: Driver kinds its own operations are recorded under that count as publishing (besides "post").
    publish_kinds: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check(cls, config: BenchConfig) -> None:
        """Raise ``ValueError`` naming the option to fix when the options do not fit the run (before any load)."""

    def __init__(self, config: BenchConfig, graph: GraphInfo) -> None:
        """Raises ``ValueError`` naming the option to fix when the options do not fit the run or the graph."""
        self.check(config)
        self.config = config
        self.options = config.options
        self.graph = graph

    def quiet_authors(self) -> Sequence[int]:
        """Accounts that never post in the steady workload."""
        return ()

    def extra_ops(self) -> Sequence[tuple[float, Op]]:
        """Operations of the scenario's own, as (seconds into the load, op); their ``seq`` is negative."""
        return ()

    def kind_of(self, op: Op) -> str:
        """The driver's recording kind of an operation."""
        return op.kind

    def subset_of(self, op: Op) -> str | None:
        """A subset the operation is measured in as well: a returning user's first read."""
        return RETURNING_READ if op.returning else None

    async def before_load(self, stores: Stores, strategy: str) -> None:
        """Called just before the measured load starts (no await between this and the load but the caller's)."""

    async def during_load(self, stores: Stores) -> None:
        """Runs alongside the measured load (cancelled if the load is interrupted); samples what it needs."""

    def result(self, outcome: StrategyOutcome) -> dict[str, Any] | None:
        """The scenario's block in the strategy's result (``strategies.<name>.<scenario>``), or None."""
        return None
