"""``steady``: the seeded workload at a steady rate, nothing else."""

from __future__ import annotations

from typing import ClassVar

from bench.scenarios.base import Scenario


class Steady(Scenario):
    """The workload alone."""

    name: ClassVar[str] = "steady"
