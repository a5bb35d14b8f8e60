"""Click options generated from declared dataclass fields (:mod:`targets.declared`): one flag, one help, one range."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, get_type_hints

import click

from targets.declared import Declared, declarations, flag_of

F = TypeVar("F", bound=Callable[..., Any])
_NUMBERS = {int: click.IntRange, float: click.FloatRange}


def _click_type(kind: Any, declared: Declared) -> Any:
    if declared.choices is not None:
        return click.Choice(list(declared.choices))
    base = int if kind in (int, tuple[int, ...]) else float if kind is float else str
    if base in _NUMBERS and (declared.min is not None or declared.max is not None):
        return _NUMBERS[base](declared.min, declared.max, min_open=declared.min_open)
    return base


def click_options(*classes: type, skip: Iterable[str] = ()) -> Callable[[F], F]:
    """Decorate a command with one option per declared field of these dataclasses (parameter name = field name)."""
    skipped = set(skip)

    def decorate(command: F) -> F:
        for cls in reversed(classes):
            hints = get_type_hints(cls)
            for field, declared in reversed(declarations(cls)):
                if field.name in skipped:
                    continue
                default = field.default if field.default is not dataclasses.MISSING else None
                command = click.option(
                    flag_of(field, declared),
                    field.name,
                    type=_click_type(hints[field.name], declared),
                    default=default,
                    multiple=declared.multiple,
                    show_default=not declared.multiple,
                    help=declared.help,
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
