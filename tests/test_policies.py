"""The policies beyond a threshold, counted: fan-out only to active users, and adaptive's per-edge push or pull.

The hypothesis oracle (tests/test_oracle.py) checks their pages against a model; these check what they count and
skip, in both fan-out modes, on the real stores.
"""

from __future__ import annotations

import pytest

from bench.workload import Mix, Workload
from targets.fanout.reports import delivery_report, written_totals
from targets.fanout.worker import running_worker
from targets.stores.connections import Stores
from targets.strategies.adaptive import AdaptiveStrategy
from targets.strategies.push import PushStrategy
from targets.strategies.registry import make_strategy


async def _followed(stores: Stores, **changes: object) -> Stores:
    """Users 1..5; 1, 3, 4 and 5 follow 2; the settings changed as asked."""
    view = Stores(stores.settings.with_(**changes), stores.redis, stores.pg, stores.counters)
    strategy = make_strategy("pull", view)
    await strategy.social.add_users(range(1, 6))
    for follower in (1, 3, 4, 5):
        await strategy.follow(follower, 2)
    return view


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_fan_out_skips_inactive_followers_and_their_next_read_rebuilds(stores: Stores, mode: str) -> None:
    view = await _followed(stores, fanout_mode=mode, active_window_s=3600)
    push = make_strategy("push", view)
    assert isinstance(push, PushStrategy)
    await push.home_timeline(3)  # 3 reads (its first: a rebuild) and is active from now on; the others never read
    async with running_worker(view) as worker:
        receipt = await push.publish(2, "to the active only")
        await worker.queue.drain(30)
    if mode == "async":
        report = await delivery_report(view, receipt.post_id, "push")
        assert (report.delivered, report.written) == (4, 1)
    else:
        assert receipt.entries_written == 1
    totals = (await written_totals(view))["push"]
    assert (totals["skipped"], totals["regenerated"]) == (3, 1)
    assert await push.timelines.page(1, 10, None) == []  # skipped: its timeline lacks the post...
    assert [p.id for p in await push.home_timeline(1)] == [receipt.post_id]  # ...until its read rebuilds it
    assert (await written_totals(view))["push"]["regenerated"] == 2
    await push.home_timeline(1)  # active now: read as it is
    assert (await written_totals(view))["push"]["regenerated"] == 2


async def test_without_a_window_every_follower_gets_the_post(stores: Stores) -> None:
    view = await _followed(stores, fanout_mode="sync")
    receipt = await make_strategy("push", view).publish(2, "to all")
    assert receipt.entries_written == 4
    assert "push" not in await written_totals(view)  # nothing skipped, nothing regenerated: no counts at all


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_adaptive_pulls_the_edges_the_rule_says_and_skips_them_in_fan_out(stores: Stores, mode: str) -> None:
    view = await _followed(stores, fanout_mode=mode, rate_source="declared", cost_ratio=1.0)
    adaptive = make_strategy("adaptive", view)
    assert isinstance(adaptive, AdaptiveStrategy)
    await adaptive.rebuild(range(1, 6))  # no rates yet: every edge pushed
    assert await adaptive.edges_pulled(range(1, 6)) == (0, 4)
    # 2 posts 3 times as often as 1 and 3 read, as often as 4 reads, less often than 5 reads.
    await adaptive.activity.declare({1: 1.0, 3: 1.0, 4: 3.0, 5: 6.0}, {2: 3.0})
    for user in range(1, 6):
        await adaptive.reconsider(user)
    assert {u: await adaptive.celebrities.members(u) for u in (1, 3, 4, 5)} == {1: {2}, 3: {2}, 4: set(), 5: set()}
    assert await adaptive.edges_pulled(range(1, 6)) == (2, 4)
    async with running_worker(view) as worker:
        receipt = await adaptive.publish(2, "pushed to 4 and 5, pulled by 1 and 3")
        await worker.queue.drain(30)
    assert (await written_totals(view))["adaptive"]["pulled"] == 2  # both already pulled: no edge moved by fan-out
    assert "flipped" not in (await written_totals(view))["adaptive"]
    assert await adaptive.timelines.page(1, 10, None) == [] and await adaptive.timelines.page(4, 10, None) == [
        receipt.post_id
    ]
    for user in (1, 3, 4, 5):  # pulled or pushed, every follower's page has it
        assert [p.id for p in await adaptive.home_timeline(user)] == [receipt.post_id], user
    # The rates turn: 1 now reads often, 5 rarely; their edges flip and the post moves with them.
    await adaptive.activity.declare({1: 9.0, 5: 0.5}, {})
    await adaptive.reconsider(1)
    await adaptive.reconsider(5)
    assert await adaptive.celebrities.members(1) == set() and await adaptive.celebrities.members(5) == {2}
    assert await adaptive.timelines.page(1, 10, None) == [receipt.post_id]
    assert await adaptive.timelines.page(5, 10, None) == []
    assert [p.id for p in await adaptive.home_timeline(5)] == [receipt.post_id]
    # Fan-out applies the rule too: 4 stops reading, so the next post moves its edge to pull as it is delivered: 2's
    # posts leave 4's timeline (exactly: neither timeline is full, so it is not marked stale) and come from 2's.
    await adaptive.activity.declare({4: 0.1}, {})
    async with running_worker(view) as worker:
        later = await adaptive.publish(2, "4 now pulls")
        await worker.queue.drain(30)
    totals = (await written_totals(view))["adaptive"]
    assert totals["flipped"] == 1 and await adaptive.celebrities.members(4) == {2}
    assert await adaptive.timelines.page(4, 10, None) == []
    assert await view.redis.hget(adaptive.activity.key(4), "stale") is None
    assert [p.id for p in await adaptive.home_timeline(4)] == [later.post_id, receipt.post_id]


def test_declared_rates_follow_the_workload_model() -> None:
    users = list(range(1, 201))
    workload = Workload(users, [u % 7 for u in users], Mix(0.8, 0.05, 0.25), seed=3, dormant=0.25)
    reads, posts = workload.declared_rates()
    assert set(reads).isdisjoint(workload.dormant_users) and len(reads) == 150
    assert sum(reads.values()) == pytest.approx(0.8 * 0.75)  # home-timeline reads per operation
    assert sum(posts.values()) == pytest.approx(1 - 0.8 - 0.05)
    # Measured against the stream itself: each user's share of reads and posts, within sampling noise.
    ops = workload.ops(40_000)
    heaviest = max(posts, key=posts.__getitem__)
    seen = sum(1 for op in ops if op.kind == "post" and op.user == heaviest) / len(ops)
    assert seen == pytest.approx(posts[heaviest], rel=0.15)
    top_reader = max(reads, key=reads.__getitem__)
    seen = sum(1 for op in ops if op.kind == "read" and op.user == top_reader) / len(ops)
    assert seen == pytest.approx(reads[top_reader], rel=0.15)
