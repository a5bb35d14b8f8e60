"""Options declared once, on the dataclass that holds them: a default, a help text, and the bounds of its values.

The store settings, the benchmark's parameters and each scenario's options are dataclass fields made by
:func:`option`; the command line is generated from those declarations (``bench.cli.options``), so each setting has one
flag name and one help text wherever it appears, and the result file records the same names. It lives in the lowest
layer so that :class:`targets.config.Settings` can declare its fields too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Declared:
    """What the command line needs to know of one option besides its name and default."""

    help: str
    #: The flag, when it is not the field name with ``-`` for ``_``.
    flag: str | None = None
    #: The environment variable that sets it (store settings; a child process receives them through it).
    env: str | None = None
    min: float | None = None
    max: float | None = None
    #: ``min`` itself is not allowed (a rate must be above 0).
    min_open: bool = False
    choices: Sequence[str] | None = None
    #: Repeatable on the command line; the field holds a tuple.
    multiple: bool = False


def option(default: Any, help: str, **declared: Any) -> Any:
    """A dataclass field with a default and its command-line declaration (see :class:`Declared`)."""
    return dataclasses.field(default=default, metadata={"option": Declared(help, **declared)})


def declarations(cls: type) -> list[tuple[dataclasses.Field[Any], Declared]]:
    """The declared options of a dataclass, in field order."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def flag_of(field: dataclasses.Field[Any], declared: Declared) -> str:
    """The option's flag on the command line."""
    return declared.flag or "--" + field.name.replace("_", "-")
