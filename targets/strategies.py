"""The strategies by name."""

from __future__ import annotations

from targets.base import Strategy
from targets.hybrid import HybridStrategy
from targets.pull import PullStrategy
from targets.push import PushStrategy
from targets.stores import Stores

STRATEGIES: dict[str, type[Strategy]] = {
    "push": PushStrategy,
    "pull": PullStrategy,
    "hybrid": HybridStrategy,
}


def make_strategy(name: str, stores: Stores) -> Strategy:
    """The strategy called ``name`` over these stores (``KeyError`` lists nothing; the CLI validates names)."""
    return STRATEGIES[name](stores)
