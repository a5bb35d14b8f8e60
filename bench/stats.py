"""Statistics over repeated rounds: medians with 95% bootstrap intervals, and which differences are clear.

A round is one run of every strategy; a figure (read p99, write amplification, ...) has one value per round. The
interval of a figure is the 95% percentile-bootstrap interval of its median over rounds (``scipy.stats.bootstrap``,
resampling rounds, never single requests: a round's p99 stays that round's p99). Two strategies differ clearly on a
figure when their intervals do not overlap; the interval of their difference resamples rounds in pairs, since both
ran in the same round.

With few rounds the percentile bootstrap of a median can only return values that occurred, so with 2 or 3 rounds the
interval is the range of the rounds (for 3 rounds that range covers the true median 75% of the time, not 95%): more
rounds give narrower, better-covering intervals. Resampling is seeded, so the same rounds give the same intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2_000
#: Seed of the resampling (intervals are reproducible from the rounds alone).
SEED = 12


@dataclass(frozen=True)
class Interval:
    """A median over rounds and its 95% interval (``low`` = ``high`` = the value with one round)."""

    median: float
    low: float
    high: float
    rounds: int

    def overlaps(self, other: Interval) -> bool:
        """Whether the two intervals share any value (touching ends count as overlapping)."""
        return self.low <= other.high and other.low <= self.high


def _median(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(values, axis=axis)


def median_interval(values: Sequence[float]) -> Interval | None:
    """The median of ``values`` (one per round) with its 95% bootstrap interval; None without values."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if data.size == 0:
        return None
    median = float(np.median(data))
    if data.size == 1 or np.all(data == data[0]):  # nothing to resample: the interval is the value itself
        return Interval(median, median, median, int(data.size))
    result = stats.bootstrap(
        (data,),
        _median,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",  # BCa needs more distinct values than a handful of rounds give
        vectorized=True,
        rng=np.random.default_rng(SEED),
    )
    low, high = result.confidence_interval
    # Percentile bounds are always sample values here; keep the median inside them against float noise.
    return Interval(median, min(float(low), median), max(float(high), median), int(data.size))


def difference_interval(a: Sequence[float], b: Sequence[float]) -> Interval | None:
    """Median of ``a`` minus median of ``b`` with its 95% interval, resampling rounds in pairs (same round, same index).

    Rounds where either value is missing are left out; None when no round has both.
    """
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if not pairs:
        return None
    xs, ys = (np.asarray(side, dtype=float) for side in zip(*pairs, strict=True))
    point = float(np.median(xs) - np.median(ys))
    if xs.size == 1 or (np.all(xs == xs[0]) and np.all(ys == ys[0])):
        return Interval(point, point, point, int(xs.size))
    result = stats.bootstrap(
        (xs, ys),
        lambda x, y, axis=-1: np.median(x, axis=axis) - np.median(y, axis=axis),
        paired=True,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(SEED),
    )
    low, high = result.confidence_interval
    return Interval(point, min(float(low), point), max(float(high), point), int(xs.size))


@dataclass(frozen=True)
class Difference:
    """Two strategies on one figure: ``lower`` has the smaller median; ``clear`` when their intervals do not overlap."""

    lower: str
    higher: str
    clear: bool


def differences(intervals: dict[str, Interval]) -> list[Difference]:
    """Every pair of the named intervals (in the given order), each marked clear or not."""
    names = list(intervals)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ia, ib = intervals[a], intervals[b]
            lower, higher = (a, b) if ia.median <= ib.median else (b, a)
            pairs.append(Difference(lower, higher, not ia.overlaps(ib)))
    return pairs


def tail_samples(count: int | float | None, percentile: float) -> int | None:
    """How many samples lie beyond a percentile (0..100) of ``count`` samples: what a tail figure rests on.

    p99.9 of 4,700 reads rests on 5 samples (4,700 x 0.001 = 4.7, rounded up).
    """
    if count is None:
        return None
    return math.ceil(round(count * (100.0 - percentile) / 100.0, 9))
