"""Delivery accounting of the posts one service process published, read from the fan-out workers' reports.

With asynchronous fan-out a publish returns before any timeline is written; the workers record each post's
delivery (:mod:`targets.fanout.reports`). The service remembers the posts it acknowledged and, about once a second,
reads the reports of those still open: a completed one adds its entries written, its fan-out time and its lag over
followers to the service's metrics; a post that was never queued (a hybrid celebrity's) is dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque

from targets.fanout.reports import delivery_report
from targets.service.metrics import ServiceMetrics
from targets.stores.connections import Stores

#: Posts awaiting delivery that one process keeps track of; older ones are given up (and counted).
MAX_PENDING = 20_000
#: Reports read at once: each takes a pooled Redis connection, and redis-py's pool refuses (not waits) past 100.
CHUNK = 16


class DeliveryTracker:
    """Posts this process published whose fan-out has not completed yet."""

    def __init__(self, stores: Stores, owner: str, metrics: ServiceMetrics) -> None:
        self.stores = stores
        self.owner = owner
        self.metrics = metrics
        self.pending: deque[int] = deque()
        self.given_up = 0
        self._lock = asyncio.Lock()

    def published(self, post_id: int) -> None:
        """Remember a post whose fan-out was queued."""
        if len(self.pending) >= MAX_PENDING:
            self.pending.popleft()
            self.given_up += 1
        self.pending.append(post_id)

    async def collect(self) -> int:
        """Account for every pending post whose fan-out has completed; returns how many are still pending."""
        async with self._lock:  # the periodic flush and GET /metrics both collect; never count a post twice
            still: deque[int] = deque()
            posts = list(self.pending)
            self.pending.clear()
            for start in range(0, len(posts), CHUNK):
                chunk = posts[start : start + CHUNK]
                reports = await asyncio.gather(*(delivery_report(self.stores, p, self.owner) for p in chunk))
                for post_id, report in zip(chunk, reports, strict=True):
                    if report.enqueued_us is None:
                        continue  # never queued: nothing to deliver
                    if not report.complete:
                        still.append(post_id)
                        continue
                    self.metrics.count("posts_delivered")
                    self.metrics.count("entries_written", report.written)
                    self.metrics.merge("delivery_lag", report.lag_us)
                    if report.fanout_seconds is not None:
                        self.metrics.record("fanout", report.fanout_seconds)
            # Posts published while we were reading went into self.pending; keep them after the older ones.
            still.extend(self.pending)
            self.pending = still
            return len(self.pending)
