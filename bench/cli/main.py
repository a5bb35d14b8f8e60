"""The ``fanout`` command line.

Subcommands live in :mod:`bench.commands` and are imported only when run, so ``fanout --help`` stays fast and each
area owns its own module. Store options are shared: ``--redis-url`` / ``--database-url`` (or ``FANOUT_REDIS_URL`` /
``FANOUT_DATABASE_URL``), ``--prefix`` and ``--schema`` for the namespace.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from targets.config import DATABASE_URL_VAR, PREFIX_VAR, REDIS_URL_VAR, SCHEMA_VAR, Settings
from targets.errors import FanoutError

#: command name -> "module:attribute" of its click command.
COMMANDS: dict[str, str] = {
    "up": "bench.cli.servers:up",
    "down": "bench.cli.servers:down",
    "status": "bench.cli.servers:status",
    "demo": "bench.cli.demo:demo",
    "graph": "bench.cli.graph:graph",
    "worker": "bench.cli.worker:worker",
    "drain": "bench.cli.worker:drain",
    "bench": "bench.cli.bench:bench",
    "report": "bench.cli.report:report",
    "sweep": "bench.cli.sweep:sweep",
    "serve": "bench.cli.serve:serve",
    "locust": "bench.cli.locust:locust",
    "perf": "bench.cli.perf:perf",
    "reset": "bench.cli.demo:reset",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use, and whose expected errors print as one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._module_exists(name))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        return getattr(module, attr)

    @staticmethod
    def _module_exists(name: str) -> bool:
        return importlib.util.find_spec(COMMANDS[name].split(":")[0]) is not None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FanoutError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--redis-url", envvar=REDIS_URL_VAR, help=f"Redis URL [env {REDIS_URL_VAR}].")
@click.option("--database-url", envvar=DATABASE_URL_VAR, help=f"PostgreSQL URL [env {DATABASE_URL_VAR}].")
@click.option("--prefix", envvar=PREFIX_VAR, help="Redis key prefix the harness owns [default fanout:].")
@click.option("--schema", envvar=SCHEMA_VAR, help="Postgres schema the harness owns [default fanout].")
@click.version_option(package_name="fanout-bench")
@click.pass_context
def main(
    ctx: click.Context, redis_url: str | None, database_url: str | None, prefix: str | None, schema: str | None
) -> None:
    """fanout-bench: push, pull and hybrid timelines on real Redis and PostgreSQL, measured."""
    ctx.obj = {"redis_url": redis_url, "database_url": database_url, "prefix": prefix, "schema": schema}


def settings_from(ctx: click.Context, **overrides: object) -> Settings:
    """The settings for this invocation: CLI options and environment, then any servers `fanout up` started."""
    from devservers.manager import resolve_urls

    given = dict(ctx.find_root().obj or {})
    given.update({k: v for k, v in overrides.items() if v is not None})
    redis_url, database_url = resolve_urls(given.get("redis_url"), given.get("database_url"))
    given.update(redis_url=redis_url, database_url=database_url)
    try:
        return Settings.from_env(**given)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


if __name__ == "__main__":  # pragma: no cover
    main()
