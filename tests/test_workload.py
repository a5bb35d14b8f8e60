"""The workload generator: reproducible, in the requested mix, skewed as configured."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from bench.bindings.operations import Tally, post_body
from bench.workload import Depths, Mix, Op, Sizes, Workload
from targets.stores.mentions import mentioned_ids

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


# -- payloads and reads ---------------------------------------------------------------------------------------------
def test_user_timeline_reads_are_their_share_of_the_reads_and_leave_the_rest_of_the_stream_alone() -> None:
    plain = Workload(USERS, FOLLOWERS, Mix(0.9, 0.04), seed=5).ops(20_000)
    mixed = Workload(
        USERS, FOLLOWERS, Mix(0.9, 0.04, 0.3), seed=5, body_sizes=Sizes(200, 300), page_depths=Depths.parse("1-3")
    ).ops(20_000)
    kinds = Counter(op.kind for op in mixed)
    reads = kinds["read"] + kinds["user_timeline"]
    assert 0.27 < kinds["user_timeline"] / reads < 0.33
    # Reads stay reads and posts stay posts, by the same users: user reads name the reader as ``other``.
    home = {"user_timeline": "read"}
    assert [home.get(op.kind, op.kind) for op in mixed] == [op.kind for op in plain]
    assert [op.other if op.kind == "user_timeline" else op.user for op in mixed] == [op.user for op in plain]
    assert all(op.user in set(USERS) for op in mixed)


def test_page_depths_and_body_sizes_follow_their_distributions() -> None:
    ops = Workload(
        USERS, FOLLOWERS, Mix(0.5), seed=2, body_sizes=Sizes.parse("200-300"), page_depths=Depths.parse("1:3,4:1")
    ).ops(8000)
    depths = Counter(op.pages for op in ops if op.kind == "read")
    assert set(depths) == {1, 4} and 2.5 < depths[1] / depths[4] < 3.5
    sizes = [op.body_bytes for op in ops if op.kind == "post"]
    assert min(sizes) >= 200 and max(sizes) <= 300 and len(set(sizes)) > 50
    assert all(op.pages == 1 for op in ops if op.kind == "post")
    # The body a post sends is exactly its size, and the default body is the short one.
    post = next(op for op in ops if op.kind == "post")
    assert len(post_body(post).encode()) == post.body_bytes
    assert post_body(Op("post", 7, None, 3)) == "bench post 3 by 7"
    assert Sizes.parse("256") == Sizes(256, 256) and Sizes.parse(None) == Sizes()
    assert Depths.parse("2").mean == 2 and Depths.parse("1-3").mean == 2


def test_mentions_name_other_users_and_leave_the_rest_of_the_stream_alone() -> None:
    plain = Workload(USERS, FOLLOWERS, Mix(0.5), seed=3).ops(4000)
    named = Workload(USERS, FOLLOWERS, Mix(0.5), seed=3, max_mentions=3).ops(4000)
    assert [(op.kind, op.user) for op in named] == [(op.kind, op.user) for op in plain]
    posts = [op for op in named if op.kind == "post"]
    counts = Counter(len(op.mentions) for op in posts)
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > len(posts) / 8  # uniform over 0..3
    assert all(op.user not in op.mentions and len(set(op.mentions)) == len(op.mentions) for op in posts)
    assert all(set(op.mentions) <= set(USERS) for op in posts)
    # Each mention is in the body whole, whatever the size: a cut never turns @1234 into @12.
    for size in (0, 5, 9, 14, 256):
        for op in posts[:200]:
            body = post_body(Op("post", op.user, None, op.seq, body_bytes=size, mentions=op.mentions))
            assert len(body) == (size or len(body))
            assert set(mentioned_ids(body)) <= set(op.mentions)
            assert size != 256 or mentioned_ids(body) == list(op.mentions)
    with pytest.raises(ValueError, match=r"mentions 51 is outside 0\.\.50"):
        Workload(USERS, FOLLOWERS, max_mentions=51)


def test_author_rate_models_tie_posting_to_reach_to_its_inverse_or_to_nothing() -> None:
    def posts_by(model: str) -> Counter[int]:
        ops = Workload(USERS, FOLLOWERS, Mix(0.0), seed=6, author_rates=model).ops(20_000)
        return Counter(op.user for op in ops)

    reach, inverse, independent = posts_by("reach"), posts_by("inverse"), posts_by("independent")
    mean = 20_000 / len(USERS)
    assert reach[100] > 20 * mean  # the account with 5000 followers posts most by reach
    assert inverse[100] < mean / 5  # and rarely by the inverse
    assert reach[100] > 100 * inverse[100]
    # Independent: heavy-tailed, whoever the followers: the top fifth of the accounts make most of the posts.
    top = sum(n for _, n in independent.most_common(len(USERS) // 5))
    assert top > 0.6 * 20_000 and independent.most_common(1)[0][0] != 100
    with pytest.raises(ValueError, match="author rate model 'loud'"):
        Workload(USERS, FOLLOWERS, author_rates="loud")


def test_dormant_users_do_not_read_and_returning_ones_come_back_once_marked() -> None:
    workload = Workload(USERS, FOLLOWERS, Mix(0.9, 0.05), seed=8, dormant=0.5, returning=0.4, horizon=6000)
    asleep = workload.dormant_users
    assert len(asleep) == 500 and sum(1 for at in asleep.values() if at is not None) == 200
    ops = workload.ops(8000)
    acting = [(op.seq, op.user) for op in ops if op.kind == "read"]
    acting += [(op.seq, op.other) for op in ops if op.kind == "user_timeline"]
    acting += [(op.seq, op.user) for op in ops if op.kind == "follow"]
    for seq, user in acting:  # nobody asleep reads, views or follows; a returning user only from its operation on
        assert user not in asleep or (asleep[user] is not None and asleep[user] <= seq), (seq, user)
    marked = [op for op in ops if op.returning]
    assert all(op.kind == "read" and asleep[op.user] is not None for op in marked)
    assert len({op.user for op in marked}) == len(marked) > 50  # each returning user's first read, once
    first = {}
    for op in ops:
        if op.kind == "read" and op.user in asleep:
            first.setdefault(op.user, op)
    assert all(op.returning for op in first.values())
    tally = Tally(iter(ops).__next__)
    for _ in ops:
        tally()
    assert tally.summary()["returning_first_reads"] == len(marked)
    # Off by default: the stream is the one it always was.
    assert Workload(USERS, FOLLOWERS, seed=8).ops(500) == Workload(USERS, FOLLOWERS, seed=8, dormant=0.0).ops(500)
    with pytest.raises(ValueError, match="need a horizon"):
        Workload(USERS, FOLLOWERS, dormant=0.5, returning=0.5)
    with pytest.raises(ValueError, match=r"dormant 1\.0"):
        Workload(USERS, FOLLOWERS, dormant=1.0)


def test_mentions_are_read_from_a_body_as_a_user_would_write_them() -> None:
    assert mentioned_ids("@12 hello @7, and @12 again (@3)") == [12, 7, 3]
    assert mentioned_ids("mail a@3 or @4x or @@5 or @") == []


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (Sizes.parse, "0", "not within 1..2000"),
        (Sizes.parse, "300-200", "minimum first"),
        (Sizes.parse, "5000", "not within"),
        (Sizes.parse, "big", "not N or MIN-MAX"),
        (Depths.parse, "0", "at least 1"),
        (Depths.parse, "1:x", "not N, MIN-MAX"),
        (Depths.parse, "1:0,2:0", "not all 0"),
    ],
)
def test_bad_sizes_and_depths_name_the_fix(parse: Any, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(text)
    with pytest.raises(ValueError, match="user-timeline ratio"):
        Mix(0.9, 0.0, 1.5)


def test_tally_counts_what_was_issued() -> None:
    workload = Workload(USERS, FOLLOWERS, Mix(0.8, 0.0, 0.25), seed=4, body_sizes=Sizes(256, 256))
    tally = Tally(workload.next_op)
    ops = [tally() for _ in range(3000)]
    summary = tally.summary()
    kinds = Counter(op.kind for op in ops)
    assert summary["operations"] == {k: kinds[k] for k in ("read", "user_timeline", "post", "follow", "unfollow")}
    reads = kinds["read"] + kinds["user_timeline"]
    assert summary["read_mix"]["user_timeline"] == round(kinds["user_timeline"] / reads, 6)
    assert summary["read_pages"] == {"1": reads}
    assert summary["body_bytes"] == {"count": kinds["post"], "min": 256, "mean": 256.0, "max": 256}
