"""Latency histograms and the figures the reports show.

Every latency is recorded in microseconds into an HdrHistogram covering 1 µs to 1 h with 3 significant digits, and
summarised in milliseconds as count, mean, p50, p90, p99, p99.9 and max.
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
SIGNIFICANT_DIGITS = 3
#: Percentiles every latency summary reports, by the key suffix the result JSON uses.
PERCENTILES: dict[str, float] = {"p50_ms": 50.0, "p90_ms": 90.0, "p99_ms": 99.0, "p999_ms": 99.9}


def new_histogram(word_size: int = 8) -> HdrHistogram:
    """An empty latency histogram (µs, 1 µs..1 h, 3 significant digits); ``word_size`` 4 halves its memory."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS, word_size=word_size)


def record_seconds(hist: HdrHistogram, seconds: float) -> None:
    """Record a latency given in seconds (clamped into the histogram's range, so nothing is silently dropped)."""
    hist.record_value(min(HIGHEST_US, max(LOWEST_US, round(seconds * 1_000_000))))


def merged(hists: Iterable[HdrHistogram]) -> HdrHistogram:
    """One histogram holding every value of ``hists``."""
    total = new_histogram()
    for h in hists:
        total.add(h)
    return total


def latency_summary(hist: HdrHistogram) -> dict[str, float | int]:
    """Count, mean, percentiles and max in milliseconds (zeros for an empty histogram)."""
    count = hist.get_total_count()
    summary: dict[str, float | int] = {
        "count": count,
        "mean_ms": round(hist.get_mean_value() / 1000, 3) if count else 0.0,
    }
    for key, pct in PERCENTILES.items():
        summary[key] = round(hist.get_value_at_percentile(pct) / 1000, 3) if count else 0.0
    summary["max_ms"] = round(hist.get_max_value() / 1000, 3) if count else 0.0
    return summary


def encode(hist: HdrHistogram) -> str:
    """The histogram in HdrHistogram's standard compressed base64 form (``HdrHistogram.decode`` reads it back)."""
    return hist.encode().decode("ascii")
