"""What a binding keeps of what a run changed (posts published, follow edges changed), whatever the transport."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Published:
    """One post the run published: when it was started and acknowledged, and what its receipt counted."""

    post_id: int
    author: int
    began: float
    acked: float
    #: Timeline entries written before the acknowledgement, as the strategy (or the service's answer) counted them.
    entries_written: int
    #: Published by the scenario's own operations (negative seq), not by the steady workload.
    scenario: bool


def net_churn(churn: Sequence[tuple[int, int, int]]) -> dict[tuple[int, int], int]:
    """Each edge's net change over a run: +1 added, -1 removed (edges back where they started are left out).

    Concurrent operations on one edge may be recorded in another order than they ran (the answers crossed), but every
    recorded change flips the edge, so the sum of its changes alone says how it differs from the start.
    """
    net: dict[tuple[int, int], int] = {}
    for delta, follower, followee in churn:
        net[(follower, followee)] = net.get((follower, followee), 0) + delta
    return {edge: d for edge, d in net.items() if d}
