"""Click options generated from declarations: the :class:`~targets.config.Settings` (and the Settings they make),
the benchmark's and scenarios' dataclasses (:mod:`targets.declared`), and how to read a graph file.

Every command that takes a setting spells it the way ``Settings`` declares it (flag, environment variable, help,
default), so ``--timeline-cap`` means the same thing to ``fanout bench``, ``serve``, ``worker`` and ``perf``. The
options do not reach the command's function: their values are collected in the context, and
:func:`settings_from` turns them (with the store options of the ``fanout`` group) into one ``Settings``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import click

from bench.faults import SERVER_OF, Fault, check_faults, parse_exec, parse_fault
from bench.output import DEFAULT_INTERVAL_S, OutputOptions
from bench.runner import QUICK, Plan
from bench.scenarios.base import BenchConfig
from bench.scenarios.registry import SCENARIOS
from graphs.formats import FORMATS, IGNORE_FLAG, ReadOptions
from targets.config import DATABASE_URL_VAR, REDIS_URL_VAR, Settings, declared, mask_url
from targets.declared import Declared, declarations, flag_of
from targets.errors import FanoutError
from targets.strategies.registry import DEFAULT_STRATEGIES, STRATEGIES, timeline_owners
from targets.urls import check_url

F = TypeVar("F", bound=Callable[..., Any])

#: Where the given settings are collected: ``ctx.meta`` is shared by a command and the group it runs under.
_GIVEN = "fanout.settings"
_DEFAULTS = {f.name: f.default for f in fields(Settings)}

#: The settings of the ``fanout`` group itself: where the stores are and the namespace.
STORE_SETTINGS = ("redis_url", "database_url", "replica_urls", "prefix", "schema")
#: The timeline policy beyond the strategy's name: the active window and adaptive's rule (issue 15).
POLICY_SETTINGS = ("active_window_s", "cost_ratio", "rate_source", "rate_half_life_s", "reevaluate_s")
SETTING_NAMES = frozenset(_DEFAULTS)
_SETTING_TYPES = get_type_hints(Settings)


class FiniteFloat(click.FloatRange):
    """A float option that refuses nan and infinity (which pass every range check) in one line."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


_NUMBERS = {int: click.IntRange, float: FiniteFloat}
_URLS = ("redis_url", "database_url", "replica_urls", "redis_cluster")


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


def start_cluster_option(what: str) -> Callable[[F], F]:
    """``--redis-cluster N`` of a perf command: start a private Redis Cluster of N primaries (and a private Redis)
    for the run and compare ``what`` on both; the number ``fanout up --redis-cluster N`` takes too. Its value is
    the command's ``primaries`` argument."""
    from devservers.redis_cluster import MAX_PRIMARIES

    return click.option(
        "--redis-cluster",
        "primaries",
        default=0,
        type=click.IntRange(0, MAX_PRIMARIES),
        help=f"Instead: start a private Redis Cluster of N primaries and a private Redis, and compare {what} on both "
        "in one run.",
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
    from devservers.manager import resolve_replica_urls, resolve_urls, started_cluster

    given = given_settings(ctx)
    given.update({k: v for k, v in overrides.items() if v is not None})
    redis_url, database_url = resolve_urls(given.get("redis_url"), given.get("database_url"))
    # A URL the clients would misread (a raw / or # in a password) is one line without the secret, before anything.
    check_url(redis_url, "redis", REDIS_URL_VAR)
    check_url(database_url, "postgres", DATABASE_URL_VAR)
    replica_urls = resolve_replica_urls(given.get("replica_urls"), database_url)
    for url in replica_urls.split(",") if replica_urls else ():
        check_url(url, "postgres", declared("replica_urls").env)
    given.update(redis_url=redis_url, database_url=database_url, replica_urls=replica_urls)
    if given.get("redis_cluster") is None:
        given["redis_cluster"] = started_cluster(redis_url) or None
    try:
        return Settings.from_env(**given)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


# -- dataclass declarations (targets.declared) ----------------------------------------------------------------------
def _click_type(kind: Any, spec: Declared) -> Any:
    if spec.choices is not None:
        return click.Choice(list(spec.choices))
    base = int if kind in (int, tuple[int, ...]) else float if kind is float else str
    if base in _NUMBERS:
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


# -- the options of fanout bench (fanout sweep takes them too) --------------------------------------------------------
POSITIVE = click.FloatRange(min=0, min_open=True)


def parse_strategies(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    """``--strategy``'s comma-separated names (push, pull and hybrid when not given), checked, in order, once each."""
    names = tuple(n.strip() for n in (value or ",".join(DEFAULT_STRATEGIES)).split(",") if n.strip())
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown strategy {', '.join(unknown) or '(none)'}: choose from {', '.join(STRATEGIES)} (comma-separated)"
        )
    return tuple(dict.fromkeys(names))


def _faults(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[Fault, ...]:
    try:
        return tuple(parse_fault(text) for text in value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _fault_exec(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    try:
        return dict(parse_exec(text) for text in value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def bench_options(command: F) -> F:
    """Every option of ``fanout bench``, in the order ``--help`` lists them."""
    for decorate in reversed(_BENCH_OPTIONS):
        command = decorate(command)
    return command


_BENCH_OPTIONS: list[Callable[[Any], Any]] = [
    click.option(
        "--strategy",
        "strategies",
        callback=parse_strategies,
        metavar="push,pull,hybrid",
        help="Strategies to run, in order, of push, pull, hybrid and adaptive [default: push,pull,hybrid].",
    ),
    click.option(
        "--scenario",
        type=click.Choice(list(SCENARIOS)),
        default="steady",
        show_default=True,
        help="Steady load, or a celebrity spike during it.",
    ),
    click_options(BenchConfig, *(s.Options for s in SCENARIOS.values()), skip=("scenario",)),
    click.option(
        "--graph",
        "graph_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Edge list to load first (read as the format options below say).",
    ),
    format_options,
    click.option(
        "--users",
        type=click.IntRange(min=100),
        help="Generate and load a graph of N users first (Barabási–Albert plus one celebrity).",
    ),
    click.option(
        "--follows",
        type=click.IntRange(min=1),
        default=5,
        show_default=True,
        help="With --users: accounts each new user follows (Barabási–Albert m).",
    ),
    click.option(
        "--reciprocity",
        type=click.FloatRange(0, 1),
        default=0.1,
        show_default=True,
        help="With --users: fraction of follows followed back (gives popular accounts many followees).",
    ),
    click.option(
        "--posts-per-user",
        type=click.IntRange(min=0),
        default=10,
        show_default=True,
        help="Post history seeded when loading a graph.",
    ),
    setting_options(
        "celebrity_threshold", "fanout_mode", "timeline_cap", "fanout_batch", "read_from", *POLICY_SETTINGS
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=1,
        show_default=True,
        help="Fan-out worker processes (async); 0 starts none, for workers of your own (`fanout worker`).",
    ),
    setting_options("worker_inflight"),
    click.option(
        "--repeat",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Rounds: each runs every strategy once, in a rotated order; figures become medians with 95% intervals.",
    ),
    click.option(
        "--fault",
        "faults",
        multiple=True,
        callback=_faults,
        metavar="KIND@Ns",
        help="Inject a fault N seconds into each strategy's load (repeatable): redis-restart or pg-restart (crash "
        "and restart a private server `fanout up` started), redis-pause=DURATION@Ns (SIGSTOP it that long), "
        "redis-primary-kill (SIGKILL a private Redis Cluster's primary: its replica takes over) or kill-worker "
        "(SIGKILL a fan-out worker); @every-Ns repeats it.",
    ),
    click.option(
        "--fault-exec",
        "fault_exec",
        multiple=True,
        callback=_fault_exec,
        metavar="KIND=COMMAND",
        help="The command that carries out a store fault on a server fanout did not start (repeatable), e.g. "
        "redis-restart='systemctl restart redis-server' (keep secrets in the environment, not here).",
    ),
    click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Result file [default: results/<time>-<scenario>.json].",
    ),
    click.option(
        "--quick",
        is_flag=True,
        help="A complete spike run on a generated 20,000-user graph with a celebrity (under 3 minutes).",
    ),
    click.option(
        "--calibrate",
        "calibrate_only",
        is_flag=True,
        help="Only measure the driver's own overhead against a no-op target.",
    ),
    output_options,
]


def plan_from(ctx: click.Context, options: dict[str, Any]) -> Plan:
    """The plan of a ``fanout bench`` invocation (also of a sweep, which takes the same options); usage errors raise."""
    quick_settings: dict[str, Any] = {}
    if options.pop("quick"):
        for name, value in QUICK.items():
            if ctx.get_parameter_source(name) in (click.core.ParameterSource.DEFAULT, None):
                (quick_settings if name in SETTING_NAMES else options)[name] = value
    if options["graph_file"] and options["users"]:
        raise click.UsageError("pass either --graph FILE or --users N, not both")
    graph_read = read_options(options)
    if graph_read != ReadOptions() and not options["graph_file"]:
        raise click.UsageError("--format, --undirected and --ignore-extra-columns describe a --graph FILE: pass one")
    settings = settings_from(ctx, **quick_settings)
    output = output_from(options)
    scenario = SCENARIOS[options["scenario"]]
    try:
        config = from_options(BenchConfig, options, options=from_options(scenario.Options, options))
        scenario.check(config)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    strategies = options["strategies"]
    if config.target and ctx.get_parameter_source("strategies") in (click.core.ParameterSource.DEFAULT, None):
        strategies = ()  # the one the service serves
    faults, fault_exec = options["faults"], options["fault_exec"]
    _check_faults(faults, config, settings, strategies, options["workers"], fault_exec)
    plan = Plan(
        settings,
        options["workers"],
        config,
        strategies,
        options["graph_file"],
        options["users"],
        options["follows"],
        options["reciprocity"],
        options["posts_per_user"],
        options["out"],
        graph_read=graph_read,
        output=output,
        repeat=options["repeat"],
        faults=faults,
        fault_exec=fault_exec,
    )
    return plan


def _check_faults(
    faults: tuple[Fault, ...],
    config: BenchConfig,
    settings: Settings,
    strategies: tuple[str, ...],
    workers: int,
    fault_exec: dict[str, str],
) -> None:
    """Faults that cannot be carried out fail here, before anything runs: usage errors, or one line naming the fix."""
    from devservers.manager import CLUSTER_KEY, private_server

    if not faults:
        return
    if config.driver_processes > 1:
        raise click.UsageError(
            "--fault times its report from the driver's own records: run it with --driver-processes 1"
        )
    try:
        check_faults(faults, config.duration)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    kinds = {f.kind for f in faults}
    if "kill-worker" in kinds and (
        config.target or settings.fanout_mode != "async" or workers < 1 or not timeline_owners(strategies)
    ):
        raise click.UsageError(
            "--fault kill-worker needs the benchmark's own fan-out workers: a push or hybrid strategy with --fanout "
            "async and --workers 1 or more, without --target"
        )
    for kind in sorted(kinds & set(SERVER_OF) - set(fault_exec)):
        key = SERVER_OF[kind]
        url = settings.database_url if key == "postgres" else settings.redis_url
        if key == CLUSTER_KEY and private_server(key, url) is None:
            raise FanoutError(
                f"--fault {kind} kills a primary of a Redis Cluster `fanout up --redis-cluster N --replicas 1` "
                f"started from this directory, and {mask_url(url)} is not one: run that first, or name the command "
                f"that does it with --fault-exec {kind}=COMMAND"
            )
        if key == "redis" and settings.redis_cluster:
            raise FanoutError(
                f"--fault {kind} acts on one Redis server, and {mask_url(url)} is a Redis Cluster: inject "
                "--fault redis-primary-kill@Ns instead"
            )
        if private_server(key, url) is None:
            variable = DATABASE_URL_VAR if key == "postgres" else REDIS_URL_VAR
            raise FanoutError(
                f"--fault {kind} crashes only a server `fanout up` started from this directory, and "
                f"{mask_url(url)} is not one: set {variable} to a free loopback port and run `fanout up` first, or "
                f"name the command that does it with --fault-exec {kind}=COMMAND"
            )
