"""``fanout rebuild``: rebuild the strategies' derived state in Redis from Postgres, the source of truth.

For a Redis that lost its data (a restart without persistence, a failover to an empty replica) or timelines that an
interrupted tool left stale. Each strategy's timelines are replaced by what a bulk materialisation makes from Postgres
(the state `fanout graph load` builds), and the post cache is refilled.
"""

from __future__ import annotations

import time

import click

from bench.cli.options import parse_strategies, setting_options, settings_from
from targets.eventloop import run
from targets.stores.connections import Stores
from targets.stores.materialise import rebuild_timelines
from targets.stores.post_cache import PostCache
from targets.strategies.registry import timeline_owners


@click.command()
@click.option(
    "--strategy",
    "strategies",
    callback=parse_strategies,
    metavar="push,hybrid",
    help="Strategies whose timelines to rebuild [default: push and hybrid; name adaptive to rebuild its too].",
)
@setting_options("celebrity_threshold", "timeline_cap")
@click.pass_context
def rebuild(ctx: click.Context, strategies: tuple[str, ...]) -> None:
    """Rebuild timelines (and the post cache) in Redis from Postgres."""
    settings = settings_from(ctx)
    owners = timeline_owners(strategies)
    if ctx.get_parameter_source("strategies") is click.core.ParameterSource.COMMANDLINE:
        for name in strategies:
            if name not in owners:
                click.echo(f"{name}: keeps no timelines, nothing to rebuild")

    async def _rebuild() -> None:
        async with await Stores.connect(settings, create=False) as stores:
            for name, authors in owners.items():
                began = time.perf_counter()
                entries = await rebuild_timelines(stores, {name: authors})
                click.echo(f"{name}: {entries:,} timeline entries rebuilt in {time.perf_counter() - began:.1f}s")
            began = time.perf_counter()
            cached = await PostCache.of(stores).warm(stores.social)
            click.echo(f"post cache: {cached:,} posts cached in {time.perf_counter() - began:.1f}s")

    run(_rebuild())
