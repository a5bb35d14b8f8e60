"""``fanout locust``: run bench/locustfile.py against the HTTP service, headless or with the web UI.

Covers the common cases: the right ``-f``, the host (or a service started for the run with ``--serve``), CSV, HTML
and JSON files under results/, Locust worker processes on this machine, and a summary table at the end. Anything
after ``--`` goes to Locust unchanged (e.g. ``-- --read-ratio 0.9 --spike-at 10``).
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.child_signals import ForwardedSignals
from bench.cli.options import POLICY_SETTINGS, setting_options, settings_from
from bench.locust.run import locust_command, summarize
from bench.service_process import ServiceProcess
from targets.strategies.registry import STRATEGIES

DEFAULT_HOST = "http://127.0.0.1:8000"


def _print_summary(rows: dict[str, Any], out: str) -> None:
    table = Table(title=f"Locust run {out}")
    for column in ("request", "requests", "failures", "per s", "p50 ms (HDR)", "p99 ms (HDR)"):
        table.add_column(column, justify="left" if column == "request" else "right", no_wrap=column == "request")
    for name, r in rows.items():
        p50 = "-" if r["p50_ms"] is None else f"{r['p50_ms']:.3f}"
        p99 = "-" if r["p99_ms"] is None else f"{r['p99_ms']:.3f}"
        table.add_row(escape(name), str(r["requests"]), str(r["failures"]), f"{r['per_s']:.0f}", p50, p99)
    Console().print(table)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--host", help=f"URL of a running `fanout serve` [default {DEFAULT_HOST}].")
@click.option(
    "--serve",
    "serve_strategy",
    type=click.Choice(sorted(STRATEGIES)),
    help="Start `fanout serve --strategy S` on a free loopback port for this run (same stores and namespace).",
)
@click.option("--serve-workers", default=1, show_default=True, type=click.IntRange(min=1), help="With --serve.")
@setting_options("celebrity_threshold", *POLICY_SETTINGS)
@click.option("-u", "--users", default=20, show_default=True, type=click.IntRange(min=1), help="Locust users.")
@click.option("-r", "--spawn-rate", type=click.FloatRange(min=0, min_open=True), help="Users started per second.")
@click.option("-t", "--run-time", default="30s", show_default=True, help="Run time (headless), e.g. 20s, 5m.")
@click.option("--web", is_flag=True, help="Start the web UI on http://127.0.0.1:8089 instead of running headless.")
@click.option("--web-port", default=8089, show_default=True, type=click.IntRange(1, 65535))
@click.option("--processes", type=click.IntRange(min=1), help="Locust worker processes (a master and N workers).")
@click.option("--out", help="Prefix of the result files [default results/locust-<time>].")
@click.argument("locust_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def locust(
    ctx: click.Context,
    host: str | None,
    serve_strategy: str | None,
    serve_workers: int,
    users: int,
    spawn_rate: float | None,
    run_time: str,
    web: bool,
    web_port: int,
    processes: int | None,
    out: str | None,
    locust_args: tuple[str, ...],
) -> None:
    """Load-test the HTTP service with Locust (bench/locustfile.py); extra Locust arguments after --."""
    if host and serve_strategy:
        raise click.UsageError("--host and --serve exclude each other: test a running service or start one")
    out = out or f"results/locust-{time.strftime('%Y%m%d-%H%M%S')}"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    # SIGTERM (a supervisor, `kill`) and SIGINT (Ctrl-C) stop Locust and the service too: nothing is left running.
    with ForwardedSignals() as signals, ExitStack() as stack:
        if serve_strategy:
            log = Path(f"{out}_serve.log")
            service = ServiceProcess(settings_from(ctx), serve_strategy, workers=serve_workers, log=log)
            stack.callback(service.stop)  # before start: a signal during the start stops what was started
            try:
                service.start()
            except RuntimeError as exc:
                raise click.ClickException(str(exc)) from None
            host = service.url
            click.echo(f"started fanout serve --strategy {serve_strategy} at {host} (log {log})", err=True)
        command = locust_command(
            host or DEFAULT_HOST,
            out,
            users=users,
            spawn_rate=spawn_rate or float(users),
            run_time=run_time,
            web=web,
            web_port=web_port,
            processes=processes,
            extra=locust_args,
        )
        if web:
            click.echo(f"Locust web UI on http://127.0.0.1:{web_port} (Ctrl-C to stop)", err=True)
        code = signals.run(command)  # a signal lets Locust write its files and exit
    if not web and Path(f"{out}.json").exists():
        _print_summary(summarize(out), out)
        click.echo(f"results: {out}_stats.csv, {out}.html, {out}.json, {out}_hdr.csv, {out}_fanout.json")
    sys.exit(signals.exit_code or code)
