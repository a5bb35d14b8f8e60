"""The fan-out tab of Locust's web UI, and a page with a celebrity-spike button.

Locust's React UI renders extra tabs declared in ``template_args`` (``extended_tabs`` / ``extended_tables``) and
fills them from ``extended_stats`` in each ``/stats/requests`` poll (every two seconds while a test runs). The tab
shows the service's own ``/metrics`` (write amplification, delivery lag, Redis memory) beside Locust's
HdrHistogram percentiles (µs resolution). ``/fanout`` is a plain page with the same numbers and a button that
fires the celebrity spike now; both are linked from the UI's "Download Data" tab.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Response, jsonify, request, send_file
from locust.env import Environment

from bench.locust.service_client import ServiceClient, ServiceError
from bench.locust.stats import HdrStats

TAB_KEY = "fanout"
PAGE = Path(__file__).parent / "templates" / "locust_fanout.html"
METRICS_MAX_AGE_S = 1.0


class ServiceMetricsCache:
    """The service's ``/metrics``, fetched at most once a second however often the UI polls."""

    def __init__(self, client: Callable[[], ServiceClient | None]) -> None:
        self.client = client
        self.data: dict[str, Any] | None = None
        self.error: str | None = None
        self.fetched = 0.0

    def get(self) -> tuple[dict[str, Any] | None, str | None]:
        """The latest metrics (or None) and the error of the last fetch (or None)."""
        if time.monotonic() - self.fetched >= METRICS_MAX_AGE_S:
            self.fetched = time.monotonic()
            client = self.client()
            if client is None:
                self.error = "no host set"
            else:
                try:
                    self.data, self.error = client.metrics(), None
                except ServiceError as exc:
                    self.error = str(exc)
        return self.data, self.error


def _ms(summary: dict[str, Any] | None, key: str) -> str:
    if not summary or not summary.get("count"):
        return "-"
    return f"{summary[key]:.3f} ms"


def _lag_rows(service: dict[str, Any]) -> list[tuple[str, str]]:
    lag = service.get("delivery_lag")
    if lag and lag.get("count"):
        return [(f"delivery lag {p}", _ms(lag, f"{p}_ms")) for p in ("p50", "p99", "max")]
    fanout = service.get("latency", {}).get("fanout")
    # Synchronous fan-out: the post is in every timeline when acknowledged, so the lag is the request itself.
    return [(f"delivery lag {p} (sync: fan-out inside the request)", _ms(fanout, f"{p}_ms")) for p in ("p50", "p99")]


def fanout_rows(
    service: dict[str, Any] | None, error: str | None, hdr: HdrStats, spike: dict[str, Any]
) -> list[dict[str, str]]:
    """The tab's rows: metric name and value, as text."""
    rows: list[tuple[str, str]] = []
    if service:
        counters = service["counters"]
        wa = service.get("write_amplification")
        memory = service.get("redis_memory", {})
        latency = service.get("latency", {})
        rows += [
            ("strategy (service)", str(service.get("strategy"))),
            ("posts", str(counters.get("posts", 0))),
            ("timeline entries written", str(counters.get("entries_written", 0))),
            ("write amplification (entries per post)", "-" if wa is None else f"{wa:.2f}"),
            *_lag_rows(service),
            ("Redis used memory", f"{memory.get('used_memory_human', '-')} ({memory.get('used_memory', 0)} bytes)"),
            ("service read p50 / p99", f"{_ms(latency.get('read'), 'p50_ms')} / {_ms(latency.get('read'), 'p99_ms')}"),
            ("service errors 4xx / 5xx", f"{counters.get('client_errors', 0)} / {counters.get('server_errors', 0)}"),
        ]
    if error:
        rows.append(("service metrics", f"unavailable: {error}"))
    for name, summary in hdr.summary().items():
        if summary["count"]:
            rows.append(
                (
                    f"Locust HdrHistogram {name}: p50 / p99 / p99.9",
                    " / ".join(_ms(summary, k) for k in ("p50_ms", "p99_ms", "p999_ms")) + f" (n={summary['count']})",
                )
            )
    rows.append(("celebrity spike", spike.get("status", "not fired")))
    return [{"metric": m, "value": v} for m, v in rows]


def extend_web_ui(
    environment: Environment,
    hdr: HdrStats,
    client: Callable[[], ServiceClient | None],
    spike_status: Callable[[], dict[str, Any]],
    fire_spike: Callable[[int | None, int | None], dict[str, Any]],
) -> None:
    """Add the fan-out tab, the ``/fanout`` page, its JSON and spike routes, and the HDR CSV download."""
    web_ui = environment.web_ui
    if web_ui is None:
        return
    cache = ServiceMetricsCache(client)
    web_ui.template_args.update(
        extended_tabs=[{"title": "Fan-out", "key": TAB_KEY}],
        extended_tables=[
            {"key": TAB_KEY, "structure": [{"key": "metric", "title": "Metric"}, {"key": "value", "title": "Value"}]}
        ],
        extended_csv_files=[
            {"href": "./fanout/hdr.csv", "title": "Download HdrHistogram percentiles CSV (µs resolution)"},
            {"href": "./fanout", "title": "Fan-out page: live metrics and the celebrity-spike button"},
        ],
    )
    app = web_ui.app

    @app.after_request
    def add_fanout_stats(response: Response) -> Response:
        if request.path.endswith("/stats/requests") and response.is_json:
            service, error = cache.get()
            rows = fanout_rows(service, error, hdr, spike_status())
            response.set_data(
                app.json.dumps({**response.get_json(), "extended_stats": [{"key": TAB_KEY, "data": rows}]})
            )
        return response

    @app.route("/fanout")
    def fanout_page() -> Response:
        return send_file(PAGE, mimetype="text/html")

    @app.route("/fanout/metrics")
    def fanout_metrics() -> Response:
        service, error = cache.get()
        return jsonify(
            {
                "rows": fanout_rows(service, error, hdr, spike_status()),
                "service": service,
                "hdr": hdr.summary(),
                "spike": spike_status(),
            }
        )

    @app.route("/fanout/spike", methods=["POST"])
    def fanout_spike() -> Response:
        args = request.get_json(silent=True) or request.form
        try:
            accounts = int(args["accounts"]) if args.get("accounts") else None
            size = int(args["size"]) if args.get("size") else None
        except ValueError:
            return jsonify({"error": "accounts and size must be integers"}), 400  # type: ignore[return-value]
        return jsonify(fire_spike(accounts, size))

    @app.route("/fanout/hdr.csv")
    def fanout_hdr_csv() -> Response:
        return Response(
            hdr.csv_text(), mimetype="text/csv", headers={"Content-Disposition": "attachment; filename=fanout_hdr.csv"}
        )
