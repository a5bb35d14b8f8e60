"""The one latency-histogram convention: recording, merging, summarising, encoding."""

from __future__ import annotations

import pytest

from targets.histograms import (
    HIGHEST_US,
    decode,
    encode,
    merged,
    new_histogram,
    percentile_ms,
    record_seconds,
    record_us,
    summary,
)


def test_record_seconds_clamps_and_counts() -> None:
    hist = new_histogram()
    record_seconds(hist, 0.0)  # below 1 µs: recorded as 1 µs, not dropped
    record_seconds(hist, 0.0025, 3)
    record_seconds(hist, 10 * 3600.0)  # above an hour: recorded at the top
    assert hist.get_total_count() == 5
    assert hist.get_min_value() == 1
    assert abs(hist.get_value_at_percentile(50) - 2500) <= 3
    assert hist.get_max_value() >= HIGHEST_US * 0.999


def test_merged_holds_every_value() -> None:
    a, b = new_histogram(4), new_histogram()
    record_seconds(a, 0.001, 10)
    record_seconds(b, 0.1, 5)
    total = merged([a, b])
    assert total.get_total_count() == 15
    assert abs(total.get_max_value() - 100_000) <= 100


def test_record_us_clamps_like_record_seconds() -> None:
    hist = new_histogram()
    record_us(hist, -5)  # a clock step backwards still counts, as 1 µs
    record_us(hist, 2 * HIGHEST_US, 2)
    assert hist.get_total_count() == 3 and hist.get_min_value() == 1
    assert hist.get_max_value() >= HIGHEST_US * 0.999


def test_summary_is_in_milliseconds_and_empty_is_none() -> None:
    hist = new_histogram()
    assert percentile_ms(hist, 99.0) == 0.0
    assert summary(hist) == {
        "count": 0,
        "mean_ms": None,
        "p50_ms": None,
        "p90_ms": None,
        "p99_ms": None,
        "p999_ms": None,
        "max_ms": None,
    }
    record_seconds(hist, 0.000347, 4)
    assert summary(hist) == {
        "count": 4,
        "min_ms": 0.347,
        "mean_ms": 0.347,
        **dict.fromkeys(("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"), 0.347),
    }
    assert percentile_ms(hist, 99.0) == 0.347


def test_encode_round_trips_and_garbage_is_a_value_error() -> None:
    hist = new_histogram()
    record_seconds(hist, 0.002, 7)
    text = encode(hist)
    assert isinstance(text, str)
    for copy in (decode(text), decode(text.encode("ascii"))):  # as read from a file, and from Redis
        assert copy.get_total_count() == 7 and copy.get_max_value() == hist.get_max_value()
    with pytest.raises(ValueError, match="not an encoded HdrHistogram"):
        decode("no histogram")
