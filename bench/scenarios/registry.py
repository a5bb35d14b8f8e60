"""The scenarios by name: a new scenario is its module plus one line here (and its block in results/schema.json)."""

from __future__ import annotations

from bench.scenarios.base import Scenario
from bench.scenarios.spike import Spike
from bench.scenarios.steady import Steady

SCENARIOS: dict[str, type[Scenario]] = {
    "steady": Steady,
    "spike": Spike,
}
