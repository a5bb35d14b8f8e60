"""The options that say how to read a graph file, shared by ``fanout graph stats|load`` and ``fanout bench --graph``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from graphs.formats import FORMATS, IGNORE_FLAG, ReadOptions

F = TypeVar("F", bound=Callable[..., Any])


def format_options(command: F) -> F:
    """Add ``--format``, ``--undirected`` and ``--ignore-extra-columns``; the command receives ``read``."""
    decorators = [
        click.option(
            "--format",
            "graph_format",
            type=click.Choice(FORMATS),
            default="auto",
            show_default=True,
            help="Graph file format; auto: by suffix (.mtx, .csv, .tsv, KONECT's out.NAME; under any .gz), "
            "else by the first lines.",
        ),
        click.option(
            "--undirected",
            is_flag=True,
            help="Each line is a friendship: follow it both ways (a symmetric .mtx or `% sym` KONECT file implies it).",
        ),
        click.option(
            IGNORE_FLAG,
            "ignore_extra_columns",
            is_flag=True,
            help="Read the first two columns of each line and ignore the rest (weights, timestamps).",
        ),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def read_options(options: dict[str, Any]) -> ReadOptions:
    """The :class:`ReadOptions` the format options give; removes them from ``options`` (a command's kwargs)."""
    return ReadOptions(
        format=options.pop("graph_format"),
        undirected=options.pop("undirected"),
        ignore_extra_columns=options.pop("ignore_extra_columns"),
    )
