"""The strategies by name."""

from __future__ import annotations

from targets.stores.connections import Stores
from targets.strategies.base import Strategy
from targets.strategies.hybrid import HybridStrategy
from targets.strategies.pull import PullStrategy
from targets.strategies.push import PushStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    "push": PushStrategy,
    "pull": PullStrategy,
    "hybrid": HybridStrategy,
}


def make_strategy(name: str, stores: Stores) -> Strategy:
    """The strategy called ``name`` over these stores (``KeyError`` lists nothing; the CLI validates names)."""
    return STRATEGIES[name](stores)
