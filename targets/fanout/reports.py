"""Per-post delivery accounting, read back from what the fan-out's Lua calls recorded (see :mod:`targets.fanout.queue`).

Every delivered batch records, on Redis's clock, when it was written and how many followers it held; the post's
acknowledgement time is recorded by the same clock when its job is queued. So the lag of every follower is exact to
its batch, and the distribution over followers costs one list entry per batch, not per follower.
"""

from __future__ import annotations

from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

from targets.fanout.queue import FanoutQueue
from targets.histograms import new_histogram, record_us
from targets.stores.connections import Stores
from targets.stores.timelines import fanout_stats_keys


@dataclass(frozen=True)
class DeliveryReport:
    """How one post's fan-out into one owner's timelines went (so far).

    ``followers`` and ``batches`` grow while the split runs; ``delivered`` counts followers whose batch was written
    and ``written`` the timeline entries actually added (ZADD replies: a follower who already had the post adds
    nothing). ``lag_us`` holds one value per delivered follower: batch delivery time minus acknowledgement time
    (a :mod:`targets.histograms` histogram, so it merges into the bench's and the service's as it is).
    """

    owner: str
    post_id: int
    enqueued_us: int | None
    completed_us: int | None
    followers: int
    batches: int
    delivered: int
    delivered_batches: int
    written: int
    lag_us: HdrHistogram

    @property
    def complete(self) -> bool:
        """Whether every follower's batch has been delivered."""
        return self.completed_us is not None

    @property
    def fanout_seconds(self) -> float | None:
        """Acknowledgement to the last timeline written, in seconds (None while incomplete)."""
        if self.enqueued_us is None or self.completed_us is None:
            return None
        return (self.completed_us - self.enqueued_us) / 1e6


async def delivery_report(stores: Stores, post_id: int, owner: str = "push") -> DeliveryReport:
    """The delivery report of ``post_id`` for ``owner`` (push or hybrid); two round trips, one per key."""
    queue = FanoutQueue(stores.redis, stores.settings)
    async with stores.redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(queue.report_key(owner, post_id))
        pipe.lrange(queue.lag_key(owner, post_id), 0, -1)
        raw, records = await pipe.execute()
    fields = {k.decode(): int(v) for k, v in raw.items() if k != b"job"}
    lag = new_histogram()
    enqueued = fields.get("enqueued_us")
    for record in records:
        at, count = (int(x) for x in record.split(b":"))
        if enqueued is not None:
            record_us(lag, at - enqueued, count)
    return DeliveryReport(
        owner=owner,
        post_id=post_id,
        enqueued_us=enqueued,
        completed_us=fields.get("completed_us"),
        followers=fields.get("followers", 0),
        batches=fields.get("batches", 0),
        delivered=fields.get("delivered", 0),
        delivered_batches=fields.get("delivered_batches", 0),
        written=fields.get("written", 0),
        lag_us=lag,
    )


async def written_totals(stores: Stores) -> dict[str, dict[str, int]]:
    """Totals over every post since the namespace was reset: per owner, posts completed, batches, followers
    delivered and entries written (the write amplification's numerator)."""
    totals: dict[str, dict[str, int]] = {}
    for stats in fanout_stats_keys(stores.settings.prefix, stores.tags):  # each shard's too, on a cluster
        for key, value in (await stores.redis.hgetall(stats)).items():
            what, owner = key.decode().split(":", 1)
            counts = totals.setdefault(owner, {})
            counts[what] = counts.get(what, 0) + int(value)
    return totals
