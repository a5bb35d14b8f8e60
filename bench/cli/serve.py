"""``fanout serve``: run the HTTP timeline service (:mod:`targets.service.app`) on uvicorn with uvloop and httptools."""

from __future__ import annotations

import os
import socket

import click

from bench.cli.options import POLICY_SETTINGS, setting_options, settings_from
from targets.config import Settings
from targets.errors import FanoutError
from targets.eventloop import run
from targets.service.app import SERVICE_CONFIG_VAR, ServiceConfig
from targets.stores.connections import Stores
from targets.strategies.registry import STRATEGIES, keeps_timelines


@click.command()
@click.option("--strategy", type=click.Choice(sorted(STRATEGIES)), default="push", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback unless told).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="uvicorn worker processes.")
@setting_options(
    "celebrity_threshold",
    "timeline_cap",
    "fanout_mode",
    "fanout_batch",
    "worker_inflight",
    "fanout_claim_idle_ms",
    "fanout_report_ttl_s",
    "pool_size",
    "read_from",
    *POLICY_SETTINGS,
)
@click.option(
    "--worker/--no-worker",
    default=True,
    show_default=True,
    help="With async fan-out, run a fan-out worker in each service process (--no-worker: run `fanout worker`).",
)
@click.option("--log-level", default="warning", show_default=True, type=click.Choice(["debug", "info", "warning"]))
@click.pass_context
def serve(
    ctx: click.Context,
    strategy: str,
    host: str,
    port: int,
    workers: int,
    worker: bool,
    log_level: str,
) -> None:
    """Serve home timelines of one strategy over HTTP (API description at /openapi.json)."""
    import uvicorn

    settings = settings_from(ctx)
    config = ServiceConfig(settings, strategy, worker)
    _check_port(host, port)
    users = run(_count_users(settings))  # fails here, as one line, when a store does not answer
    if users == 0:
        click.echo(
            f"warning: no users in schema {settings.schema}: load a graph first (`fanout graph load FILE`)", err=True
        )
    # Worker processes rebuild the app from the environment, so every process serves the same config.
    os.environ[SERVICE_CONFIG_VAR] = config.to_env()
    delivery = f"{settings.fanout_mode} fan-out" if keeps_timelines(strategy) else "no fan-out"
    if keeps_timelines(strategy) and settings.fanout_mode == "async":
        delivery += ", in-process worker" if worker else ", run `fanout worker` to deliver"
    click.echo(
        f"serving {strategy} ({delivery}) on http://{host}:{port} ({workers} process{'es' * (workers > 1)}, "
        f"{users} users, namespace {settings.prefix} / {settings.schema}); API at /openapi.json",
        err=True,
    )
    click.echo(f"settings: {settings.describe()}", err=True)
    uvicorn.run(
        "targets.service.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
    )


def _check_port(host: str, port: int) -> None:
    """One clear line when the address is taken or unusable (uvicorn would log a traceback-like block)."""
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise FanoutError(f"cannot listen on {host}:{port} ({exc.strerror}): pass another --port or --host") from None


async def _count_users(settings: Settings) -> int:
    async with await Stores.connect(settings) as stores:
        return await stores.social.user_count()
