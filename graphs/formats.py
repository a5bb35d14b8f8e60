"""The edge-list formats a graph file may come in, how one is recognised, and what a valid line of each looks like.

* ``snap``: ``follower followee`` separated by spaces or tabs (SNAP's Twitter data, DeathStarBench's ``.edges``).
* ``tsv``: the same, named for tab-separated files (tabs are whitespace).
* ``csv``: ``follower,followee``.
* ``mtx``: Matrix Market, ``%%MatrixMarket matrix coordinate pattern|real|integer general|symmetric``, ``%``
  comments, a size line ``rows columns entries``, then ``row column [value]`` entries; the value is ignored and
  ``symmetric`` means every edge both ways.
* ``konect``: KONECT's ``out.*`` files, whitespace-separated, whose first comment says ``% sym`` (every edge both
  ways) or ``% asym``; weight and timestamp columns need ``--ignore-extra-columns``.

Ids are kept as written: Matrix Market's and KONECT's 1-based indices become users 1..N, as the generator numbers
users, and a 0-based SNAP file keeps its user 0. Every format takes ``#`` and ``%`` comments (Matrix Market and KONECT
only ``%``). ``auto`` picks the format by suffix (under any ``.gz``), else by the first lines.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from targets.errors import FanoutError

FORMATS = ("auto", "snap", "csv", "tsv", "mtx", "konect")
MAX_ID = (1 << 63) - 1
#: Suffixes (before any .gz) that name a format; other names are recognised by their first lines.
SUFFIXES = {".mtx": "mtx", ".csv": "csv", ".tsv": "tsv"}
IGNORE_FLAG = "--ignore-extra-columns"

_MTX_HEADER = re.compile(rb"%%matrixmarket\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", re.IGNORECASE)
_KONECT_HEADER = re.compile(rb"%\s*(sym|asym|bip)\b", re.IGNORECASE)


class MalformedEdgeList(FanoutError, ValueError):
    """A line of an edge list does not fit its format; names the file, the line number and the line."""

    def __init__(self, path: str | os.PathLike[str], line_number: int, line: str, reason: str, hint: str = "") -> None:
        self.path, self.line_number, self.line = str(path), line_number, line
        shown = line if len(line) <= 80 else line[:77] + "..."
        text = f"{path}, line {line_number}: {reason}"
        if line:
            text += f": {shown!r}"
        super().__init__(f"{text}; {hint or expected(Layout('snap'))}")


@dataclass(frozen=True)
class ReadOptions:
    """How to read a graph file: its format (or ``auto``), and what the caller says about its lines."""

    format: str = "auto"
    #: follow every edge both ways (implied by a symmetric Matrix Market or a ``% sym`` KONECT file)
    undirected: bool = False
    #: read the first two columns of each line and ignore any more (weights, timestamps)
    ignore_extra_columns: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise FanoutError(f"unknown graph format {self.format!r}: choose one of {', '.join(FORMATS)}")


@dataclass(frozen=True)
class Layout:
    """What the lines of one file look like, decided from the options and the file's first lines."""

    format: str
    #: field separator (None: any whitespace)
    delimiter: str | None = None
    comments: tuple[str, ...] = ("#", "%")
    #: numpy types of the columns after the two ids that the header declares (Matrix Market values)
    values: tuple[str, ...] = ()
    ignore_extra: bool = False
    first_id: int = 0
    last_id: int = MAX_ID
    undirected: bool = False
    #: entries a Matrix Market size line declares, and that line's number
    entries: int | None = None
    size_line: int = 0
    #: lines and bytes before the first edge (a Matrix Market header and size line)
    skip_lines: int = 0
    skip_bytes: int = 0

    def describe(self) -> str:
        """The format as a table shows it, e.g. ``mtx, every edge both ways``."""
        return self.format + (", every edge both ways" if self.undirected else "")


def format_by_suffix(path: str | os.PathLike[str]) -> str | None:
    """The format a file's name gives (``.mtx``, ``.csv``, ``.tsv``, KONECT's ``out.NAME``), or None."""
    name = os.path.basename(str(path)).lower().removesuffix(".gz")
    if name.startswith("out."):
        return "konect"
    return SUFFIXES.get(os.path.splitext(name)[1])


def _lines(head: bytes) -> list[bytes]:
    """The complete lines of ``head`` (a final line without its newline is left out)."""
    return head.split(b"\n")[:-1]


def _is_comment(line: bytes, comments: tuple[str, ...]) -> bool:
    text = line.strip()
    return not text or any(text.startswith(c.encode()) for c in comments)


def format_by_header(head: bytes, at_eof: bool) -> str | None:
    """The format the first lines show, or None when ``head`` is too short to tell (and more of the file follows)."""
    lines = _lines(head + b"\n" if at_eof else head)
    if not lines:
        return None if not at_eof else "snap"
    if lines[0].lower().startswith(b"%%matrixmarket"):
        return "mtx"
    if _KONECT_HEADER.match(lines[0]):
        return "konect"
    for line in lines:
        if not _is_comment(line, ("#", "%")):
            return "csv" if b"," in line else "snap"
    return "snap" if at_eof else None


def layout_of(path: str | os.PathLike[str], head: bytes, options: ReadOptions, at_eof: bool) -> Layout | None:
    """The file's layout from its first bytes, or None when more of the file is needed to decide.

    Raises :class:`MalformedEdgeList` at a bad Matrix Market header or size line, or a bipartite KONECT file.
    """
    fmt = options.format if options.format != "auto" else format_by_suffix(path) or format_by_header(head, at_eof)
    if fmt is None:
        return None
    base = {"ignore_extra": options.ignore_extra_columns, "undirected": options.undirected}
    if fmt == "csv":
        return Layout("csv", delimiter=",", **base)
    if fmt in ("snap", "tsv"):
        return Layout(fmt, **base)
    if fmt == "konect":
        first = _lines(head + b"\n" if at_eof else head)[:1]
        if not first and not at_eof:
            return None
        kind = _KONECT_HEADER.match(first[0]) if first else None
        if kind and kind.group(1).lower() == b"bip":
            raise MalformedEdgeList(
                path,
                1,
                first[0].decode(errors="replace"),
                "a bipartite KONECT network has two kinds of vertex",
                "a follower graph has one kind: use a unipartite (sym or asym) network",
            )
        sym = bool(kind and kind.group(1).lower() == b"sym")
        return Layout("konect", comments=("%",), **{**base, "undirected": options.undirected or sym})
    return _mtx_layout(path, head, options, at_eof)


_MTX_EXPECTED = (
    "a Matrix Market graph starts with `%%MatrixMarket matrix coordinate pattern|real|integer general|symmetric`"
)


def _mtx_layout(path: str | os.PathLike[str], head: bytes, options: ReadOptions, at_eof: bool) -> Layout | None:
    """Parse a Matrix Market header, its comments and its size line (all must be in ``head`` unless at EOF)."""
    lines = _lines(head + b"\n" if at_eof and not head.endswith(b"\n") else head)
    if not lines:
        return None if not at_eof else _mtx_fail(path, 1, b"", "the file is empty")
    header = _MTX_HEADER.match(lines[0].rstrip(b"\r"))
    if not header:
        _mtx_fail(path, 1, lines[0], "not a Matrix Market header")
    obj, fmt, field, symmetry = (g.decode().lower() for g in header.groups())  # type: ignore[union-attr]
    if obj != "matrix" or fmt != "coordinate":
        _mtx_fail(path, 1, lines[0], f"a {obj} {fmt} file is not a list of edges (only `matrix coordinate` is)")
    if field not in ("pattern", "real", "integer"):
        _mtx_fail(path, 1, lines[0], f"{field!r} values are not supported (pattern, real or integer)")
    if symmetry not in ("general", "symmetric"):
        _mtx_fail(path, 1, lines[0], f"{symmetry!r} matrices are not supported (general or symmetric)")
    offset = len(lines[0]) + 1
    for number, line in enumerate(lines[1:], start=2):
        offset += len(line) + 1
        if _is_comment(line, ("%",)):
            continue
        fields = line.split()
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            _mtx_fail(path, number, line, "the size line must be `rows columns entries` (three integers)")
        rows, columns, entries = (int(f) for f in fields)
        if rows != columns:
            _mtx_fail(path, number, line, f"a {rows}x{columns} matrix is not a graph (rows and columns are the users)")
        return Layout(
            "mtx",
            comments=("%",),
            values=() if field == "pattern" else ("f8" if field == "real" else "i8",),
            ignore_extra=options.ignore_extra_columns,
            first_id=1,
            last_id=rows,
            undirected=options.undirected or symmetry == "symmetric",
            entries=entries,
            size_line=number,
            skip_lines=number,
            skip_bytes=offset,
        )
    if at_eof:
        _mtx_fail(path, len(lines), b"", "no size line (`rows columns entries`) after the header")
    return None


def _mtx_fail(path: str | os.PathLike[str], number: int, line: bytes, reason: str) -> None:
    raise MalformedEdgeList(path, number, line.decode(errors="replace").rstrip("\r"), reason, _MTX_EXPECTED)


def expected(layout: Layout) -> str:
    """What a valid line of ``layout`` looks like, for error messages."""
    comments = " or ".join(layout.comments)
    if layout.format == "mtx":
        value = " value" if layout.values else ""
        return f"each entry must be `row column{value}` (indices 1 to {layout.last_id}) or a % comment"
    pair = "follower,followee" if layout.delimiter == "," else "follower followee"
    extra = ", then any columns to ignore" if layout.ignore_extra else ""
    return f"each line must be `{pair}` (two non-negative integer ids{extra}) or a {comments} comment"


def line_problem(raw: bytes, layout: Layout) -> tuple[str, str] | None:
    """Why one line does not fit ``layout`` and what would fix it, or None when it fits (an edge, a comment, blank)."""
    text = raw
    for mark in layout.comments:
        text = text.split(mark.encode(), 1)[0]
    text = text.strip()
    if not text:
        return None
    hint = expected(layout)
    fields = [f.strip() for f in text.split(b",")] if layout.delimiter == "," else text.split()
    wanted = 2 + len(layout.values)
    if len(fields) < 2 or (len(fields) != wanted and not layout.ignore_extra):
        what = f"{wanted} columns" if layout.values else "2 ids"
        found = f"found {len(fields)} field{'s' if len(fields) != 1 else ''}"
        if len(fields) > wanted:
            hint = f"pass {IGNORE_FLAG} to read only the first two columns and ignore the rest (weights, timestamps)"
        return f"expected {what}, {found}", hint
    for field in fields[:2]:
        if not field.isdigit():
            return f"{field.decode(errors='replace')!r} is not a non-negative integer id", hint
        value = int(field)
        if value > MAX_ID:
            return f"id {field.decode()} does not fit in 64 bits", hint
        if not layout.first_id <= value <= layout.last_id:
            return f"index {value} is outside 1..{layout.last_id} (Matrix Market indices are 1-based)", hint
    for field, kind in zip(fields[2:], layout.values, strict=False):
        try:
            int(field) if kind == "i8" else float(field)
        except ValueError:
            return f"{field.decode(errors='replace')!r} is not {'an integer' if kind == 'i8' else 'a number'}", hint
    return None
