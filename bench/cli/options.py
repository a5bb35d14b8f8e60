"""Click options generated from declarations: the :class:`~targets.config.Settings` (and the Settings they make),
the benchmark's and scenarios' dataclasses (:mod:`targets.declared`), and how to read a graph file.

Every command that takes a setting spells it the way ``Settings`` declares it (flag, environment variable, help,
default), so ``--timeline-cap`` means the same thing to ``fanout bench``, ``serve``, ``worker`` and ``perf``. The
options do not reach the command's function: their values are collected in the context, and
:func:`settings_from` turns them (with the store options of the ``fanout`` group) into one ``Settings``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import click

from bench.output import DEFAULT_INTERVAL_S, OutputOptions
from graphs.formats import FORMATS, IGNORE_FLAG, ReadOptions
from targets.config import DATABASE_URL_VAR, REDIS_URL_VAR, Settings, declared
from targets.declared import Declared, declarations, flag_of
from targets.urls import check_url

F = TypeVar("F", bound=Callable[..., Any])

#: Where the given settings are collected: ``ctx.meta`` is shared by a command and the group it runs under.
_GIVEN = "fanout.settings"
_DEFAULTS = {f.name: f.default for f in fields(Settings)}

#: The settings of the ``fanout`` group itself: where the stores are and the namespace.
STORE_SETTINGS = ("redis_url", "database_url", "prefix", "schema")
SETTING_NAMES = frozenset(_DEFAULTS)
_SETTING_TYPES = get_type_hints(Settings)
_NUMBERS = {int: click.IntRange, float: click.FloatRange}
_URLS = ("redis_url", "database_url")


def _collect(ctx: click.Context, param: click.Parameter, value: object) -> object:
    if value is not None and param.name is not None:
        ctx.meta.setdefault(_GIVEN, {})[param.name] = value
    return value


def setting_option(name: str, default: object = None) -> Callable[[F], F]:
    """The click option of the setting ``name``; ``default`` replaces the declared one for this command only."""
    spec = declared(name)
    kind = _click_type(_SETTING_TYPES[name], spec)
    value = _DEFAULTS[name] if default is None else default
    shown: bool | str = True
    if name in _URLS:  # no default here: settings_from resolves it (devservers.manager.resolve_urls)
        value, shown = None, f"the server `fanout up` started, else {_DEFAULTS[name]}"
    return click.option(
        spec.flag,
        name,
        type=kind,
        default=value,
        envvar=spec.env,
        show_envvar=True,
        show_default=shown,
        help=spec.help,
        expose_value=False,
        callback=_collect,
    )


def setting_options(*names: str, **defaults: object) -> Callable[[F], F]:
    """The click options of the settings ``names``, in that order (``defaults``: per-command defaults by name)."""
    unknown = set(defaults) - set(names)
    if unknown:
        raise ValueError(f"defaults for settings that are not options here: {', '.join(sorted(unknown))}")

    def decorate(command: F) -> F:
        for name in reversed(names):
            command = setting_option(name, defaults.get(name))(command)
        return command

    return decorate


def given_settings(ctx: click.Context) -> dict[str, Any]:
    """The settings this invocation's options hold (from the command line, the environment or the option's
    default), by field name; the store URLs only when given."""
    return dict(ctx.meta.get(_GIVEN, {}))


def settings_from(ctx: click.Context, **overrides: object) -> Settings:
    """The settings for this invocation: ``overrides`` (when not None), then the options (command line, environment,
    a command's own default), then for the URLs the servers `fanout up` started, then the declared defaults."""
    from devservers.manager import resolve_urls

    given = given_settings(ctx)
    given.update({k: v for k, v in overrides.items() if v is not None})
    redis_url, database_url = resolve_urls(given.get("redis_url"), given.get("database_url"))
    # A URL the clients would misread (a raw / or # in a password) is one line without the secret, before anything.
    check_url(redis_url, "redis", REDIS_URL_VAR)
    check_url(database_url, "postgres", DATABASE_URL_VAR)
    given.update(redis_url=redis_url, database_url=database_url)
    try:
        return Settings.from_env(**given)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


# -- dataclass declarations (targets.declared) ----------------------------------------------------------------------
def _click_type(kind: Any, spec: Declared) -> Any:
    if spec.choices is not None:
        return click.Choice(list(spec.choices))
    base = int if kind in (int, tuple[int, ...]) else float if kind is float else str
    if base in _NUMBERS and (spec.min is not None or spec.max is not None):
        return _NUMBERS[base](spec.min, spec.max, min_open=spec.min_open)
    return base


def click_options(*classes: type, skip: Iterable[str] = ()) -> Callable[[F], F]:
    """Decorate a command with one option per declared field of these dataclasses (parameter name = field name)."""
    skipped = set(skip)

    def decorate(command: F) -> F:
        for cls in reversed(classes):
            hints = get_type_hints(cls)
            for field, spec in reversed(declarations(cls)):
                if field.name in skipped:
                    continue
                default = field.default if field.default is not dataclasses.MISSING else None
                command = click.option(
                    flag_of(field, spec),
                    field.name,
                    type=_click_type(hints[field.name], spec),
                    default=default,
                    multiple=spec.multiple,
                    show_default=not spec.multiple,
                    help=spec.help,
                )(command)
        return command

    return decorate


def from_options(cls: type, parsed: dict[str, Any], /, **extra: Any) -> Any:
    """An instance of ``cls`` from a command's parsed options (its declared fields; ``extra`` for the rest)."""
    values = {f.name: parsed[f.name] for f, _ in declarations(cls) if f.name in parsed}
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return cls(**values, **extra)


# -- reading a graph file (fanout graph stats|load, fanout bench --graph) ---------------------------------------------
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


# -- what fanout bench prints and writes besides its table (bench.output) ---------------------------------------------
def output_options(command: F) -> F:
    """Add ``--interval``, ``--latency``, ``--hdr-log``, ``--csv`` and ``--worker-log``; see :func:`output_from`."""
    decorators = [
        click.option(
            "--interval",
            type=click.FloatRange(min=0, min_open=True),
            default=DEFAULT_INTERVAL_S,
            show_default=True,
            help="Seconds between status lines when the output is not a terminal (piped or logged).",
        ),
        click.option(
            "--latency", is_flag=True, help="Print the latency distribution per strategy and operation (as wrk2)."
        ),
        click.option(
            "--hdr-log",
            type=click.Path(file_okay=False, path_type=Path),
            help="Write HdrHistogram interval logs (.hlog) per strategy and operation into this directory.",
        ),
        click.option(
            "--csv",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write the table to this CSV file, and the per-second series beside it (NAME.series.csv).",
        ),
        click.option(
            "--worker-log",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write the fan-out workers' log to this file [default: shown above the live display].",
        ),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def output_from(options: dict[str, Any]) -> OutputOptions:
    """The :class:`bench.output.OutputOptions` the output options give; removes them from ``options``."""
    return OutputOptions(**{f.name: options.pop(f.name) for f in fields(OutputOptions)})
