"""Reading edge lists block by block in any of :mod:`graphs.formats`, and writing them as SNAP files.

Files are gzip when the name ends in ``.gz``. Reading streams the file in blocks and parses each block with numpy's C
parser, so memory stays flat however large the file is; a block that does not parse is re-read line by line to name
the offending line. Writing gives SNAP's format (``follower followee`` lines, ``#`` comments), that of SNAP's Twitter
data (``twitter_combined.txt``), so a generated graph loads exactly as a real one does.
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from graphs.formats import MAX_ID, Layout, MalformedEdgeList, ReadOptions, layout_of, line_problem
from targets.errors import FanoutError

#: Bytes read per block; a block holds roughly this / 15 edges.
BLOCK_BYTES = 8 << 20
#: Rows formatted per write when writing a file.
WRITE_ROWS = 500_000


class DamagedFile(FanoutError, ValueError):
    """A compressed graph file that cannot be read to its end: truncated, corrupted, or not gzip at all."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True, slots=True)
class EdgeBlock:
    """Directed edges parsed from one block of lines, in file order (self-loops and duplicates included).

    With an undirected layout each line gives two edges (a self-loop one), so ``len`` may exceed ``lines``.
    """

    followers: np.ndarray
    followees: np.ndarray
    #: how far into the file (compressed bytes for .gz) reading had got: for progress bars
    end_offset: int = 0
    #: edge lines the block held
    lines: int = 0
    #: how the file was read
    layout: Layout | None = None

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


def _read(path: str | os.PathLike[str], stream: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes; gzip's errors become one :class:`DamagedFile` naming the file and the problem."""
    try:
        return stream.read(size)
    except EOFError:  # click would print a bare "Aborted!" for it
        raise DamagedFile(
            path, "the gzip data ends early: the file is truncated (download or write it again)"
        ) from None
    except gzip.BadGzipFile as exc:
        if str(exc).startswith("Not a gzipped file"):
            raise DamagedFile(
                path, "is not gzip data although its name ends in .gz: rename it without .gz, or compress it"
            ) from None
        raise DamagedFile(path, f"the gzip data is corrupted ({exc}): download or write it again") from None
    except zlib.error as exc:
        raise DamagedFile(path, f"the gzip data is corrupted ({exc}): download or write it again") from None


def read_edges(
    path: str | os.PathLike[str],
    block_bytes: int = BLOCK_BYTES,
    stream: IO[bytes] | None = None,
    options: ReadOptions | None = None,
) -> Iterator[EdgeBlock]:
    """Yield the file's edges block by block (never more than one block in memory).

    ``stream`` is the opened file (see :func:`open_edge_file`); ``path`` names it in errors; ``options`` say how to
    read it (format, undirected, extra columns). Raises :class:`MalformedEdgeList` naming the file, the line number
    and the line at the first bad line, and :class:`DamagedFile` when gzip data cannot be read.
    """
    options = options or ReadOptions()
    with stream if stream is not None else open_edge_file(path) as stream:
        head, at_eof, layout = b"", False, None
        while layout is None:  # the first lines decide the format (a Matrix Market preamble may be long)
            data = _read(path, stream, block_bytes)
            at_eof = not data
            head += data
            layout = layout_of(path, head, options, at_eof)
        line_number = layout.skip_lines  # lines before the current block
        lines = 0
        rest = b""
        for data in _chunks(path, stream, head[layout.skip_bytes :], at_eof, block_bytes):
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: keep reading
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
            parsed = _parse_block(path, block, line_number, _position(stream), layout)
            lines += parsed.lines
            yield parsed
            line_number += block.count(b"\n")
        if rest:
            parsed = _parse_block(path, rest, line_number, _position(stream), layout)
            lines += parsed.lines
            yield parsed
        if layout.entries is not None and lines != layout.entries:
            raise MalformedEdgeList(
                path,
                layout.size_line,
                "",
                f"the size line declares {layout.entries:,} entries but {lines:,} follow",
                "the file is incomplete or its size line is wrong",
            )


def _chunks(
    path: str | os.PathLike[str], stream: IO[bytes], first: bytes, at_eof: bool, block_bytes: int
) -> Iterator[bytes]:
    """What was already read, then the rest of the stream block by block."""
    if first:
        yield first
    while not at_eof:
        data = _read(path, stream, block_bytes)
        if not data:
            return
        yield data


def _position(stream: IO[bytes]) -> int:
    """Bytes read from the underlying file (a GzipFile reads from ``fileobj``)."""
    return (getattr(stream, "fileobj", None) or stream).tell()


def _parse_block(
    path: str | os.PathLike[str], block: bytes, first_line: int, end_offset: int, layout: Layout
) -> EdgeBlock:
    """Parse whole lines with numpy's C reader; on any doubt find the bad line in Python for the message."""
    pairs = _loadtxt(block, layout)
    ok = pairs is not None and (
        len(pairs) == 0
        or (pairs.min() >= layout.first_id and (layout.last_id == MAX_ID or pairs.max() <= layout.last_id))
    )
    if not ok:
        for offset, raw in enumerate(block.split(b"\n")):
            problem = line_problem(raw, layout)
            if problem:
                line = raw.decode(errors="replace").rstrip("\r")
                raise MalformedEdgeList(path, first_line + offset + 1, line, *problem)
        raise MalformedEdgeList(path, first_line + 1, "", "a block of lines could not be parsed")  # pragma: no cover
    assert pairs is not None
    a, b = np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])
    lines = len(a)
    if layout.undirected:  # each line is a friendship: follow it both ways (a self-loop once)
        other = a != b
        a, b = np.concatenate([a, b[other]]), np.concatenate([b, a[other]])
    return EdgeBlock(a, b, end_offset, lines, layout)


def _loadtxt(block: bytes, layout: Layout) -> np.ndarray | None:
    """The block's (follower, followee) pairs as an n x 2 array, or None when numpy finds a line that does not fit."""
    # numpy's C reader takes one comment mark; with several it filters lines in Python, 3x slower. Most blocks
    # hold at most one kind, so pass only the marks present.
    marks = [mark for mark in layout.comments if mark.encode() in block] or list(layout.comments[:1])
    kwargs: dict = {"comments": marks[0] if len(marks) == 1 else marks}
    if layout.delimiter is not None:
        kwargs["delimiter"] = layout.delimiter
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a block of comments only is "empty input", which is fine
            if layout.ignore_extra:
                pairs = np.loadtxt(io.BytesIO(block), dtype=np.int64, usecols=(0, 1), ndmin=2, **kwargs)
            elif layout.values:  # columns the header declares: parsed (so checked), then dropped
                fields = [("a", "i8"), ("b", "i8")] + [(f"v{i}", kind) for i, kind in enumerate(layout.values)]
                rows = np.loadtxt(io.BytesIO(block), dtype=np.dtype(fields), ndmin=1, **kwargs)
                pairs = np.stack([rows["a"], rows["b"]], axis=1) if rows.size else np.empty((0, 2), np.int64)
            else:
                pairs = np.loadtxt(io.BytesIO(block), dtype=np.int64, ndmin=2, **kwargs)
    except ValueError:
        return None
    if pairs.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    return pairs if pairs.shape[1] == 2 else None


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
