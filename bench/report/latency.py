"""The full latency distribution of a result, per strategy and operation, in wrk2's ``--latency`` format.

For each operation: the percentiles wrk2 lists (50, 75, 90, 99, 99.9, 99.99, 100) and the detailed percentile
spectrum HdrHistogram prints (:meth:`~hdrh.histogram.HdrHistogram.output_percentile_distribution`), in milliseconds,
of the corrected latency (from each operation's intended start), decoded from the histograms the result file holds.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.results import block_histogram
from targets.histograms import US_PER_MS

#: wrk2's summary percentiles.
SUMMARY = (50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0)
#: The result blocks that hold an operation's latency, in the order they are printed.
OPERATIONS = ("read", "user_timeline", "publish", "follow", "unfollow")


def distributions(doc: dict[str, Any]) -> Iterator[tuple[str, str, HdrHistogram]]:
    """(strategy, operation, corrected-latency histogram) of every operation the result measured."""
    for name, figures in doc["strategies"].items():
        for operation in OPERATIONS:
            block = figures.get(operation)
            hist = block_histogram(block) if block else None
            if hist is not None and hist.get_total_count():
                yield name, operation, hist


def distribution_text(hist: HdrHistogram) -> str:
    """wrk2's "Latency Distribution" block and HdrHistogram's detailed spectrum of one histogram (ms)."""
    lines = ["  Latency Distribution (HdrHistogram - Recorded Latency)"]
    values = hist.get_percentile_to_value_dict(list(SUMMARY))
    lines += [f"{p:7.3f}%  {values[p] / US_PER_MS:8.3f}ms" for p in SUMMARY]
    lines += ["", "  Detailed Percentile spectrum:"]
    spectrum = io.BytesIO()
    hist.output_percentile_distribution(spectrum, US_PER_MS)
    text = spectrum.getvalue().decode()
    # hdrh 0.10 scales every value but the standard deviation: print that one in ms too.
    std_ms = hist.get_stddev() / US_PER_MS
    text = re.sub(r"StdDeviation   = *[\d.]+", f"StdDeviation   = {std_ms:12.3f}", text)
    return "\n".join(lines) + "\n" + text


def latency_report(doc: dict[str, Any]) -> str:
    """Every operation's distribution, each under a ``<strategy> <operation>`` heading."""
    parts = [
        f"{name} {operation}: {hist.get_total_count():,} operations, latency from intended start\n"
        + distribution_text(hist)
        for name, operation, hist in distributions(doc)
    ]
    return "\n".join(parts)
