"""``fanout reset``: remove the harness's namespace (Redis keys with the prefix, the Postgres schema) and nothing else.

It asks first only where someone can answer: on a terminal it prompts, and ``--yes`` skips the question; without a
terminal (scripts, CI, a pipe) it refuses unless ``--yes`` is given, in one line, exit 2. A store that does not
answer is reported in one line and the other is still cleared; the exit code is then 2.
"""

from __future__ import annotations

import sys

import click

from bench.cli.options import settings_from
from graphs.load import staging_schema
from targets.config import mask_url
from targets.errors import FanoutError
from targets.eventloop import run
from targets.stores.namespace import check_own_schema, remove_namespace


def interactive() -> bool:
    """Whether a person can answer a prompt (stdin is a terminal)."""
    return sys.stdin.isatty()


@click.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask; required when there is no terminal to ask on.")
@click.pass_context
def reset(ctx: click.Context, yes: bool) -> None:
    """Delete the harness's namespace: its Redis keys and its Postgres schema, and nothing else."""
    settings = settings_from(ctx)
    check_own_schema(settings.schema)
    what = (
        f"the Redis keys {settings.prefix}* at {mask_url(settings.redis_url)} and the schema {settings.schema} "
        f"at {mask_url(settings.database_url)}"
    )
    if not yes:
        if not interactive():
            raise FanoutError(f"fanout reset would delete {what}: pass --yes to confirm (no terminal to ask on)")
        if not click.confirm(f"Delete {what}?"):
            click.echo("nothing deleted")
            sys.exit(1)
    # The staging schema of an interrupted `fanout graph load` is the namespace's too.
    removal = run(remove_namespace(settings, extra_schemas=[staging_schema(settings.schema)]))
    for line in removal.done:
        click.echo(line)
    for line in removal.unreachable:
        click.echo(f"error: {line}", err=True)
    if removal.unreachable:
        sys.exit(2)
