"""SNAP-format edge lists: one ``follower followee`` pair per line, ``#`` comments, gzip when the name ends in ``.gz``.

This is the format of SNAP's Twitter data (``twitter_combined.txt``), so a real graph and a generated one load the
same way. Reading streams the file in blocks and parses each block with numpy's C parser, so memory stays flat
however large the file is; a block that does not parse is re-read line by line to name the offending line.
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from targets.errors import FanoutError

#: Bytes read per block; a block holds roughly this / 15 edges.
BLOCK_BYTES = 8 << 20
#: Rows formatted per write when writing a file.
WRITE_ROWS = 500_000
MAX_ID = (1 << 63) - 1


class MalformedEdgeList(FanoutError, ValueError):
    """A line of an edge list is not ``follower followee`` (two non-negative integer ids)."""

    def __init__(self, path: str | os.PathLike[str], line_number: int, line: str, reason: str) -> None:
        self.path, self.line_number, self.line = str(path), line_number, line
        shown = line if len(line) <= 80 else line[:77] + "..."
        super().__init__(
            f"{path}, line {line_number}: {reason}: {shown!r}; each line must be `follower followee` "
            "(two non-negative integer ids) or a # comment"
        )


@dataclass(frozen=True, slots=True)
class EdgeBlock:
    """Edges parsed from one block of lines, in file order (self-loops and duplicates included)."""

    followers: np.ndarray
    followees: np.ndarray
    #: how far into the file (compressed bytes for .gz) reading had got: for progress bars
    end_offset: int = 0

    def __len__(self) -> int:
        return len(self.followers)


def open_edge_file(path: str | os.PathLike[str], raw: IO[bytes] | None = None) -> IO[bytes]:
    """Open an edge list for binary reading, through gzip when the name ends in ``.gz``.

    ``raw`` is the already opened file to read from (e.g. one whose position drives a progress bar).
    """
    raw = raw if raw is not None else open(path, "rb")  # closed with the returned stream
    if str(path).endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def read_edges(
    path: str | os.PathLike[str], block_bytes: int = BLOCK_BYTES, stream: IO[bytes] | None = None
) -> Iterator[EdgeBlock]:
    """Yield the file's edges block by block (never more than one block in memory).

    ``stream`` is the opened file (see :func:`open_edge_file`); ``path`` names it in errors. Raises
    :class:`MalformedEdgeList` naming the file, the line number and the line at the first bad line.
    """
    line_number = 0  # lines before the current block
    with stream if stream is not None else open_edge_file(path) as stream:
        rest = b""
        while True:
            data = stream.read(block_bytes)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: keep reading
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
            yield _parse_block(path, block, line_number, _position(stream))
            line_number += block.count(b"\n")
        if rest:
            yield _parse_block(path, rest, line_number, _position(stream))


def _position(stream: IO[bytes]) -> int:
    """Bytes read from the underlying file (a GzipFile reads from ``fileobj``)."""
    return (getattr(stream, "fileobj", None) or stream).tell()


def _parse_block(path: str | os.PathLike[str], block: bytes, first_line: int, end_offset: int) -> EdgeBlock:
    """Parse whole lines with numpy's C reader; on any doubt find the bad line in Python for the message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a block of comments only is "empty input", which is fine
            pairs = np.loadtxt(io.BytesIO(block), dtype=np.int64, comments="#", ndmin=2)
    except ValueError:
        pairs = None
    if pairs is not None and (pairs.size == 0 or (pairs.shape[1] == 2 and pairs.min() >= 0)):
        if pairs.size == 0:
            pairs = np.empty((0, 2), dtype=np.int64)
        return EdgeBlock(np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]), end_offset)
    for offset, raw in enumerate(block.split(b"\n")):
        reason = line_problem(raw)
        if reason:
            raise MalformedEdgeList(path, first_line + offset + 1, raw.decode(errors="replace").rstrip("\r"), reason)
    raise MalformedEdgeList(path, first_line + 1, "", "a block of lines could not be parsed")  # pragma: no cover


def line_problem(raw: bytes) -> str | None:
    """Why one line is not a valid edge-list line, or None when it is (a pair, a comment or blank)."""
    text = raw.split(b"#", 1)[0].strip()
    if not text:
        return None
    fields = text.split()
    if len(fields) != 2:
        return f"expected 2 ids, found {len(fields)} field{'s' if len(fields) != 1 else ''}"
    for field in fields:
        if not field.isdigit():
            return f"{field.decode(errors='replace')!r} is not a non-negative integer id"
        if int(field) > MAX_ID:
            return f"id {field.decode()} does not fit in 64 bits"
    return None


@contextmanager
def _atomic(path: Path) -> Iterator[IO[bytes]]:
    """Write to a temporary file beside ``path`` and rename it into place only when complete."""
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "wb") as raw:
            if path.name.endswith(".gz"):
                # mtime=0 and no file name in the header: the same edges give the same bytes.
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
                    yield zipped  # type: ignore[misc]
            else:
                yield raw
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_edges(
    path: str | os.PathLike[str], followers: np.ndarray, followees: np.ndarray, header: Sequence[str] = ()
) -> int:
    """Write edges as ``follower followee`` lines after ``# `` header lines; returns the bytes of text written.

    The file appears only once it is complete (written beside it, then renamed).
    """
    written = 0
    with _atomic(Path(path)) as out:
        for line in header:
            text = f"# {line}\n".encode()
            written += out.write(text)
        for start in range(0, len(followers), WRITE_ROWS):
            a = followers[start : start + WRITE_ROWS].tolist()
            b = followees[start : start + WRITE_ROWS].tolist()
            written += out.write("".join(f"{x} {y}\n" for x, y in zip(a, b, strict=True)).encode())
    return written
