"""The workload generator: reproducible, in the requested mix, skewed as configured."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.workload import Mix, Op, Workload

USERS = list(range(100, 1100))
# One account with most of the reach, the rest ordinary.
FOLLOWERS = [5000 if u == 100 else u % 7 for u in USERS]


def test_same_seed_same_sequence_other_seed_differs() -> None:
    mix = Mix(read_ratio=0.8, churn_ratio=0.1)
    a = Workload(USERS, FOLLOWERS, mix, seed=7).ops(2000)
    b = Workload(USERS, FOLLOWERS, mix, seed=7).ops(2000)
    c = Workload(USERS, FOLLOWERS, mix, seed=8).ops(2000)
    assert a == b
    assert a != c
    assert [op.seq for op in a] == list(range(2000))


def test_mix_fractions_and_users_valid() -> None:
    ops = Workload(USERS, FOLLOWERS, Mix(read_ratio=0.9, churn_ratio=0.04), seed=1).ops(20_000)
    kinds = Counter(op.kind for op in ops)
    assert 0.88 < kinds["read"] / len(ops) < 0.92
    assert 0.05 < kinds["post"] / len(ops) < 0.07
    assert kinds["follow"] + kinds["unfollow"] > 0
    assert all(op.user in set(USERS) for op in ops)
    assert all(op.other is None for op in ops if op.kind in ("read", "post"))
    assert all(op.other != op.user and op.other is not None for op in ops if op.kind in ("follow", "unfollow"))


def test_unfollows_undo_the_workloads_own_follows() -> None:
    ops = Workload(USERS, FOLLOWERS, Mix(read_ratio=0.0, churn_ratio=1.0), seed=3).ops(5000)
    open_edges: Counter[tuple[int, int]] = Counter()
    for op in ops:
        assert op.other is not None
        if op.kind == "follow":
            open_edges[(op.user, op.other)] += 1
        else:
            assert open_edges[(op.user, op.other)] > 0, "unfollow of an edge the workload never followed"
            open_edges[(op.user, op.other)] -= 1


def test_readers_are_skewed_and_uniform_when_asked() -> None:
    skewed = Counter(op.user for op in Workload(USERS, None, Mix(1.0), seed=2).ops(20_000))
    flat = Counter(op.user for op in Workload(USERS, None, Mix(1.0), seed=2, reader_skew=0).ops(20_000))
    # Zipf with s=1 over 1000 users gives the top reader ~13% of reads; uniform gives ~0.1%.
    assert skewed.most_common(1)[0][1] > 0.08 * 20_000
    assert flat.most_common(1)[0][1] < 0.01 * 20_000


def test_readers_ranked_by_followees_when_given() -> None:
    followees = [u % 50 for u in USERS]  # users 149, 199, ... follow the most
    ops = Workload(USERS, None, Mix(1.0), seed=5, followee_counts=followees).ops(20_000)
    top_reader, _ = Counter(op.user for op in ops).most_common(1)[0]
    assert followees[USERS.index(top_reader)] == 49
    busiest = {u for u, _ in Counter(op.user for op in ops).most_common(10)}
    assert all(followees[USERS.index(u)] == 49 for u in busiest)


def test_authors_follow_reach_or_are_uniform() -> None:
    by_reach = Counter(op.user for op in Workload(USERS, FOLLOWERS, Mix(0.0), seed=4, author_alpha=1.0).ops(10_000))
    uniform = Counter(op.user for op in Workload(USERS, FOLLOWERS, Mix(0.0), seed=4, author_alpha=0.0).ops(10_000))
    assert by_reach.most_common(1)[0][0] == 100
    assert by_reach[100] > 0.3 * 10_000
    assert uniform[100] < 0.01 * 10_000


def test_quiet_authors_never_post() -> None:
    ops = Workload(USERS, FOLLOWERS, Mix(0.0), seed=4, author_alpha=1.0, quiet_authors={100}).ops(5_000)
    assert 100 not in {op.user for op in ops}
    with pytest.raises(ValueError, match="quiet"):
        Workload(USERS, FOLLOWERS, quiet_authors=USERS)


def test_from_follower_counts_and_iteration() -> None:
    counts = dict(zip(USERS, FOLLOWERS, strict=True))
    w = Workload.from_follower_counts(counts, Mix(0.5), seed=9)
    first = [op for op, _ in zip(w, range(5), strict=False)]
    assert all(isinstance(op, Op) for op in first)
    assert first == Workload(USERS, FOLLOWERS, Mix(0.5), seed=9).ops(5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mix": Mix(0.5)}, None),
        ({"user_ids": [1]}, "at least 2 users"),
        ({"follower_counts": [1, 2]}, "follower counts"),
        ({"followee_counts": [1, 2]}, "followee counts"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str | None) -> None:
    args = {"user_ids": USERS, "follower_counts": FOLLOWERS, **kwargs}
    if message is None:
        Workload(**args)
        return
    with pytest.raises(ValueError, match=message):
        Workload(**args)


@pytest.mark.parametrize(("read", "churn"), [(1.5, 0.0), (-0.1, 0.0), (0.9, 0.2)])
def test_bad_mix(read: float, churn: float) -> None:
    with pytest.raises(ValueError):
        Mix(read, churn)
