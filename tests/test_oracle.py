"""The correctness oracle: push, pull and hybrid return identical pages for the same data.

hypothesis draws a small follow graph, a timeline cap, a celebrity threshold, a page size and a sequence of
publish / follow / unfollow operations, some posts mentioning a user. Each operation is applied to Postgres once and
to every strategy's derived state (bench.scenarios.oracle). After every operation one user's first page must agree
across strategies; at the end every user's whole timeline, paged with ``before``, must agree and must equal an
independent in-memory model: the newest ``cap`` posts of the accounts the user follows and of the posts mentioning it
by accounts it does not follow. Hybrid's Redis state (author timelines, celebrity sets) is checked against the model
after every operation too, and some sequences lose Redis's derived state in the middle (a restart): the home
timelines are rebuilt as after a restart, hybrid's author timelines and celebrity sets must rebuild themselves from
Postgres on read.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.scenarios.oracle import Ensemble
from targets.stores.connections import Stores
from targets.stores.postgres import Authors
from targets.strategies.adaptive import AdaptiveStrategy
from targets.strategies.hybrid import HybridStrategy
from targets.strategies.push import PushStrategy
from tests.conftest import namespace_settings

EXAMPLES = int(os.environ.get("FANOUT_ORACLE_EXAMPLES", "200"))


@dataclass
class Model:
    """What every timeline must hold, computed without any store."""

    cap: int
    follows: set[tuple[int, int]] = field(default_factory=set)
    posts: list[tuple[int, int]] = field(default_factory=list)  # (post id, author)
    mentions: dict[int, int] = field(default_factory=dict)  # post id -> the user it mentions
    #: With an active window, the users that read since they last went dormant (None: no window, all count).
    active: set[int] | None = field(default_factory=set)

    def is_active(self, user: int) -> bool:
        """Whether fan-out delivers to the user (always, without an active window)."""
        return self.active is None or user in self.active

    def timeline(self, user: int, below: int | None = None, pulled: set[int] | None = None) -> list[int]:
        """The user's newest ``cap`` posts: of the accounts it follows (with ``below``, only of those with fewer
        followers than that; with ``pulled``, only of those not in it), and those mentioning it by accounts it does
        not follow."""
        followees = self.followees(user)
        pushed = followees if below is None else {f for f in followees if self.followers(f) < below}
        pushed = pushed - (pulled or set())  # a new set: followees stays whole for the mentions below
        chosen = (
            pid
            for pid, author in self.posts
            if author in pushed or (self.mentions.get(pid) == user and author not in followees and author != user)
        )
        return sorted(chosen, reverse=True)[: self.cap]

    def followees(self, user: int) -> set[int]:
        """The accounts ``user`` follows."""
        return {b for a, b in self.follows if a == user}

    def followers(self, account: int) -> int:
        """How many users follow ``account``."""
        return sum(1 for _, b in self.follows if b == account)

    def celebrities(self, user: int, threshold: int) -> set[int]:
        """The accounts ``user`` follows that have at least ``threshold`` followers."""
        return {b for a, b in self.follows if a == user and self.followers(b) >= threshold}

    def authored(self, author: int) -> list[int]:
        """The author's newest ``cap`` posts, newest first."""
        return sorted((pid for pid, a in self.posts if a == author), reverse=True)[: self.cap]


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    n = draw(st.integers(2, 6))
    user = st.integers(1, n)
    pair = st.tuples(user, user).filter(lambda t: t[0] != t[1])
    # ("unfollow", k, _, reader) removes the k-th existing edge (mod their number), so unfollows hit real edges.
    op = st.one_of(
        # ("publish", author, m, reader): a post that mentions user m (0: none; the author itself: ignored).
        st.tuples(st.just("publish"), user, st.just(0), user),
        st.tuples(st.just("publish"), user, st.integers(0, n), user),
        st.tuples(st.just("follow"), user, user, user),
        st.tuples(st.just("unfollow"), st.integers(0, 50), st.just(0), user),
        # ("rates", k, _, reader): the workload's rates become table k (declared rates) and adaptive decides every
        # user's edges again, so edges flip both ways; ("dormant", u, _, reader): u stops counting as active.
        st.tuples(st.just("rates"), st.integers(0, 50), st.just(0), user),
        st.tuples(st.just("dormant"), user, st.just(0), user),
    )
    table = st.lists(st.integers(0, 4), min_size=n, max_size=n)
    return {
        "users": n,
        "initial": draw(st.lists(pair, max_size=3 * n)),
        "ops": draw(st.lists(op, min_size=3, max_size=40)),
        "cap": draw(st.integers(1, 5)),
        "threshold": draw(st.integers(1, 4)),
        "limit": draw(st.integers(1, 4)),
        "batch": draw(st.integers(1, 3)),
        # Hybrid's author timelines and celebrity sets: materialised for everyone at the start (as a load does), or
        # left to be built on the first read that misses them.
        "materialised": draw(st.booleans()),
        # Before which operation Redis loses the derived state (None: never).
        "restart_at": draw(st.none() | st.integers(0, 40)),
        # Adaptive: (reads, posts) per user, declared by the "rates" operations, or rates counted online.
        "rate_tables": draw(st.lists(st.tuples(table, table), min_size=1, max_size=3)),
        "rates": draw(st.sampled_from(["declared", "online"])),
        "cost_ratio": draw(st.sampled_from([0.5, 1.0, 2.0])),
        # An active window (an hour: no one ages out during a test, only by "dormant" operations) or none.
        "window": draw(st.booleans()),
    }


@pytest.fixture(scope="module")
def runner() -> Iterator[tuple[asyncio.Runner, Stores]]:
    with asyncio.Runner() as r:
        stores = r.run(Stores.connect(namespace_settings()))
        try:
            yield r, stores
        finally:
            r.run(stores.drop())
            r.run(stores.close())


async def walk(ensemble: Ensemble, user: int, limit: int) -> dict[str, list[int]]:
    """Every strategy's whole timeline for ``user``, fetched page by page with ``before``."""
    out: dict[str, list[int]] = {}
    for name, strategy in ensemble.strategies.items():
        ids: list[int] = []
        before = None
        while True:
            page = await strategy.home_timeline(user, limit, before)
            page_ids = [p.id for p in page]
            # A page that does not move strictly below ``before`` would loop for ever: fail it instead.
            assert page_ids == sorted(set(page_ids), reverse=True), f"{name} page of user {user} not newest first"
            assert before is None or all(i < before for i in page_ids), f"{name} page of user {user} repeats"
            ids += page_ids
            if len(page) < limit:
                break
            before = page[-1].id
        out[name] = ids
    return out


def view_for(stores: Stores, scenario: dict, example: int, **changes: object) -> Stores:
    """The scenario's settings over the module's connections, with a fresh key prefix per example (no SCAN needed)."""
    settings = stores.settings.with_(
        prefix=f"{stores.settings.prefix}x{example}:",
        timeline_cap=scenario["cap"],
        celebrity_threshold=scenario["threshold"],
        fanout_batch=scenario["batch"],
        active_window_s=3600 if scenario["window"] else 0,
        rate_source=scenario["rates"],
        cost_ratio=scenario["cost_ratio"],
        reevaluate_s=3600,  # each user's first read decides its edges; the "rates" operations decide them again
        **changes,
    )
    return stores.view(**{f.name: getattr(settings, f.name) for f in fields(settings)})


async def play(stores: Stores, scenario: dict, example: int) -> None:
    await stores.pg.execute("TRUNCATE users, follows, posts, mentions")
    await run_scenario(Ensemble(view_for(stores, scenario, example, fanout_mode="sync")), scenario)


async def run_scenario(
    ensemble: Ensemble,
    scenario: dict,
    *,
    settle: Callable[[], Awaitable[None]] | None = None,
    written: Callable[[int], Awaitable[int]] | None = None,
    restart: Callable[[Ensemble, range, list[int]], Awaitable[bool | None]] | None = None,
) -> None:
    """Apply the scenario (to tables the caller emptied) and check every page against the model.

    With asynchronous fan-out, ``settle`` waits for the queue to drain after each operation and ``written`` gives the
    entries push's fan-out wrote for a post id (the receipt counts only what publish wrote itself). ``restart`` is
    what happens at ``restart_at`` (default :func:`restart_redis`, which deletes the derived keys); it returns True
    when it rebuilt in bulk, which marks every user active.
    """
    restart = restart or restart_redis
    model = Model(scenario["cap"])
    windowed = next(iter(ensemble.strategies.values())).settings.active_window_s > 0
    if not windowed:
        model.active = None
    limit = scenario["limit"]
    await ensemble.social.add_users(range(1, scenario["users"] + 1))

    users = range(1, scenario["users"] + 1)
    for a, b in scenario["initial"]:
        await ensemble.follow(a, b)
        model.follows.add((a, b))
    hybrid = ensemble.strategies.get("hybrid")
    if scenario["materialised"] and isinstance(hybrid, HybridStrategy):
        await hybrid.rebuild(users)
    for step, (kind, a, b, reader) in enumerate(scenario["ops"]):
        if step == scenario["restart_at"]:
            # A restart that rebuilds in bulk (rebuild_if_lost) makes every user active again, as a load does.
            if await restart(ensemble, users, [pid for pid, _ in model.posts]) and model.active is not None:
                model.active = set(users)
        if kind == "publish":
            receipts = await ensemble.publish(a, f"p{len(model.posts)}" + (f" cc @{b}" if b else ""))
            if settle is not None:
                await settle()
            model.posts.append((receipts["push"].post_id, a))
            if b:
                model.mentions[receipts["push"].post_id] = b
            followers = sum(1 for f, e in model.follows if e == a and model.is_active(f))
            mentioned = int(b not in (0, a) and (b, a) not in model.follows and model.is_active(b))
            pushed = receipts["push"]
            entries = pushed.entries_written + (0 if written is None else await written(pushed.post_id))
            assert entries == followers + mentioned  # every follower and mentioned user gets exactly one new entry
            assert receipts["pull"].entries_written == 0
        elif kind == "follow" and a != b:
            assert await ensemble.follow(a, b) == ((a, b) not in model.follows)
            model.follows.add((a, b))
        elif kind == "rates":
            await change_rates(ensemble, scenario, a)
        elif kind == "dormant":
            await go_dormant(ensemble, a)
            if model.active is not None:
                model.active.discard(a)
        elif kind == "unfollow" and model.follows:
            follower, followee = sorted(model.follows)[a % len(model.follows)]
            assert await ensemble.unfollow(follower, followee)
            assert not await ensemble.unfollow(follower, followee)  # a repeated unfollow changes nothing
            model.follows.discard((follower, followee))
        if settle is not None:
            await settle()
        pages = await ensemble.pages(reader, limit)  # an inactive reader's first read: rebuilt, then as pull's
        if model.active is not None:
            model.active.add(reader)
        expected = model.timeline(reader)[:limit]
        assert {name: [p.id for p in page] for name, page in pages.items()} == dict.fromkeys(pages, expected)
        await check_derived_state(ensemble, model, scenario)

    for user in range(1, scenario["users"] + 1):
        expected = model.timeline(user)
        assert await walk(ensemble, user, limit) == dict.fromkeys(ensemble.strategies, expected), f"user {user}"


async def change_rates(ensemble: Ensemble, scenario: dict, k: int) -> None:
    """Declare rate table ``k`` (a no-op for online rates) and let adaptive decide every user's edges again."""
    adaptive = ensemble.strategies.get("adaptive")
    if not isinstance(adaptive, AdaptiveStrategy):
        return
    reads, posts = scenario["rate_tables"][k % len(scenario["rate_tables"])]
    users = range(1, scenario["users"] + 1)
    await adaptive.activity.declare(dict(zip(users, reads, strict=True)), dict(zip(users, posts, strict=True)))
    for user in users:
        await adaptive.reconsider(user)


async def go_dormant(ensemble: Ensemble, user: int) -> None:
    """Make the user inactive for every strategy that keeps timelines (as a window passing without its reads)."""
    for strategy in ensemble.strategies.values():
        if isinstance(strategy, PushStrategy):
            await strategy.activity.forget_seen(user)


async def restart_redis(ensemble: Ensemble, users: range, post_ids: list[int]) -> None:
    """Lose the derived state as a Redis restart would (timelines, author timelines, celebrity sets, post cache),
    then rebuild only the home timelines, as an operator does after a restart: hybrid's author timelines and
    celebrity sets must come back by themselves, from Postgres, on the reads that miss them."""
    keys: list[str] = []
    for strategy in ensemble.strategies.values():
        if isinstance(strategy, PushStrategy):
            keys += [strategy.timelines.key(u) for u in users]
            keys += [strategy.posts.key(p) for p in post_ids]
        if isinstance(strategy, HybridStrategy):
            keys += [k for u in users for k in (strategy.authors.key(u), strategy.celebrities.key(u))]
    if keys:
        await next(iter(ensemble.strategies.values())).stores.redis.unlink(*keys)
    for strategy in ensemble.strategies.values():
        if isinstance(strategy, PushStrategy):
            await strategy.rebuild_home(users)


async def check_derived_state(ensemble: Ensemble, model: Model, scenario: dict) -> None:
    """Every Redis timeline holds exactly what it should: push every followee's newest posts, hybrid only those of
    ordinary followees; and every materialised hybrid author timeline holds its author's newest posts, every
    materialised celebrity set the followees at or above the threshold. A stale entry (left by a threshold crossing,
    a follow change or a publish) fails here at once, before a later operation has to make it visible in a page."""
    threshold = scenario["threshold"]
    for name, strategy in ensemble.strategies.items():
        if not isinstance(strategy, PushStrategy):
            continue  # pull keeps no timelines
        below = threshold if strategy.home_authors is Authors.ORDINARY else None
        for user in range(1, scenario["users"] + 1):
            if not model.is_active(user):
                continue  # fan-out skipped it: its timeline is rebuilt on its next read
            stored = await strategy.timelines.page(user, model.cap + 1, None)  # cap + 1: an untrimmed one shows
            if isinstance(strategy, AdaptiveStrategy):
                if await strategy.stores.redis.hexists(strategy.activity.key(user), "stale"):
                    continue  # a fan-out moved an edge to pull out of a full timeline: rebuilt on the next read
                # Which edges are pulled is adaptive's to decide; whatever it decided, the timeline must match it.
                pulled = await strategy.celebrities.members(user)
                assert pulled is None or pulled <= model.followees(user), f"{name} pulls unfollowed accounts"
                assert stored == model.timeline(user, pulled=pulled), f"{name} timeline of user {user}"
                continue
            assert stored == model.timeline(user, below), f"{name} timeline of user {user}"
            if isinstance(strategy, HybridStrategy):
                # None: not materialised (yet, or since the restart), which a read repairs; anything else is exact.
                celebrities = await strategy.celebrities.members(user)
                assert celebrities in (None, model.celebrities(user, threshold)), f"{name} celebrities of user {user}"
                authored = await strategy.authors.post_ids(user)
                assert authored in (None, model.authored(user)), f"{name} author timeline of user {user}"


_examples = iter(range(10**9))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_strategies_return_identical_pages(runner: tuple[asyncio.Runner, Stores], scenario: dict) -> None:
    r, stores = runner
    r.run(play(stores, scenario, next(_examples)))
