"""The ``fanout`` command line.

Subcommands live in the modules of :mod:`bench.cli` and are imported only when run, so ``fanout --help`` stays fast
and each area owns its own module. The store options are the group's: ``--redis-url`` / ``--database-url`` (or
``FANOUT_REDIS_URL`` / ``FANOUT_DATABASE_URL``), ``--prefix`` and ``--schema`` for the namespace; like every setting,
they are generated from the ``Settings`` declarations (:mod:`bench.cli.options`).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from bench.cli.options import STORE_SETTINGS, setting_options
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
    "reset": "bench.cli.reset:reset",
    "rebuild": "bench.cli.rebuild:rebuild",
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
@setting_options(*STORE_SETTINGS)
@click.version_option(package_name="fanout-bench")
def main() -> None:
    """fanout-bench: push, pull and hybrid timelines on real Redis and PostgreSQL, measured."""


if __name__ == "__main__":  # pragma: no cover
    main()
