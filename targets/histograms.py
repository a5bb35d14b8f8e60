"""The one latency-histogram convention: HdrHistograms of microseconds, 1 µs to 1 h, 3 significant digits.

Everything that records a latency (the bench driver, the fan-out's delivery reports, the service's metrics, Locust's
stats) makes its histograms here, so any two of them merge, and summarises them here, so every summary reads alike:
count, min, mean, p50, p90, p99, p99.9 and max in milliseconds. Microseconds because HdrHistograms hold integers and
a Redis read takes well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hdrh.histogram import HdrHistogram

#: The unit of every recorded value (result files name it as ``histogram_unit``).
UNIT = "us"
LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
SIGNIFICANT_DIGITS = 3
US_PER_MS = 1000.0
#: The percentiles of a summary: key -> percentile.
PERCENTILES: dict[str, float] = {"p50_ms": 50.0, "p90_ms": 90.0, "p99_ms": 99.0, "p999_ms": 99.9}


def new_histogram(word_size: int = 8) -> HdrHistogram:
    """An empty latency histogram (µs, 1 µs..1 h, 3 significant digits); ``word_size`` 4 halves its memory."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS, word_size=word_size)


def record_us(hist: HdrHistogram, us: int, count: int = 1) -> None:
    """Record a latency given in microseconds, ``count`` times (clamped into the range, never dropped)."""
    hist.record_value(min(HIGHEST_US, max(LOWEST_US, us)), count)


def record_seconds(hist: HdrHistogram, seconds: float, count: int = 1) -> None:
    """Record a latency given in seconds, ``count`` times (rounded to the microsecond, clamped, never dropped)."""
    record_us(hist, round(seconds * 1_000_000), count)


def merged(hists: Iterable[HdrHistogram]) -> HdrHistogram:
    """One histogram holding every value of ``hists``."""
    total = new_histogram()
    for h in hists:
        total.add(h)
    return total


def percentile_ms(hist: HdrHistogram, percentile: float) -> float:
    """The value at ``percentile`` (0..100) in milliseconds; 0.0 for an empty histogram."""
    return hist.get_value_at_percentile(percentile) / US_PER_MS


def summary(hist: HdrHistogram) -> dict[str, Any]:
    """``count``, ``min_ms``, ``mean_ms``, the :data:`PERCENTILES` and ``max_ms`` of ``hist``, in milliseconds.

    Percentiles are HdrHistogram's (the highest value equivalent to it at the histogram's precision). An empty
    histogram has every figure None except its count (and no ``min_ms``), so nothing reads as a 0 ms latency.
    """
    count = hist.get_total_count()
    block: dict[str, Any] = {"count": count}
    if not count:
        return {**block, "mean_ms": None, **dict.fromkeys(PERCENTILES), "max_ms": None}
    block["min_ms"] = hist.get_min_value() / US_PER_MS
    block["mean_ms"] = round(hist.get_mean_value() / US_PER_MS, 6)
    values = hist.get_percentile_to_value_dict(list(PERCENTILES.values()))  # one pass for all of them
    block.update({key: values[percentile] / US_PER_MS for key, percentile in PERCENTILES.items()})
    block["max_ms"] = hist.get_max_value() / US_PER_MS
    return block


def encode(hist: HdrHistogram) -> str:
    """The histogram as text (HdrHistogram's compressed, base64 V2 encoding), for files, Redis and messages."""
    return hist.encode().decode("ascii")


def decode(encoded: str | bytes) -> HdrHistogram:
    """A histogram back from :func:`encode`; raises ValueError (naming the decoder's complaint) if it is not one."""
    try:
        return HdrHistogram.decode(encoded)
    except Exception as exc:  # the decoder raises binascii, zlib and struct errors alike
        raise ValueError(f"not an encoded HdrHistogram ({type(exc).__name__}: {exc})") from None
