"""Seeded operation streams for the benchmark: what users do, knowing nothing of stores or strategies.

A :class:`Workload` turns a follower graph's users (ids and follower counts) into an endless, reproducible sequence
of :class:`Op`: home-timeline reads, user-timeline reads (one account's own posts), posts and, optionally,
follow/unfollow churn. A read may go deeper than the first page (``pages``: the reader follows ``before`` from page
to page); a post carries the size of its body (``body_bytes``, drawn from a :class:`Sizes` range) and the users
it mentions (``mentions``: 0 to ``max_mentions`` users drawn uniformly, as DeathStarBench's compose-post does). The
same seed gives the same sequence, so every strategy is driven by exactly the same operations. It uses only
:mod:`random` and :mod:`bisect`, so the asyncio driver and Locust's gevent users can share it.

Activity models:

* readers are chosen with a Zipf-like skew: users are ranked and the user of rank ``r`` reads with weight
  ``1 / r ** reader_skew`` (0 gives uniform readers). The ranking is a seeded random order, or, when
  ``followee_counts`` are given, by how many accounts a user follows (the most engaged readers follow the most);
* authors post with weight ``(1 + followers) ** author_alpha`` (0 gives uniform authors, 1 makes posting
  proportional to reach); with ``author_rates="inverse"`` the weight is ``(1 + followers) ** -author_alpha`` (the
  celebrity who rarely posts), with ``"independent"`` a seeded heavy-tailed draw per user (Pareto, shape 1.16: a fifth
  of the accounts post four fifths of the posts) that ignores reach; ``quiet_authors`` never post (the spike scenario
  keeps its celebrities for the burst);
* a ``dormant`` fraction of the users (seeded) never read, follow or view; a ``returning`` fraction of those comes
  back at a seeded operation within the first ``horizon`` ones and reads from then on, its first read marked
  ``Op.returning`` (a timeline that fan-out to active users only has let go stale is rebuilt on that read);
* a user-timeline read (``Mix.user_timeline_ratio`` of the reads) views an account chosen by reach like an author,
  spike celebrities included; ``other`` is the viewer;
* page depths, body sizes and mentions come from a random generator of their own, so that turning them on leaves
  the rest of the stream (kinds and users) exactly as it was;
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

OpKind = Literal["read", "user_timeline", "post", "follow", "unfollow"]
KINDS: tuple[OpKind, ...] = ("read", "user_timeline", "post", "follow", "unfollow")
#: Kinds that read pages (``Op.pages`` of them).
READ_KINDS: tuple[OpKind, ...] = ("read", "user_timeline")
#: The largest post body the service accepts (characters; bodies here are ASCII, so bytes too).
MAX_BODY_BYTES = 2000

DEFAULT_READ_RATIO = 0.95
DEFAULT_READER_SKEW = 1.0
DEFAULT_AUTHOR_ALPHA = 0.5
#: The most users one post may mention (DeathStarBench's compose-post names up to 5).
MAX_MENTIONS = 50
#: How authors' posting weights relate to their reach (``Workload(author_rates=...)``).
AUTHOR_RATE_MODELS = ("reach", "independent", "inverse")
#: Pareto shape of the independent posting weights: the 80/20 rule.
INDEPENDENT_SHAPE = 1.16
#: Draws of a reader before giving up (only a dormant share near 1 makes them many).
READER_DRAWS = 10_000


@dataclass(frozen=True, slots=True)
class Op:
    """One operation: ``user`` reads, posts, or (un)follows ``other``; ``seq`` is its index in the stream.

    A ``user_timeline`` read reads ``user``'s own posts (``other`` is the viewer). Reads fetch ``pages`` pages, each
    below the last post of the previous one; a post's body is ``body_bytes`` long (0: the short default body).
    """

    kind: OpKind
    user: int
    other: int | None = None
    seq: int = 0
    pages: int = 1
    body_bytes: int = 0
    #: Users a post mentions (``@<id>`` in its body; they get the post in their home timelines).
    mentions: tuple[int, ...] = ()
    #: A returning user's first read after its dormant spell.
    returning: bool = False


@dataclass(frozen=True, slots=True)
class Mix:
    """Fractions of the operation stream: reads, churn (follows and unfollows, half each), posts the rest."""

    read_ratio: float = DEFAULT_READ_RATIO
    churn_ratio: float = 0.0
    #: Fraction of the reads that read one account's own posts (a user timeline) instead of a home timeline.
    user_timeline_ratio: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.user_timeline_ratio <= 1.0:
            raise ValueError(
                f"user-timeline ratio {self.user_timeline_ratio} is outside 0..1: pass the fraction of reads, e.g. 0.3"
            )
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


@dataclass(frozen=True, slots=True)
class Sizes:
    """Post body sizes in bytes: uniform over ``low..high`` (inclusive); ``Sizes()`` is the short default body."""

    low: int = 0
    high: int = 0

    def __post_init__(self) -> None:
        if (self.low, self.high) != (0, 0) and not 1 <= self.low <= self.high <= MAX_BODY_BYTES:
            raise ValueError(
                f"body size {self.low}-{self.high} is not within 1..{MAX_BODY_BYTES} bytes (minimum first): "
                f"pass e.g. 256 or 200-300"
            )

    @classmethod
    def parse(cls, text: str | None) -> Sizes:
        """``"256"`` (every body 256 bytes), ``"200-300"`` (uniform), or None / ``""`` (the short default body)."""
        if not text:
            return cls()
        low, _, high = text.partition("-")
        try:
            sizes = cls(int(low), int(high or low))
        except ValueError as exc:
            if "invalid literal" in str(exc):
                raise ValueError(f"body size {text!r} is not N or MIN-MAX bytes: pass e.g. 256 or 200-300") from None
            raise
        if sizes == cls():  # "0" is not the default body by another name
            raise ValueError(f"body size 0 is not within 1..{MAX_BODY_BYTES} bytes: pass e.g. 256 or 200-300")
        return sizes

    def draw(self, rng: random.Random) -> int:
        """One body size (0 for the default body)."""
        return self.low if self.low == self.high else rng.randint(self.low, self.high)


@dataclass(frozen=True, slots=True)
class Depths:
    """How many pages a read fetches: depth -> weight (``Depths()``: the first page only)."""

    weights: tuple[tuple[int, float], ...] = ((1, 1.0),)

    def __post_init__(self) -> None:
        if not self.weights or any(d < 1 or w < 0 for d, w in self.weights) or not any(w for _, w in self.weights):
            raise ValueError("page depths must be at least 1 with weights >= 0, not all 0: pass e.g. 1:0.7,2:0.2,5:0.1")

    @classmethod
    def parse(cls, text: str | None) -> Depths:
        """``"3"`` (always 3 pages), ``"1-5"`` (uniform), or ``"1:0.7,2:0.2,5:0.1"`` (depth:weight); None: 1."""
        if not text:
            return cls()
        try:
            if ":" in text:
                pairs = [part.split(":") for part in text.split(",")]
                return cls(tuple((int(d), float(w)) for d, w in pairs))
            low, _, high = text.partition("-")
            return cls(tuple((d, 1.0) for d in range(int(low), int(high or low) + 1)))
        except ValueError as exc:
            if "must be" in str(exc):
                raise
            raise ValueError(f"page depth {text!r} is not N, MIN-MAX or N:W,N:W...: pass e.g. 1-3") from None

    @property
    def mean(self) -> float:
        """The expected number of pages per read."""
        return sum(d * w for d, w in self.weights) / sum(w for _, w in self.weights)

    def draw(self, rng: random.Random) -> int:
        """One read's depth."""
        if len(self.weights) == 1:
            return self.weights[0][0]
        return self.weights[_pick(rng, list(accumulate(w for _, w in self.weights)))][0]


def check_activity(max_mentions: int, author_rates: str, dormant: float, returning: float, horizon: int) -> None:
    """Raise ValueError naming the first of these :class:`Workload` arguments that is out of range (the one check
    that ``fanout bench``'s options and the Locust file's custom arguments go through before a run)."""
    if author_rates not in AUTHOR_RATE_MODELS:
        raise ValueError(f"author rate model {author_rates!r} is not one of {', '.join(AUTHOR_RATE_MODELS)}")
    if not 0.0 <= dormant < 1.0 or not 0.0 <= returning <= 1.0:
        raise ValueError(
            f"dormant {dormant} / returning {returning} are outside 0..1 (dormant below 1): "
            "pass the share of users who do not read, and the share of those who come back"
        )
    if returning and horizon < 1:
        raise ValueError("returning users need a horizon: the number of operations they come back within")
    if not 0 <= max_mentions <= MAX_MENTIONS:
        raise ValueError(f"mentions {max_mentions} is outside 0..{MAX_MENTIONS}: pass the most users a post names")


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
        body_sizes: Sizes | None = None,
        page_depths: Depths | None = None,
        max_mentions: int = 0,
        author_rates: str = "reach",
        dormant: float = 0.0,
        returning: float = 0.0,
        horizon: int = 0,
    ) -> None:
        if len(user_ids) < 2:
            raise ValueError(f"a workload needs at least 2 users, got {len(user_ids)}: load a graph first")
        for name, counts in (("follower", follower_counts), ("followee", followee_counts)):
            if counts is not None and len(counts) != len(user_ids):
                raise ValueError(f"{len(counts)} {name} counts for {len(user_ids)} users: pass one per user")
        if reader_skew < 0 or author_alpha < 0:
            raise ValueError("reader_skew and author_alpha must be >= 0 (0 means uniform)")
        check_activity(max_mentions, author_rates, dormant, returning, horizon)
        self.mix = mix or Mix()
        self.seed = seed
        self.users = list(user_ids)
        self._rng = random.Random(seed)
        # Depths, sizes and user-timeline choices draw from their own generator: the main stream stays as it was.
        self._shape = random.Random(f"shape:{seed}")
        self.body_sizes = body_sizes or Sizes()
        self.page_depths = page_depths or Depths()
        self.max_mentions = max_mentions
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
        reach = [(1.0 + max(0, c)) ** author_alpha for c in counts]
        if author_rates == "inverse":
            posting = [(1.0 + max(0, c)) ** -author_alpha for c in counts]
        elif author_rates == "independent":
            draw = random.Random(f"author-rates:{seed}")
            posting = [draw.paretovariate(INDEPENDENT_SHAPE) for _ in self.users]
        else:
            posting = reach
        weights = [0.0 if u in quiet else w for u, w in zip(self.users, posting, strict=True)]
        if not any(weights):
            raise ValueError("every user is a quiet author: leave at least one account that posts")
        self._author_cum = list(accumulate(weights))
        self._viewed_cum = list(accumulate(reach))
        self._read_cut = self.mix.read_ratio
        self._churn_cut = self.mix.read_ratio + self.mix.churn_ratio
        self._followed: list[tuple[int, int]] = []
        # Dormant users, and when the returning ones among them come back (an operation's seq); None: never.
        activity = random.Random(f"dormant:{seed}")
        asleep = activity.sample(self.users, round(dormant * len(self.users)))
        back = asleep[: round(returning * len(asleep))]
        self._wakes: dict[int, int | None] = dict.fromkeys(asleep)
        self._wakes.update({u: activity.randrange(horizon) for u in back})
        self._returned: set[int] = set()

    @property
    def dormant_users(self) -> dict[int, int | None]:
        """Users who do not read from the start, with the operation they come back at (None: not during the run)."""
        return dict(self._wakes)

    @classmethod
    def from_follower_counts(
        cls, follower_counts: Mapping[int, int], mix: Mix | None = None, seed: int = 0, **kw: float
    ) -> Workload:
        """A workload over ``{user id: follower count}`` (users in ascending id order, so the seed alone decides)."""
        users = sorted(follower_counts)
        return cls(users, [follower_counts[u] for u in users], mix, seed, **kw)

    def declared_rates(self) -> tuple[dict[int, float], dict[int, float]]:
        """Each user's expected home-timeline reads and posts per operation of the stream, from the model itself
        (a dormant user reads nothing; a returning one is counted as dormant). What ``--rate-source declared`` tells
        adaptive up front, for the comparison with rates it learns online."""
        reads: dict[int, float] = {}
        previous = 0.0
        for user, cumulative in zip(self._readers, self._reader_cum, strict=True):
            if user not in self._wakes:
                reads[user] = cumulative - previous
            previous = cumulative
        awake = sum(reads.values())
        home_share = self.mix.read_ratio * (1.0 - self.mix.user_timeline_ratio)
        reads = {u: home_share * w / awake for u, w in reads.items()}
        post_share = 1.0 - self._churn_cut
        total = self._author_cum[-1]
        posts: dict[int, float] = {}
        previous = 0.0
        for user, cumulative in zip(self.users, self._author_cum, strict=True):
            if cumulative > previous:
                posts[user] = post_share * (cumulative - previous) / total
            previous = cumulative
        return reads, posts

    # -- choosing users ---------------------------------------------------------------------------------------
    def reader(self) -> int:
        """A user chosen by reading activity (Zipf-like), among those awake at this operation."""
        for _ in range(READER_DRAWS):
            user = self._readers[_pick(self._rng, self._reader_cum)]
            if user not in self._wakes:
                return user
            wakes = self._wakes[user]
            if wakes is not None and wakes <= self._seq:
                return user
        raise ValueError(f"no awake reader in {READER_DRAWS} draws: lower the dormant share")

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
            reader = self.reader()
            depth = self.page_depths.draw(self._shape)
            if self.mix.user_timeline_ratio and self._shape.random() < self.mix.user_timeline_ratio:
                viewed = self.users[_pick(self._shape, self._viewed_cum)]
                return Op("user_timeline", viewed, reader, seq, pages=depth)
            back = reader in self._wakes and reader not in self._returned
            if back:
                self._returned.add(reader)
            return Op("read", reader, None, seq, pages=depth, returning=back)
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
        author = self.author()
        return Op("post", author, None, seq, body_bytes=self.body_sizes.draw(self._shape), mentions=self.named(author))

    def named(self, author: int) -> tuple[int, ...]:
        """The users a post by ``author`` mentions: 0 to ``max_mentions`` others, uniformly (none when it is 0)."""
        if not self.max_mentions:
            return ()
        count = min(self._shape.randint(0, self.max_mentions), len(self.users) - 1)
        chosen: list[int] = []
        while len(chosen) < count:
            user = self.users[self._shape.randrange(len(self.users))]
            if user != author and user not in chosen:
                chosen.append(user)
        return tuple(chosen)

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
