"""The fan-out worker: consumes post jobs and batch jobs (see :mod:`targets.fanout.queue`) and writes timelines.

One :class:`Worker` is one consumer of the group. It keeps several Lua calls in flight so Redis always has the next
batch while the previous one runs, splits post jobs while other batches are delivered, and claims entries other
workers left pending too long (XAUTOCLAIM after ``fanout_claim_idle_ms``): a worker killed at any instant loses
nothing. Run it as a process (``fanout worker``) or, in tests, the demo and the benchmark, as an asyncio task in
the same process (:func:`running_worker`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import dataclass

from targets.fanout.batches import follower_chunks
from targets.fanout.queue import Batch, Entry, FanoutQueue, consumer_name
from targets.stores.connections import Stores
from targets.stores.failures import LOST_STORE, lost_store
from targets.strategies.registry import per_edge_owners, timeline_owners

log = logging.getLogger(__name__)

#: Owners whose timelines a job may fill: the strategies that push.
OWNERS = frozenset(timeline_owners())
#: Owners that decide push or pull per follow edge: their deliveries skip followers whose edge is pulled.
PER_EDGE = frozenset(per_edge_owners())
MAX_BLOCK_MS = 1_000
#: A consumer unseen this long that holds nothing is a dead worker's; a starting worker removes it from the group.
FORGET_AFTER_MS = 600_000
#: Waiting out a lost store (a restart): the first retry, and the longest pause between retries.
RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 5.0


@dataclass
class WorkerCounts:
    """What one worker did (the per-post figures are in the delivery reports)."""

    batches: int = 0
    followers: int = 0
    written: int = 0
    posts_split: int = 0
    redelivered: int = 0
    claimed: int = 0
    reconnects: int = 0


class Worker:
    """One consumer of the fan-out group, running until :meth:`stop`."""

    def __init__(self, stores: Stores, *, inflight: int | None = None, consumer: str | None = None) -> None:
        inflight = stores.settings.worker_inflight if inflight is None else inflight
        if inflight < 1:
            raise ValueError(f"inflight must be at least 1, not {inflight}")
        self.stores = stores
        self.settings = stores.settings
        self.queue = FanoutQueue(stores.redis, stores.settings)
        self.consumer = consumer or consumer_name()
        self.inflight = inflight
        self.counts = WorkerCounts()
        #: "starting", "running", "reconnecting" (a store is away), "stopped", or "failed" (see ``failure``).
        self.state = "starting"
        #: Why the worker failed (state "failed"): an error it cannot outlive, such as a bug.
        self.failure: str | None = None
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._failure: BaseException | None = None
        # Wake often enough to claim abandoned entries soon after they become claimable.
        self._block_ms = max(1, min(MAX_BLOCK_MS, self.settings.fanout_claim_idle_ms // 2))

    def stop(self) -> None:
        """Ask :meth:`run` to finish what it holds and return."""
        self._stop.set()

    async def run(self) -> None:
        """Consume until stopped; entries this worker read are handled before it returns.

        A lost store (a restart, a failover) does not end it: it waits with backoff until both answer, re-creates
        the streams and the group if they vanished, and resumes. Entries it had read stay pending and are claimed
        again after ``fanout_claim_idle_ms``; delivering them twice writes nothing twice.
        """
        while True:
            try:
                await self._consume()
                self.state = "stopped"
                return
            except Exception as exc:
                if not lost_store(exc):
                    self.state, self.failure = "failed", f"{type(exc).__name__}: {exc}"[:300]
                    raise
                self.counts.reconnects += 1
                self.state = "reconnecting"
                log.warning("fan-out worker %s lost a store (%s): reconnecting", self.consumer, exc)
                if not await self._stores_back():
                    self.state = "stopped"
                    return  # stopped while a store was away: what it held stays pending for another worker

    async def _stores_back(self) -> bool:
        """Wait until both stores answer (True) or the worker is stopped (False), retrying with doubling pauses."""
        pause = RECONNECT_FIRST_S
        while not self._stop.is_set():
            try:
                await self.stores.redis.ping()
                await self.stores.pg.fetchval("SELECT 1")
                return True
            except LOST_STORE:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), pause)
                pause = min(2 * pause, RECONNECT_MAX_S)
        return False

    async def _consume(self) -> None:
        self._failure = None
        await self.queue.ensure_group()
        await self.queue.forget_idle(max(FORGET_AFTER_MS, 10 * self.settings.fanout_claim_idle_ms))
        await self.stores.redis.publish(self.queue.ready_channel, self.consumer)
        self.state = "running"
        next_claim = 0.0
        try:
            while not self._stop.is_set() and self._failure is None:
                free = await self._wait_for_slot()
                entries = []
                if time.monotonic() >= next_claim:
                    entries = await self.queue.claim(self.consumer, free)
                    self.counts.claimed += len(entries)
                    next_claim = time.monotonic() + self._block_ms / 1000
                if not entries:
                    entries = await self._read_or_stop(free)
                for entry in entries:
                    self._start(entry)
        finally:
            await self._finish()

    # -- the loop's parts -------------------------------------------------------------------------------------
    async def _wait_for_slot(self) -> int:
        while len(self._tasks) >= self.inflight:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        return self.inflight - len(self._tasks)

    async def _read_or_stop(self, count: int) -> list[Entry]:
        """New entries, or none when stopped while waiting (what a cancelled read took stays pending for us)."""
        read = asyncio.ensure_future(self.queue.read(self.consumer, count, self._block_ms))
        stopped = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not read.done():
            read.cancel()
            with suppress(asyncio.CancelledError):
                await read
            return []
        return read.result()

    def _start(self, entry: Entry) -> None:
        task = asyncio.create_task(self._handle(entry))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failure = task.exception()
            if not lost_store(self._failure):  # a lost store ends this pass of the loop, not the worker
                log.error("fan-out task failed: %r", self._failure)
                self._stop.set()
        self._slot_freed.set()

    async def _finish(self) -> None:
        """Wait for running tasks, then handle anything still pending on this consumer, and leave the group."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._failure is not None:
            raise self._failure
        for entry in await self.queue.read(self.consumer, 10_000, None, own=True):
            await self._handle(entry)
        await self.queue.forget(self.consumer)

    # -- handling one entry -----------------------------------------------------------------------------------
    async def _handle(self, entry: Entry) -> None:
        if not self._well_formed(entry):
            # Retrying an entry that names no valid job could never succeed: drop it rather than stall the queue.
            log.warning("dropping malformed fan-out entry %s: %s", entry.id, entry.fields)
            await self.queue.discard(entry)
        elif entry.stream == self.queue.batches:
            batch = Batch(0, int(entry.fields["n"]), entry.fields["ids"])
            per_edge = entry.fields["owner"] in PER_EDGE
            self._count(batch, await self.queue.deliver(entry, batch, per_edge=per_edge))
        else:
            await self._split(entry)

    def _well_formed(self, entry: Entry) -> bool:
        fields = entry.fields
        batch = entry.stream == self.queue.batches
        integers = ("post", "n") if batch else ("post", "author")
        return (
            fields.get("owner") in OWNERS
            and all(fields.get(k, "").lstrip("-").isdigit() for k in integers)
            and (not batch or "ids" in fields)
        )

    def _count(self, batch: Batch, written: int) -> None:
        if written < 0:
            self.counts.redelivered += 1
            return
        self.counts.batches += batch.count > 0
        self.counts.followers += batch.count
        self.counts.written += written

    async def _split(self, job: Entry) -> None:
        """Turn a post job into batch jobs, delivering the last batch itself (which finishes the job)."""
        owner, post = job.fields["owner"], job.fields["post"]
        after = await self.queue.progress(owner, post)  # a split resumed after a crash goes on from here
        chunks = follower_chunks(self.stores.social, int(job.fields["author"]), after, self.settings.fanout_batch)
        async with aclosing(chunks):  # a split given up stops reading ahead at once
            async for batches, last_chunk in chunks:
                final = (batches.pop() if batches else Batch(after, 0, "")) if last_chunk else None
                if batches:
                    if await self.queue.split(job, self.consumer, after, batches) < 0:
                        log.info("post job %s (%s:%s) was taken over by another worker", job.id, owner, post)
                        return
                    after = batches[-1].last
                if final is not None:
                    delivered = await self.queue.deliver(job, final, final_after=after, per_edge=owner in PER_EDGE)
                    self._count(final, delivered)
                    self.counts.posts_split += 1


@asynccontextmanager
async def running_worker(stores: Stores, *, inflight: int | None = None) -> AsyncIterator[Worker]:
    """A :class:`Worker` running as a task of this event loop for the duration of the block (``inflight``: calls in
    flight, default ``worker_inflight`` of the settings).

    Pair it with :meth:`targets.fanout.queue.FanoutQueue.drain` (or :func:`drain`) to wait for deliveries.
    """
    worker = Worker(stores, inflight=inflight)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await task


async def drain(stores: Stores, max_wait_s: float = 60.0, wait_flag: str = "--timeout") -> None:
    """Wait until the namespace's fan-out queue is empty and nothing is pending (see :meth:`FanoutQueue.drain`)."""
    await FanoutQueue(stores.redis, stores.settings).drain(max_wait_s, wait_flag)
