"""Locust-side latency with sub-millisecond resolution, aggregated over distributed workers.

Locust keeps response times in a dict of rounded buckets, rounding everything below 100 ms to whole milliseconds;
a Redis timeline read takes well under 1 ms, so :func:`use_submillisecond_buckets` swaps in three significant
digits (0.347 ms stays 0.347 ms) for the percentiles the web UI and the HTML report show. Beside that, every
process records each request into HdrHistograms (µs, :mod:`targets.histograms`); a worker ships what it recorded with
each report to the master (Locust's ``report_to_master`` / ``worker_report`` events) and starts afresh, so the
master holds the merged histograms and each worker's request count.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hdrh.histogram import HdrHistogram

from targets.histograms import SIGNIFICANT_DIGITS, decode, encode, merged, new_histogram, record_seconds, summary

if TYPE_CHECKING:  # importing locust monkey-patches the process with gevent: only Locust processes do
    from locust.env import Environment

_REPORT_KEY = "fanout_hdr"
CSV_COLUMNS = ("count", "min_ms", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")


def bucket_response_time(response_time: float) -> float:
    """``response_time`` (ms) rounded to three significant digits, whatever its magnitude."""
    if response_time <= 0:
        return 0
    digits = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(response_time))
    return round(response_time, digits)


def use_submillisecond_buckets() -> None:
    """Make Locust's own percentiles keep sub-millisecond resolution (module-level hook Locust documents)."""
    import locust.stats

    locust.stats.bucket_response_time = bucket_response_time


class HdrStats:
    """Per-request-name HdrHistograms of one Locust process, merged on the master in distributed runs."""

    def __init__(self) -> None:
        self.hists: dict[str, HdrHistogram] = {}
        #: Requests each worker reported (master), or this process recorded (local runner), by client id.
        self.requests_by_worker: dict[str, int] = {}
        self._unreported = 0
        self.recorded = 0

    def attach(self, environment: Environment) -> None:
        """Listen to the environment's request and reporting events."""
        from locust.runners import MasterRunner, WorkerRunner

        events = environment.events
        events.request.add_listener(self._on_request)
        events.reset_stats.add_listener(self.reset)
        if isinstance(environment.runner, WorkerRunner):
            events.report_to_master.add_listener(self._on_report_to_master)
        if isinstance(environment.runner, MasterRunner):
            events.worker_report.add_listener(self._on_worker_report)

    def _on_request(self, request_type: str, name: str, response_time: float | None, **_: Any) -> None:
        self.recorded += 1
        self._unreported += 1
        if response_time is not None:
            hist = self.hists.get(name)
            if hist is None:
                hist = self.hists[name] = new_histogram()
            record_seconds(hist, response_time / 1000.0)

    def _on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data[_REPORT_KEY] = {
            "requests": self._unreported,
            "hists": {name: encode(h) for name, h in self.hists.items() if h.get_total_count()},
        }
        self._unreported = 0
        for hist in self.hists.values():
            hist.reset()

    def _on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        report = data.get(_REPORT_KEY)
        if not report:
            return
        self.requests_by_worker[client_id] = self.requests_by_worker.get(client_id, 0) + report["requests"]
        for name, encoded in report["hists"].items():
            hist = self.hists.get(name)
            if hist is None:
                hist = self.hists[name] = new_histogram()
            hist.add(decode(encoded))

    def reset(self) -> None:
        """Forget everything (Locust's reset-stats button)."""
        for hist in self.hists.values():
            hist.reset()
        self.requests_by_worker.clear()
        self._unreported = 0
        self.recorded = 0

    # -- reporting --------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, dict[str, float | int]]:
        """Latency summary (ms, µs resolution) per request name, and over all of them as ``Aggregated``."""
        rows = {name: summary(h) for name, h in sorted(self.hists.items())}
        rows["Aggregated"] = summary(merged(self.hists.values()))
        return rows

    def csv_text(self) -> str:
        """The summary as CSV: one row per request name, then ``Aggregated``."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["name", *CSV_COLUMNS])
        for name, row in self.summary().items():
            writer.writerow([name, *(row.get(c) for c in CSV_COLUMNS)])
        return out.getvalue()

    def write(self, prefix: str, extra: dict[str, Any]) -> list[Path]:
        """Write ``{prefix}_hdr.csv`` (percentiles per request name) and ``{prefix}_fanout.json``; returns paths."""
        csv_path = Path(f"{prefix}_hdr.csv")
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        csv_path.write_text(self.csv_text())
        json_path = Path(f"{prefix}_fanout.json")
        data = {"hdr": self.summary(), "requests_by_worker": self.requests_by_worker, "recorded": self.recorded}
        json_path.write_text(json.dumps({**data, **extra}, indent=2, sort_keys=True))
        return [csv_path, json_path]
