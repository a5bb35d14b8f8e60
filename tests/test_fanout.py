"""Asynchronous fan-out on real Redis and Postgres: delivery, accounting, crash recovery, the cap under concurrency."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing
from pathlib import Path
from subprocess import DEVNULL

import pytest
import redis
from click.testing import CliRunner

from bench.cli.main import main
from graphs.star import load_star
from targets.config import Settings
from targets.errors import FanoutError
from targets.fanout.batches import follower_chunks
from targets.fanout.queue import Batch, Entry, FanoutQueue
from targets.fanout.reports import delivery_report, written_totals
from targets.fanout.worker import drain, running_worker
from targets.stores.connections import Stores
from targets.stores.timelines import home_key_prefix, user_key
from targets.strategies.push import PushStrategy
from targets.strategies.registry import make_strategy

REPO = Path(__file__).resolve().parents[1]
AUTHOR = 0


def view(stores: Stores, **changes: object) -> Stores:
    """The test's stores with some settings changed (same connections, same namespace)."""
    return Stores(stores.settings.with_(**changes), stores.redis, stores.pg, stores.counters)


async def holders(stores: Stores, owner: str, users: range, post_id: int) -> int:
    """How many of ``users`` have ``post_id`` in their ``owner`` home timeline."""
    key = home_key_prefix(stores.settings.prefix, owner)
    found = 0
    for start in range(users.start, users.stop, 20_000):
        async with stores.redis.pipeline(transaction=False) as pipe:
            for user in range(start, min(start + 20_000, users.stop)):
                pipe.zscore(user_key(key, user, stores.tags), post_id)
            found += sum(score == post_id for score in await pipe.execute())
    return found


@pytest.fixture
async def star(stores: Stores) -> AsyncIterator[Stores]:
    """User 0 followed by users 1..2500, fan-out in batches of 100."""
    await load_star(stores.pg, stores.settings.schema, AUTHOR, range(1, 2501))
    yield view(stores, fanout_batch=100, fanout_mode="async")


def test_settings_reject_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="fan-out mode 'later' is unknown: use one of async, sync"):
        Settings(fanout_mode="later")
    with pytest.raises(ValueError, match="fanout_claim_idle_ms must be a positive integer"):
        Settings(fanout_claim_idle_ms=0)


def test_home_key_prefix_matches_the_timelines_keys(stores: Stores) -> None:
    # The worker's Lua appends the user id and ``}`` to the prefix: that must be the key the strategy reads.
    push = PushStrategy(stores)
    assert home_key_prefix(stores.settings.prefix, "push") + "42}" == push.timelines.key(42)


async def test_follower_chunks_cover_every_follower_once(star: Stores) -> None:
    seen: list[int] = []
    sizes = []
    async for batches, last in follower_chunks(star.social, AUTHOR, 17, 300, chunk=3):
        sizes.append((len(batches), last))
        for b in batches:
            ids = [int(i) for i in b.ids.split(",")]
            assert len(ids) == b.count and ids[-1] == b.last
            seen += ids
    assert seen == list(range(18, 2501))
    assert sizes[-1][1] and not any(last for _, last in sizes[:-1])
    assert sum(n for n, _ in sizes) == -(-len(seen) // 300)


async def test_publish_only_enqueues_then_a_worker_reaches_every_follower(star: Stores) -> None:
    push = PushStrategy(star)
    queue = FanoutQueue(star.redis, star.settings)
    receipt = await push.publish(AUTHOR, "to 2500 followers")
    assert receipt.entries_written == 0
    assert await queue.outstanding() == 1
    assert await holders(star, "push", range(1, 2501), receipt.post_id) == 0
    assert not (await delivery_report(star, receipt.post_id)).complete

    async with running_worker(star), running_worker(star):
        await drain(star, 30)

    assert await queue.outstanding() == 0
    assert await holders(star, "push", range(1, 2501), receipt.post_id) == 2500
    assert [p.id for p in await push.home_timeline(2500)] == [receipt.post_id]
    report = await delivery_report(star, receipt.post_id)
    assert report.complete
    assert (report.followers, report.delivered, report.written) == (2500, 2500, 2500)
    assert report.batches == report.delivered_batches == 25
    assert report.lag_us.get_total_count() == 2500
    assert report.enqueued_us is not None and report.completed_us is not None
    # The last batch's lag is the whole fan-out time (both on Redis's clock).
    assert report.lag_us.values_are_equivalent(report.lag_us.get_max_value(), report.completed_us - report.enqueued_us)
    assert (await written_totals(star))["push"] == {"posts": 1, "batches": 25, "delivered": 2500, "written": 2500}


async def test_sync_mode_writes_inside_publish(star: Stores) -> None:
    sync = view(star, fanout_mode="sync")
    receipt = await PushStrategy(sync).publish(AUTHOR, "written before the acknowledgement")
    assert receipt.entries_written == 2500
    assert await FanoutQueue(sync.redis, sync.settings).outstanding() == 0
    assert await holders(sync, "push", range(1, 2501), receipt.post_id) == 2500


async def test_push_and_hybrid_jobs_fill_their_own_timelines(star: Stores) -> None:
    # Threshold above 2500: the author is ordinary for hybrid too, so both owners get one job each.
    stores = view(star, celebrity_threshold=10_000)
    new = await PushStrategy(stores).social.create_post(AUTHOR, "one post, two owners")
    post, followers = new.post, new.followers
    for name in ("push", "hybrid"):
        assert await make_strategy(name, stores).distribute(post, followers) == 0
    async with running_worker(stores):
        await drain(stores, 30)
    for owner in ("push", "hybrid"):
        assert await holders(stores, owner, range(1, 2501), post.id) == 2500
        assert (await delivery_report(stores, post.id, owner)).written == 2500


async def stalled_job(star: Stores, consumer: str, batches: int) -> tuple[Stores, int, Entry, list[Batch]]:
    """Publish, then let ``consumer`` read the post job (and the first ``batches`` batches of followers) and stall.

    The returned stores claim entries idle for 1 ms, so any worker started on them takes the job over at once.
    """
    quick = view(star, fanout_claim_idle_ms=1)
    queue = FanoutQueue(quick.redis, quick.settings)
    receipt = await PushStrategy(quick).publish(AUTHOR, f"taken by {consumer}")
    await queue.ensure_group()
    [job] = await queue.read(consumer, 10, None)
    async with aclosing(follower_chunks(quick.social, AUTHOR, -1, 100, chunk=batches)) as chunks:
        first, _ = await anext(chunks)
    return quick, receipt.post_id, job, first


async def test_a_job_taken_over_from_a_stalled_worker_is_delivered_once(star: Stores) -> None:
    quick, post_id, job, [first] = await stalled_job(star, "stalled-a", 1)
    queue = FanoutQueue(quick.redis, quick.settings)
    async with running_worker(quick) as worker:
        await drain(quick, 30)
    assert worker.counts.claimed >= 1
    before = await delivery_report(quick, post_id)
    assert (before.followers, before.delivered, before.written) == (2500, 2500, 2500)

    # The stalled worker wakes up: its split and its delivery are refused, and nothing moves.
    assert await queue.split(job, "stalled-a", -1, [first]) == -1
    assert await queue.deliver(job, first, final_after=-1) in (-1, -2)
    after = await delivery_report(quick, post_id)
    assert (after.delivered, after.written, after.delivered_batches) == (2500, 2500, before.delivered_batches)
    assert await queue.outstanding() == 0


async def test_a_split_resumed_by_another_worker_repeats_and_skips_no_follower(star: Stores) -> None:
    quick, post_id, job, batches = await stalled_job(star, "crashed-a", 7)
    queue = FanoutQueue(quick.redis, quick.settings)
    assert await queue.split(job, "crashed-a", -1, batches) == 7  # then "crashed-a" dies
    assert await queue.progress("push", post_id) == 700

    async with running_worker(quick):
        await drain(quick, 30)
    report = await delivery_report(quick, post_id)
    assert report.complete
    assert (report.followers, report.delivered, report.written, report.batches) == (2500, 2500, 2500, 25)
    assert await holders(quick, "push", range(1, 2501), post_id) == 2500


async def test_malformed_entries_are_dropped_not_retried_forever(star: Stores) -> None:
    queue = FanoutQueue(star.redis, star.settings)
    await star.redis.xadd(queue.jobs, {"owner": "pull", "post": "1", "author": "0"})  # pull keeps no timelines
    await star.redis.xadd(queue.batches, {"owner": "push", "post": "x", "n": "1", "ids": "1"})
    await star.redis.xadd(queue.batches, {"owner": "push", "post": "7", "n": "1"})  # no ids
    async with running_worker(star):
        await drain(star, 30)
    assert await queue.outstanding() == 0
    assert await star.redis.zcard(PushStrategy(star).timelines.key(1)) == 0


async def test_dead_consumers_are_forgotten_only_when_they_hold_nothing(star: Stores) -> None:
    queue = FanoutQueue(star.redis, star.settings)
    await PushStrategy(star).publish(AUTHOR, "one")
    await PushStrategy(star).publish(AUTHOR, "two")
    await queue.ensure_group()
    assert len(await queue.read("holder", 1, None)) == 1  # dies holding a job
    [done] = await queue.read("finished", 1, None)  # dies after finishing its job
    await queue.discard(done)
    assert await queue.forget_idle(0) == 1
    consumers = await star.redis.xinfo_consumers(queue.jobs, "fanout-workers")
    assert [(c["name"], c["pending"]) for c in consumers] == [(b"holder", 1)]


async def test_drain_without_a_worker_gives_up_with_the_fix(star: Stores) -> None:
    await PushStrategy(star).publish(AUTHOR, "nobody delivers this")
    with pytest.raises(FanoutError, match=r"still holds 1 job\(s\) after 0.2s: start a worker \(`fanout worker`\)"):
        await drain(star, 0.2)


async def test_the_cap_holds_under_concurrent_fanout_from_several_workers(stores: Stores) -> None:
    # 12 authors, each followed by the same 600 users; cap 5; 3 workers deliver the 12 posts at once.
    capped = view(stores, timeline_cap=5, fanout_batch=50, fanout_mode="async")
    authors = list(range(10_001, 10_013))
    await load_star(stores.pg, stores.settings.schema, authors[0], range(1, 601))
    async with stores.pg.acquire() as conn:
        others = authors[1:]
        await conn.execute("INSERT INTO users (id, follower_count) SELECT unnest($1::bigint[]), 600", others)
        await conn.execute(
            "INSERT INTO follows SELECT f, a FROM generate_series(1, 600) f, unnest($1::bigint[]) a", others
        )
    push = PushStrategy(capped)
    posts = [(await push.publish(author, f"post by {author}")).post_id for author in authors]
    async with AsyncExitStack() as stack:
        for _ in range(3):
            await stack.enter_async_context(running_worker(capped, inflight=4))
        await drain(capped, 60)
    newest = sorted(posts, reverse=True)[:5]
    async with stores.redis.pipeline(transaction=False) as pipe:
        for user in range(1, 601):
            pipe.zrevrange(push.timelines.key(user), 0, -1)
        timelines = await pipe.execute()
    assert all([int(p) for p in t] == newest for t in timelines)
    # Every post was added to every follower once (some then trimmed): written counts ZADD replies.
    assert (await written_totals(capped))["push"]["written"] == 12 * 600


async def test_sigkill_mid_fanout_of_200k_followers_loses_nothing(stores: Stores) -> None:
    followers = 200_000
    fast = view(stores, fanout_batch=500, fanout_claim_idle_ms=300, fanout_mode="async")
    settings = fast.settings
    await load_star(stores.pg, settings.schema, AUTHOR, range(1, followers + 1))
    queue = FanoutQueue(fast.redis, settings)
    await queue.ensure_group()
    pubsub = fast.redis.pubsub()
    await pubsub.subscribe(queue.delivered_channel)
    receipt = await PushStrategy(fast).publish(AUTHOR, "to 200k followers")
    cli = [sys.executable, "-m", "bench.cli", "--redis-url", settings.redis_url, "--database-url"]
    cli += [settings.database_url, "--prefix", settings.prefix, "--schema", settings.schema]
    cli += ["worker", "--fanout-batch", "500"]
    worker = await asyncio.create_subprocess_exec(*cli, cwd=REPO, stdout=DEVNULL, stderr=DEVNULL)
    try:
        delivered = 0
        async with asyncio.timeout(120):
            while delivered < 20:  # wait (blocking on pub/sub) until the worker is well into the fan-out
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                delivered += message is not None
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
        await pubsub.aclose()
    interrupted = await delivery_report(fast, receipt.post_id)
    assert not interrupted.complete and interrupted.delivered < followers
    assert await queue.outstanding() > 0

    async with running_worker(fast) as rescuer:
        await drain(fast, 120)
    assert rescuer.counts.claimed > 0  # the dead worker's pending entries were claimed, not just the queued ones
    report = await delivery_report(fast, receipt.post_id)
    assert report.complete
    assert (report.followers, report.delivered, report.written) == (followers, followers, followers)
    assert report.lag_us.get_total_count() == followers
    assert await holders(fast, "push", range(1, followers + 1), receipt.post_id) == followers
    assert await fast.redis.zcard(PushStrategy(fast).timelines.key(followers)) == 1


def test_cli_drain_and_worker_help(stores: Stores) -> None:
    s = stores.settings
    base = ["--redis-url", s.redis_url, "--database-url", s.database_url, "--prefix", s.prefix, "--schema", s.schema]
    runner = CliRunner()
    result = runner.invoke(main, [*base, "drain", "--timeout", "5"])
    assert result.exit_code == 0, result.output
    assert "fan-out queue drained" in result.output
    result = runner.invoke(main, ["worker", "--help"])
    assert result.exit_code == 0 and "--processes" in result.output

    with redis.Redis.from_url(s.redis_url) as client:
        client.xadd(FanoutQueue(client, s).jobs, {"owner": "push", "post": "1", "author": "0"})  # nobody consumes it
    result = runner.invoke(main, [*base, "drain", "--timeout", "0.2"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: the fan-out queue still holds 1 job(s) after 0.2s: start a worker (`fanout worker`) or wait longer"
        " (--timeout)"
    ]
