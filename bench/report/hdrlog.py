"""HdrHistogram interval logs (``.hlog``) of a run, per strategy and operation, for HdrHistogram's log tools.

One file per strategy and result operation (``push-read.hlog``, ``push-publish.hlog``, ...), written by hdrh's
:class:`~hdrh.log.HistogramLogWriter` in the standard format (version 1.2): a start and base time, a legend, then one
interval histogram per driver window (corrected latency in µs of the operations meant to start in it; empty windows
included, so the intervals tile the run). Max values in the interval lines are in milliseconds. The intervals of a
file add up to the result's count for that operation (``strategies.<name>.<operation>.count``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

from bench.driver import DriveResult
from targets.histograms import US_PER_MS, merged


def operations(publish_kinds: Sequence[str] = ()) -> dict[str, tuple[str, ...]]:
    """Result operation -> the driver kinds recorded under it (a scenario's own posts count as publishing)."""
    return {
        "read": ("read",),
        "user_timeline": ("user_timeline",),
        "publish": ("post", *publish_kinds),
        "follow": ("follow",),
        "unfollow": ("unfollow",),
    }


def write_hdr_logs(directory: Path, strategy: str, drive: DriveResult, publish_kinds: Sequence[str] = ()) -> list[Path]:
    """Write one ``<strategy>-<operation>.hlog`` per operation the run measured; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    start_ms = drive.started_unix_s * 1000.0
    written = []
    for operation, kinds in operations(publish_kinds).items():
        stats = [drive.kinds[k] for k in kinds if k in drive.kinds]
        if not stats:
            continue
        last = max((max(s.windows, default=-1) for s in stats), default=-1)
        path = directory / f"{strategy}-{operation}.hlog"
        with path.open("w") as out:
            writer = HistogramLogWriter(out)
            writer.output_comment(f"[fanout bench: {strategy} {operation}, corrected latency, values in us]")
            writer.output_log_format_version()
            # hdrh 0.10's output_start_time() formats milliseconds as seconds and fails; same line, written here.
            started = datetime.fromtimestamp(drive.started_unix_s, UTC).isoformat(" ")
            # Formatted as output_base_time() formats the base time, so the first interval starts at offset 0 exactly
            # (a reader skips intervals that start before the start time).
            writer.output_comment(f"[StartTime: {start_ms / 1000.0:f} (seconds since epoch), {started}]")
            writer.output_base_time(start_ms)
            writer.base_time = start_ms  # interval timestamps relative to the base time, as the Java writer's
            writer.output_legend()
            for window in range(last + 1):
                interval = merged(s.windows[window] for s in stats if window in s.windows)
                _stamp(interval, start_ms + window * drive.window_s * 1000.0, drive.window_s * 1000.0)
                writer.output_interval_histogram(interval, max_value_unit_ratio=US_PER_MS)
        written.append(path)
    return written


def _stamp(hist: HdrHistogram, start_ms: float, length_ms: float) -> None:
    """Set an interval histogram's start and end (absolute ms since the epoch, as the log writer expects)."""
    hist.set_start_time_stamp(start_ms)
    hist.set_end_time_stamp(start_ms + length_ms)
