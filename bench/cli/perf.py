"""``fanout perf ...``: performance measurements that compare the harness with a reference tool in the same run."""

from __future__ import annotations

import importlib

import click

#: subcommand -> "module:attribute"; each area owns its own module.
PERF_COMMANDS: dict[str, str] = {
    "cost-ratio": "bench.cli.perf_cost:cost_ratio_perf",
    "graph": "bench.cli.perf_graph:graph_perf",
    "fanout": "bench.cli.perf_fanout:fanout_perf",
    "http": "bench.cli.perf_http:http_perf",
    "read": "bench.cli.perf_read:read_perf",
}


class _LazyPerf(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in PERF_COMMANDS if importlib.util.find_spec(PERF_COMMANDS[n].split(":")[0]))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = PERF_COMMANDS.get(cmd_name)
        if target is None or importlib.util.find_spec(target.split(":")[0]) is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=_LazyPerf)
def perf() -> None:
    """Performance measurements (figures go to results/*.json)."""
