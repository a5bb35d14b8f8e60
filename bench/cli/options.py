"""Click options generated from the :class:`~targets.config.Settings` declarations, and the Settings they make.

Every command that takes a setting spells it the way ``Settings`` declares it (flag, environment variable, help,
default), so ``--timeline-cap`` means the same thing to ``fanout bench``, ``serve``, ``worker`` and ``perf``. The
options do not reach the command's function: their values are collected in the context, and
:func:`settings_from` turns them (with the store options of the ``fanout`` group) into one ``Settings``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

import click

from targets.config import Settings, declared

F = TypeVar("F", bound=Callable[..., Any])

#: Where the given settings are collected: ``ctx.meta`` is shared by a command and the group it runs under.
_GIVEN = "fanout.settings"
_DEFAULTS = {f.name: f.default for f in fields(Settings)}

#: The settings of the ``fanout`` group itself: where the stores are and the namespace.
STORE_SETTINGS = ("redis_url", "database_url", "prefix", "schema")
SETTING_NAMES = frozenset(_DEFAULTS)
_URLS = ("redis_url", "database_url")


def _collect(ctx: click.Context, param: click.Parameter, value: object) -> object:
    if value is not None and param.name is not None:
        ctx.meta.setdefault(_GIVEN, {})[param.name] = value
    return value


def setting_option(name: str, default: object = None) -> Callable[[F], F]:
    """The click option of the setting ``name``; ``default`` replaces the declared one for this command only."""
    spec = declared(name)
    if spec.choices:
        kind: click.ParamType = click.Choice(spec.choices)
    elif isinstance(_DEFAULTS[name], int):
        kind = click.IntRange(min=1)
    else:
        kind = click.STRING
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
    given["redis_url"], given["database_url"] = resolve_urls(given.get("redis_url"), given.get("database_url"))
    try:
        return Settings.from_env(**given)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
