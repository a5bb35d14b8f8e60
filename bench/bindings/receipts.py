"""What a binding keeps of the posts it published, whatever the transport."""

from __future__ import annotations

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
