"""The strategies by name, and the one answer to "does this strategy keep Redis timelines?".

A new strategy is its module plus one line in :data:`STRATEGIES`; everything else (the CLI's choices, the fan-out
worker's streams, the bulk rebuild, the service's delivery tracking, the benchmark's delivery timing) asks here.
"""

from __future__ import annotations

from collections.abc import Iterable

from targets.stores.connections import Stores
from targets.stores.postgres import Authors
from targets.strategies.adaptive import AdaptiveStrategy
from targets.strategies.base import Strategy, WrittenHook
from targets.strategies.hybrid import HybridStrategy
from targets.strategies.pull import PullStrategy
from targets.strategies.push import PushStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    "push": PushStrategy,
    "pull": PullStrategy,
    "hybrid": HybridStrategy,
    "adaptive": AdaptiveStrategy,
}

#: What runs when no strategy is named, and what a graph load materialises: the three the design note compares
#: (adaptive, a policy beyond a threshold, runs when asked for).
DEFAULT_STRATEGIES: tuple[str, ...] = ("push", "pull", "hybrid")


def make_strategy(name: str, stores: Stores, *, on_written: WrittenHook | None = None) -> Strategy:
    """The strategy called ``name`` over these stores (``KeyError`` lists nothing; the CLI validates names).

    ``on_written(post_id, entries)`` is told after each batch of timeline entries the strategy itself writes.
    """
    return STRATEGIES[name](stores, on_written=on_written)


def keeps_timelines(name: str) -> bool:
    """Whether the strategy keeps home timelines in Redis (and so has fan-out to deliver and rebuild)."""
    return STRATEGIES[name].home_authors is not None


def per_edge_owners(names: Iterable[str] = STRATEGIES) -> list[str]:
    """The strategies among ``names`` that decide push or pull per follow edge (fan-out skips pulled edges)."""
    return [name for name in names if STRATEGIES[name].per_edge]


def timeline_owners(names: Iterable[str] = STRATEGIES) -> dict[str, Authors]:
    """The strategies among ``names`` that keep timelines, with which followees' posts their timelines hold."""
    return {name: authors for name in names if (authors := STRATEGIES[name].home_authors) is not None}
