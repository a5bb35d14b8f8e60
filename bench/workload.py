"""Seeded operation streams for the benchmark: what users do, knowing nothing of stores or strategies.

A :class:`Workload` turns a follower graph's users (ids and follower counts) into an endless, reproducible sequence
of :class:`Op`: home-timeline reads, posts and, optionally, follow/unfollow churn. The same seed gives the same
sequence, so every strategy is driven by exactly the same operations. It uses only :mod:`random` and :mod:`bisect`,
so the asyncio driver and Locust's gevent users can share it.

Activity models:

* readers are chosen with a Zipf-like skew: users are ranked and the user of rank ``r`` reads with weight
  ``1 / r ** reader_skew`` (0 gives uniform readers). The ranking is a seeded random order, or, when
  ``followee_counts`` are given, by how many accounts a user follows (the most engaged readers follow the most);
* authors post with weight ``(1 + followers) ** author_alpha`` (0 gives uniform authors, 1 makes posting
  proportional to reach); ``quiet_authors`` never post (the spike scenario keeps its celebrities for the burst);
* a follow picks its follower like a reader and its followee like an author (popular accounts gain followers);
  an unfollow undoes one of the workload's own earlier follows, so churn never erodes the loaded graph.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

OpKind = Literal["read", "post", "follow", "unfollow"]
KINDS: tuple[OpKind, ...] = ("read", "post", "follow", "unfollow")

DEFAULT_READ_RATIO = 0.95
DEFAULT_READER_SKEW = 1.0
DEFAULT_AUTHOR_ALPHA = 0.5


@dataclass(frozen=True, slots=True)
class Op:
    """One operation: ``user`` reads, posts, or (un)follows ``other``; ``seq`` is its index in the stream."""

    kind: OpKind
    user: int
    other: int | None = None
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Mix:
    """Fractions of the operation stream: reads, churn (follows and unfollows, half each), posts the rest."""

    read_ratio: float = DEFAULT_READ_RATIO
    churn_ratio: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.read_ratio <= 1.0:
            raise ValueError(f"read ratio {self.read_ratio} is outside 0..1: pass a fraction such as 0.95")
        if not 0.0 <= self.churn_ratio <= 1.0 - self.read_ratio:
            raise ValueError(
                f"churn ratio {self.churn_ratio} does not fit beside read ratio {self.read_ratio}: "
                f"reads + churn must be at most 1"
            )

    @property
    def post_ratio(self) -> float:
        """Fraction of posts."""
        return max(0.0, 1.0 - self.read_ratio - self.churn_ratio)


class Workload:
    """A reproducible stream of operations over a fixed set of users.

    ``follower_counts`` is aligned with ``user_ids`` (None: every author equally likely). Not thread-safe; one
    instance per driver (Locust users on one gevent hub may share one, as greenlets do not preempt).
    """

    def __init__(
        self,
        user_ids: Sequence[int],
        follower_counts: Sequence[int] | None = None,
        mix: Mix | None = None,
        seed: int = 0,
        *,
        reader_skew: float = DEFAULT_READER_SKEW,
        author_alpha: float = DEFAULT_AUTHOR_ALPHA,
        followee_counts: Sequence[int] | None = None,
        quiet_authors: Collection[int] = (),
    ) -> None:
        if len(user_ids) < 2:
            raise ValueError(f"a workload needs at least 2 users, got {len(user_ids)}: load a graph first")
        for name, counts in (("follower", follower_counts), ("followee", followee_counts)):
            if counts is not None and len(counts) != len(user_ids):
                raise ValueError(f"{len(counts)} {name} counts for {len(user_ids)} users: pass one per user")
        if reader_skew < 0 or author_alpha < 0:
            raise ValueError("reader_skew and author_alpha must be >= 0 (0 means uniform)")
        self.mix = mix or Mix()
        self.seed = seed
        self.users = list(user_ids)
        self._rng = random.Random(seed)
        self._seq = 0
        # Reader activity is independent of reach: rank users in a seeded random order, then (stably) by followees.
        ranked = self.users[:]
        random.Random(f"readers:{seed}").shuffle(ranked)
        if followee_counts is not None:
            followees = dict(zip(self.users, followee_counts, strict=True))
            ranked.sort(key=lambda u: -followees[u])
        self._readers = ranked
        self._reader_cum = list(accumulate(1.0 / (rank**reader_skew) for rank in range(1, len(ranked) + 1)))
        counts = follower_counts if follower_counts is not None else [0] * len(self.users)
        quiet = set(quiet_authors)
        weights = [
            0.0 if u in quiet else (1.0 + max(0, c)) ** author_alpha for u, c in zip(self.users, counts, strict=True)
        ]
        if not any(weights):
            raise ValueError("every user is a quiet author: leave at least one account that posts")
        self._author_cum = list(accumulate(weights))
        self._read_cut = self.mix.read_ratio
        self._churn_cut = self.mix.read_ratio + self.mix.churn_ratio
        self._followed: list[tuple[int, int]] = []

    @classmethod
    def from_follower_counts(
        cls, follower_counts: Mapping[int, int], mix: Mix | None = None, seed: int = 0, **kw: float
    ) -> Workload:
        """A workload over ``{user id: follower count}`` (users in ascending id order, so the seed alone decides)."""
        users = sorted(follower_counts)
        return cls(users, [follower_counts[u] for u in users], mix, seed, **kw)

    # -- choosing users ---------------------------------------------------------------------------------------
    def reader(self) -> int:
        """A user chosen by reading activity (Zipf-like)."""
        return self._readers[_pick(self._rng, self._reader_cum)]

    def author(self) -> int:
        """A user chosen by posting activity (follower count ** alpha)."""
        return self.users[_pick(self._rng, self._author_cum)]

    # -- the stream -------------------------------------------------------------------------------------------
    def next_op(self) -> Op:
        """The next operation of the stream."""
        seq = self._seq
        self._seq += 1
        roll = self._rng.random()
        if roll < self._read_cut:
            return Op("read", self.reader(), None, seq)
        if roll < self._churn_cut:
            if self._followed and self._rng.random() < 0.5:
                follower, followee = self._followed.pop(self._rng.randrange(len(self._followed)))
                return Op("unfollow", follower, followee, seq)
            follower = self.reader()
            followee = self.author()
            while followee == follower:
                followee = self.author()
            self._followed.append((follower, followee))
            return Op("follow", follower, followee, seq)
        return Op("post", self.author(), None, seq)

    def ops(self, count: int) -> list[Op]:
        """The next ``count`` operations."""
        return [self.next_op() for _ in range(count)]

    def __iter__(self) -> Iterator[Op]:
        while True:
            yield self.next_op()


def _pick(rng: random.Random, cumulative: list[float]) -> int:
    """Index drawn with probability proportional to its weight, given the cumulative weights."""
    index = bisect_right(cumulative, rng.random() * cumulative[-1])
    return min(index, len(cumulative) - 1)
