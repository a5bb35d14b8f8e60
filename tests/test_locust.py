"""Locust against the HTTP service: a headless run, a distributed run (master and two workers), and the web UI.

Everything runs on loopback against ``fanout serve`` (push, async fan-out with its in-process worker) over a small
graph in the session's namespace. The web UI test drives headless Chromium and is skipped where there is none.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from bench.locust.run import LOCUSTFILE
from bench.locust.stats import bucket_response_time
from bench.service_process import ServiceProcess, free_port
from tests.browser import Browser, needs_chromium
from tests.service_support import drain_namespace, served, served_graph, service_namespace
from tests.signal_support import terminal_signals

__all__ = ["served", "served_graph"]  # module fixtures

LOCUST = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]


def locust_totals(json_file: Path) -> dict[str, dict[str, int]]:
    """Requests and failures per request name from Locust's --json-file output."""
    return {
        e["name"]: {"requests": e["num_requests"], "failures": e["num_failures"]}
        for e in json.loads(json_file.read_text())
    }


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.1)


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Poll until ``url`` answers (the process is starting its web server)."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, "the Locust web UI exited"
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"nothing answers at {url}"
        time.sleep(0.2)


def test_bucketing_keeps_three_significant_digits() -> None:
    assert bucket_response_time(0.34749) == 0.347
    assert bucket_response_time(0.0123456) == 0.0123
    assert bucket_response_time(12.345) == 12.3
    assert bucket_response_time(147.0) == 147
    assert bucket_response_time(58760.0) == 58800
    assert bucket_response_time(0) == 0


def test_headless_run_writes_csv_and_html_and_matches_the_service_counts(
    served: ServiceProcess, tmp_path: Path
) -> None:
    requests.delete(served.url + "/metrics", timeout=10)
    out = tmp_path / "run"
    # stop-timeout: users finish the request in hand when the run ends, so both sides count the same requests.
    run = ["-H", served.url, "--headless", "-u", "8", "-r", "8", "-t", "20s", "--stop-timeout", "10", "--only-summary"]
    files = ["--csv", str(out), "--html", f"{out}.html", "--json-file", str(out)]
    custom = [
        "--read-ratio",
        "0.9",
        "--page-size",
        "20",
        "--spike-at",
        "5",
        "--spike-size",
        "3",
        "--spike-accounts",
        "2",
        # The workload's payloads and reads: user timelines, pages beyond the first, 256-byte posts.
        "--user-timeline-ratio",
        "0.3",
        "--page-depth",
        "1-2",
        "--body-bytes",
        "256",
        "--mentions",
        "2",
    ]
    result = subprocess.run(
        [*LOCUST, *run, *files, *custom],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    totals = locust_totals(Path(f"{out}.json"))
    home_reads = totals["GET /users/[id]/timeline"]["requests"]
    user_reads = totals["GET /users/[id]/posts"]["requests"]
    reads = home_reads + user_reads  # one request per page
    posts = totals["POST /users/[id]/posts"]["requests"]
    assert home_reads > 0 and user_reads > 0 and posts > 0
    assert totals["spike: POST /users/[id]/posts"]["requests"] == 2 * 3
    assert all(t["failures"] == 0 for t in totals.values())
    # Locust's CSV and HTML report exist, failures 0 there too.
    with open(f"{out}_stats.csv", newline="") as f:
        aggregated = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    assert int(aggregated["Request Count"]) > 0 and int(aggregated["Failure Count"]) == 0
    assert "<html" in Path(f"{out}.html").read_text().lower()
    # Sub-millisecond resolution: Locust's own response-time buckets and the HdrHistogram percentiles.
    timeline = next(e for e in json.loads(Path(f"{out}.json").read_text()) if e["name"].startswith("GET"))
    assert any("." in str(k) for k in timeline["response_times"]), "Locust still rounds to whole milliseconds"
    with open(f"{out}_hdr.csv", newline="") as f:
        hdr = {r["name"]: r for r in csv.DictReader(f)}
    assert int(hdr["GET /users/[id]/timeline"]["count"]) == home_reads
    assert int(hdr["Aggregated"]["count"]) == sum(t["requests"] for t in totals.values())
    # The service counted exactly what Locust sent; the async fan-out delivered every post it acknowledged.
    asyncio.run(drain_namespace(service_namespace()))
    metrics = requests.get(served.url + "/metrics", timeout=10).json()
    assert metrics["counters"]["reads"] == reads
    assert metrics["counters"]["posts"] == posts + 2 * 3
    assert metrics["counters"]["posts_delivered"] == metrics["counters"]["posts"]
    assert metrics["counters"]["client_errors"] == metrics["counters"]["server_errors"] == 0
    assert metrics["delivery_lag"]["count"] > 0 and metrics["write_amplification"] > 0
    summary = json.loads(Path(f"{out}_fanout.json").read_text())
    assert summary["spike"]["status"].startswith("fired")


def test_distributed_master_and_two_workers_aggregate_every_request(served: ServiceProcess, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    port = free_port()
    bind = ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--expect-workers", "2"]
    run = ["-H", served.url, "--headless", "-u", "6", "-r", "6", "-t", "6s", "--only-summary"]
    master = subprocess.Popen(
        [*LOCUST, "--master", *bind, *run, "--csv", str(out), "--json-file", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    workers = [
        subprocess.Popen(
            [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        master_log, _ = master.communicate(timeout=120)
        worker_logs = [w.communicate(timeout=60)[0] for w in workers]
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
    assert master.returncode == 0, master_log[-3000:]
    # What each worker says it sent, what the master aggregated, and what it wrote, agree exactly.
    recorded = [int(m) for log in worker_logs for m in re.findall(r"worker \d+ recorded (\d+) requests", log)]
    assert len(recorded) == 2 and all(n > 0 for n in recorded), worker_logs
    total = sum(t["requests"] for t in locust_totals(Path(f"{out}.json")).values())
    summary = json.loads(Path(f"{out}_fanout.json").read_text())
    assert len(summary["requests_by_worker"]) == 2
    assert total == sum(recorded) == sum(summary["requests_by_worker"].values())
    assert summary["hdr"]["Aggregated"]["count"] == total


@needs_chromium
def test_web_ui_shows_the_custom_arguments_and_a_live_fanout_tab(served: ServiceProcess, tmp_path: Path) -> None:
    port = free_port()
    # As the README says: `fanout locust --host URL --web`.
    command = ["locust", "--host", served.url, "--web", "--web-port", str(port), "--out", str(tmp_path / "web")]
    ui = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=terminal_signals,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with Browser() as browser:
            wait_until_up(base + "/", ui)
            browser.goto(base + "/")
            browser.wait_for("document.body.innerText.includes('Custom parameters')")
            browser.evaluate(
                "[...document.querySelectorAll('div,button')]"
                ".find(e => e.textContent.trim() === 'Custom parameters').click()"
            )
            text = browser.wait_for("document.body.innerText.includes('Spike Size') && document.body.innerText")
            for label in ("Read Ratio", "Page Size", "Spike At", "Spike Size", "Spike Accounts", "Strategy"):
                assert label in text
            browser.screenshot(tmp_path / "form.png")
            form = {"user_count": 4, "spawn_rate": 4, "host": served.url, "read_ratio": "0.8", "strategy": "push"}
            assert requests.post(base + "/swarm", data=form, timeout=10).json()["success"] is True
            # A page rendered before the runner leaves "ready" would keep showing the start form.
            wait_until(lambda: requests.get(base + "/stats/requests", timeout=5).json()["state"] == "running")
            browser.goto(base + "/?tab=fanout")
            # Live numbers: the tab's posts row counts up from the service's /metrics.
            posts = browser.wait_for(
                "(() => { const row = [...document.querySelectorAll('tr')]"
                ".find(r => r.cells.length === 2 && r.cells[0].innerText === 'posts');"
                " return row && Number(row.cells[1].innerText) > 0 && Number(row.cells[1].innerText); })()"
            )
            assert posts > 0
            text = browser.text()
            assert "write amplification" in text and "delivery lag p99" in text and "Redis used memory" in text
            assert re.search(r"Locust HdrHistogram GET /users/\[id\]/timeline: p50 / p99 / p99.9\s+\d+\.\d{3} ms", text)
            browser.screenshot(tmp_path / "fanout-tab.png")
            # The spike button on the /fanout page fires the celebrity spike.
            browser.goto(base + "/fanout")
            browser.evaluate("document.querySelector('#spike button').click()")
            browser.wait_for("document.getElementById('status').innerText.includes('firing')")
        requests.get(base + "/stop", timeout=10)
    finally:
        os.killpg(ui.pid, signal.SIGINT)  # Ctrl-C, as in a terminal
        assert ui.wait(timeout=60) is not None


def test_bad_custom_argument_ends_the_run_with_one_clear_line(served: ServiceProcess) -> None:
    result = subprocess.run(
        [*LOCUST, "-H", served.url, "--headless", "-u", "2", "-t", "30s", "--read-ratio", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "--read-ratio 1.5 is outside 0..1" in errors[0], result.stderr[-2000:]
