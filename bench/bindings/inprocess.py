"""Workload operations applied to a strategy in this process: the binding ``fanout bench`` drives by default."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.bindings.operations import post_body, read_pages
from bench.bindings.receipts import Published
from bench.workload import Op
from targets.strategies.base import Strategy

__all__ = ["InProcessTarget", "Published"]


@dataclass
class InProcessTarget:
    """The async callable the driver drives: applies one :class:`Op` to a strategy and keeps what it changed.

    ``published`` holds every post's receipt; ``churn`` every follow edge that changed, in order, as
    (+1 follow added / -1 removed, follower, followee), so the run can be undone.
    """

    strategy: Strategy
    page_size: int
    published: list[Published] = field(default_factory=list)
    churn: list[tuple[int, int, int]] = field(default_factory=list)

    async def __call__(self, op: Op) -> None:
        s = self.strategy
        if op.kind == "read" or op.kind == "user_timeline":
            read = s.home_timeline if op.kind == "read" else s.user_timeline

            async def page(before: int | None) -> tuple[int, int | None]:
                posts = await read(op.user, self.page_size, before)
                return len(posts), posts[-1].id if posts else None

            await read_pages(op, self.page_size, page)
        elif op.kind == "post":
            began = time.perf_counter()
            receipt = await s.publish(op.user, post_body(op))
            acked = time.perf_counter()
            self.published.append(
                Published(receipt.post_id, op.user, began, acked, receipt.entries_written, op.seq < 0)
            )
        elif op.kind == "follow":
            assert op.other is not None
            if await s.follow(op.user, op.other):
                self.churn.append((1, op.user, op.other))
        elif op.kind == "unfollow":
            assert op.other is not None
            if await s.unfollow(op.user, op.other):
                self.churn.append((-1, op.user, op.other))
        else:  # pragma: no cover - the workload only makes the four kinds
            raise ValueError(f"unknown operation kind {op.kind!r}")
