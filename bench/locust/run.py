"""Running Locust from Python: the ``locust`` command line for this project's locustfile, and its results summed up.

Used by ``fanout locust`` and ``fanout perf http``. The per-request percentiles come from the HdrHistograms the
locustfile writes (``<out>_fanout.json``), since Locust's own are rounded to whole milliseconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def locust_command(
    host: str,
    out: str,
    *,
    users: int,
    spawn_rate: float,
    run_time: str,
    web: bool = False,
    web_port: int = 8089,
    processes: int | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The ``locust`` command line: this project's locustfile, results under ``out``, loopback web UI."""
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "-H", host]
    command += ["-u", str(users), "-r", f"{spawn_rate:g}"]
    command += ["--csv", out, "--html", f"{out}.html", "--json-file", out]
    if web:
        command += ["--web-host", "127.0.0.1", "--web-port", str(web_port)]
    else:
        command += ["--headless", "--only-summary", "-t", run_time]
    if processes:
        command += ["--processes", str(processes)]
    return command + list(extra)


def summarize(out: str) -> dict[str, Any]:
    """Per request name: requests, failures, requests/s (Locust's totals) and HdrHistogram p50/p99 (ms)."""
    stats = json.loads(Path(f"{out}.json").read_text())
    fanout_file = Path(f"{out}_fanout.json")
    hdr = json.loads(fanout_file.read_text())["hdr"] if fanout_file.exists() else {}
    rows = {}
    for entry in stats:
        span = max(entry["last_request_timestamp"] - entry["start_time"], 1e-9)
        h = hdr.get(entry["name"], {})
        rows[entry["name"]] = {
            "requests": entry["num_requests"],
            "failures": entry["num_failures"],
            "per_s": entry["num_requests"] / span,
            "p50_ms": h.get("p50_ms"),
            "p99_ms": h.get("p99_ms"),
        }
    return rows
