"""Graph file formats: Matrix Market, KONECT, CSV/TSV, undirected files, damaged gzip, and their one-line errors.

Parsing and statistics need no stores; the loading tests check that a refused file leaves the loaded graph as it was.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli.main import main
from graphs.edgelist import DamagedFile, MalformedEdgeList, read_edges
from graphs.formats import ReadOptions
from graphs.load import load_graph
from graphs.stats import graph_stats
from targets.stores.connections import Stores

#: A small undirected graph: a hub (1) with friends, a triangle, a chain and one self-friendship.
FRIENDSHIPS = [(2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (3, 2), (4, 3), (7, 6), (8, 7), (9, 8), (9, 9), (10, 2)]


def mtx(pairs: list[tuple[int, int]], users: int = 10) -> bytes:
    """``pairs`` as a symmetric Matrix Market pattern file (lower triangle, as Matrix Market stores it)."""
    lines = ["%%MatrixMarket matrix coordinate pattern symmetric", "% a comment", f"{users} {users} {len(pairs)}"]
    return ("\n".join(lines + [f"{a} {b}" for a, b in pairs]) + "\n").encode()


def edge_list(pairs: list[tuple[int, int]], sep: str = " ") -> bytes:
    return "".join(f"{a}{sep}{b}\n" for a, b in pairs).encode()


def fanout(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def stats_json(path: Path, *flags: str) -> dict:
    result = fanout("graph", "stats", str(path), "--json", *flags)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    return {k: v for k, v in doc.items() if k not in ("path", "format")}  # these name the file, not the graph


def pairs_of(path: Path, options: ReadOptions | None = None, block_bytes: int = 1 << 20) -> list[tuple[int, int]]:
    return [
        (int(a), int(b))
        for block in read_edges(path, block_bytes=block_bytes, options=options)
        for a, b in zip(block.followers, block.followees, strict=True)
    ]


def test_symmetric_mtx_and_undirected_edge_list_give_identical_stats(tmp_path: Path) -> None:
    (tmp_path / "g.mtx").write_bytes(mtx(FRIENDSHIPS))
    (tmp_path / "g.edges").write_bytes(edge_list(FRIENDSHIPS))
    from_mtx = stats_json(tmp_path / "g.mtx")  # symmetric implies --undirected
    assert from_mtx == stats_json(tmp_path / "g.edges", "--undirected")
    friends = nx.Graph(FRIENDSHIPS)
    friends.remove_edges_from(nx.selfloop_edges(friends))
    g = friends.to_directed()
    assert (from_mtx["users"], from_mtx["edges"], from_mtx["lines"]) == (10, g.number_of_edges(), len(FRIENDSHIPS))
    assert from_mtx["self_loops"] == 1 and from_mtx["duplicates"] == 0
    assert from_mtx["reciprocity"] == 1.0
    assert from_mtx["top_followed"][0] == [1, 5]
    # Read as directed, the same list is another graph: each friendship one follow.
    assert stats_json(tmp_path / "g.edges")["edges"] == len(FRIENDSHIPS) - 1


def test_ids_are_kept_as_written(tmp_path: Path) -> None:
    (tmp_path / "g.mtx").write_bytes(mtx([(2, 1), (10, 3)]))
    assert sorted(pairs_of(tmp_path / "g.mtx")) == [(1, 2), (2, 1), (3, 10), (10, 3)]  # 1-based, not shifted
    (tmp_path / "zero.txt").write_bytes(b"0 1\n")
    assert pairs_of(tmp_path / "zero.txt") == [(0, 1)]


def test_mtx_values_are_ignored_and_a_general_mtx_is_directed(tmp_path: Path) -> None:
    path = tmp_path / "w.mtx.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"%%MatrixMarket matrix coordinate real general\n%\n%\n4 4 3\n1 2 0.5\n2 3 1e3\n4 1 -2\n")
    assert pairs_of(path, block_bytes=7) == [(1, 2), (2, 3), (4, 1)]  # preamble and lines across tiny blocks


@pytest.mark.parametrize(
    ("name", "content", "fmt"),
    [
        ("g.mtx", mtx([(2, 1)]), "mtx"),
        ("g.csv", b"1,2\n", "csv"),
        ("g.tsv.gz", b"1\t2\n", "tsv"),
        ("out.friends", b"% 1 2 2\n1 2\n", "konect"),
        ("g.edges", b"% sym unweighted\n% 1 2 2\n1 2\n", "konect"),
        ("g.txt", b"%%MatrixMarket matrix coordinate pattern general\n2 2 1\n1 2\n", "mtx"),
        ("g.txt", b"# source,target\n1, 2\n", "csv"),
        ("g.edgelist", b"# SNAP\n% also a comment\n1\t2\n", "snap"),
    ],
)
def test_format_is_detected_by_suffix_then_header(tmp_path: Path, name: str, content: bytes, fmt: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
    blocks = list(read_edges(path))
    assert blocks[0].layout is not None and blocks[0].layout.format == fmt
    assert pairs_of(path)[:1] in ([(1, 2)], [(2, 1)])


def test_format_option_overrides_detection(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_bytes(b"1 2\n")
    with pytest.raises(MalformedEdgeList, match="line 1"):
        list(read_edges(path))  # by its name a CSV file, and this line has no comma
    assert pairs_of(path, ReadOptions(format="snap")) == [(1, 2)]
    assert stats_json(path, "--format", "snap")["edges"] == 1


def test_konect_weights_need_the_flag_and_sym_means_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "out.weighted"
    path.write_bytes(b"% sym positive\n% 3 3 3\n1 2 5 1300000000\n2 3 1 1300000001\n")
    with pytest.raises(MalformedEdgeList) as info:
        list(read_edges(path))
    assert info.value.line_number == 3 and "--ignore-extra-columns" in str(info.value)
    assert pairs_of(path, ReadOptions(ignore_extra_columns=True)) == [(1, 2), (2, 3), (2, 1), (3, 2)]
    result = fanout("graph", "stats", str(path))
    assert result.exit_code == 2 and "--ignore-extra-columns" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert stats_json(path, "--ignore-extra-columns")["edges"] == 4


def test_bipartite_konect_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.bip"
    path.write_bytes(b"% bip unweighted\n1 1\n")
    with pytest.raises(MalformedEdgeList, match="line 1: a bipartite"):
        list(read_edges(path))


#: Malformed files: (name, content, line of the error, words of the reason).
MALFORMED = [
    ("header.mtx", b"%%MatrixMarket matrix array real general\n3 3\n1\n", 1, "not a list of edges"),
    ("header2.mtx", b"% no header\n3 3 1\n1 2\n", 1, "not a Matrix Market header"),
    ("size.mtx", b"%%MatrixMarket matrix coordinate pattern general\n%\n3 3\n1 2\n", 3, "size line"),
    ("square.mtx", b"%%MatrixMarket matrix coordinate pattern general\n3 4 1\n1 2\n", 2, "3x4 matrix"),
    ("index.mtx", b"%%MatrixMarket matrix coordinate pattern general\n3 3 2\n1 2\n0 3\n", 4, "1-based"),
    ("count.mtx", b"%%MatrixMarket matrix coordinate pattern general\n3 3 3\n1 2\n2 3\n", 2, "declares 3 entries"),
    ("columns.mtx", b"%%MatrixMarket matrix coordinate real general\n3 3 2\n1 2 0.5\n2 3\n", 4, "expected 3 columns"),
    ("columns.csv", b"1,2\n2,3,4\n", 2, "expected 2 ids, found 3"),
    ("columns.txt", b"1 2\n3\n", 2, "expected 2 ids, found 1"),
    ("id.csv", b"1,2\n2,x\n", 2, "'x' is not a non-negative integer id"),
    ("id.tsv", b"1\t2\n2\t3.5\n", 2, "'3.5' is not a non-negative integer id"),
    ("id.mtx", b"%%MatrixMarket matrix coordinate integer general\n3 3 2\n1 2 7\n2 3 x\n", 4, "not an integer"),
]


@pytest.mark.parametrize(("name", "content", "line", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_file_names_file_and_line(tmp_path: Path, name: str, content: bytes, line: int, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for block_bytes in (1 << 20, 5):  # line numbers survive block boundaries and a preamble read in pieces
        with pytest.raises(MalformedEdgeList) as info:
            list(read_edges(path, block_bytes=block_bytes))
        assert info.value.line_number == line
        assert str(info.value).startswith(f"{path}, line {line}: ") and reason in str(info.value)
    result = fanout("graph", "stats", str(path))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {info.value}"]


def damaged(tmp_path: Path, kind: str) -> Path:
    """A .gz file damaged in one way."""
    data = gzip.compress(edge_list([(i, i + 1) for i in range(1, 2000)]), mtime=0)
    path = tmp_path / f"{kind}.txt.gz"
    if kind == "truncated":
        data = data[: len(data) // 2]
    elif kind == "crc":
        data = data[:-8] + bytes(b ^ 0xFF for b in data[-8:-4]) + data[-4:]
    elif kind == "corrupted":
        data = data[:20] + bytes(b ^ 0x55 for b in data[20:60]) + data[60:]
    elif kind == "plain":
        data = edge_list([(1, 2)])
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("truncated", "truncated"),
        ("crc", "corrupted"),
        ("corrupted", "corrupted"),
        ("plain", "is not gzip data"),
    ],
)
def test_damaged_gzip_is_one_line_naming_file_and_problem(tmp_path: Path, kind: str, problem: str) -> None:
    path = damaged(tmp_path, kind)
    with pytest.raises(DamagedFile, match=problem):
        list(read_edges(path))
    result = fanout("graph", "stats", str(path))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and problem in lines[0], result.stderr


def test_stats_warns_of_an_undirected_file_listed_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(1, 200, 600)
    b = rng.integers(1, 200, 600)
    keep = a != b
    pairs = sorted({(int(max(x, y)), int(min(x, y))) for x, y in zip(a[keep], b[keep], strict=True)})
    path = tmp_path / "socfb-like.edges"  # larger id first, each friendship once, as socfb-Reed98.edges
    path.write_bytes(edge_list(pairs))
    result = fanout("graph", "stats", str(path), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["reciprocity"] == 0.0  # the warning does not spoil the JSON
    assert "looks undirected" in result.stderr and "--undirected" in result.stderr
    both = fanout("graph", "stats", str(path), "--undirected")
    assert both.exit_code == 0 and "looks undirected" not in both.stderr
    mixed = tmp_path / "mixed.txt"
    mixed.write_bytes(edge_list([*pairs, (1, 2)]))  # one follow the other way: not a sign any more
    assert not graph_stats(mixed).oriented_by_id
    assert "looks undirected" not in fanout("graph", "stats", str(mixed)).stderr


async def graph_rows(stores: Stores) -> tuple[set[tuple[int, int, int]], set[tuple[int, int]]]:
    users = {tuple(r) for r in await stores.pg.fetch("SELECT id, follower_count, followee_count FROM users")}
    follows = {(r[0], r[1]) for r in await stores.pg.fetch("SELECT follower_id, followee_id FROM follows")}
    return users, follows  # type: ignore[return-value]


async def test_load_reads_formats_and_refused_files_keep_the_loaded_graph(stores: Stores, tmp_path: Path) -> None:
    path = tmp_path / "g.mtx"
    path.write_bytes(mtx(FRIENDSHIPS))
    report = await load_graph(stores, path)
    friends = nx.Graph(FRIENDSHIPS)
    friends.remove_edges_from(nx.selfloop_edges(friends))
    users, follows = await graph_rows(stores)
    assert follows == set(friends.to_directed().edges)
    assert (report.lines_read, report.self_loops, report.duplicates) == (len(FRIENDSHIPS), 1, 0)
    assert report.format == "mtx, every edge both ways"
    konect = tmp_path / "out.weighted"
    konect.write_bytes(b"% asym positive\n1 2 5\n2 3 1\n3 1 2\n")
    with pytest.raises(MalformedEdgeList, match="--ignore-extra-columns"):
        await load_graph(stores, konect)
    assert await graph_rows(stores) == (users, follows)
    await load_graph(stores, konect, read=ReadOptions(ignore_extra_columns=True))
    users, follows = await graph_rows(stores)
    assert follows == {(1, 2), (2, 3), (3, 1)} and users == {(1, 1, 1), (2, 1, 1), (3, 1, 1)}
    for name, content, line, _ in MALFORMED:
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(MalformedEdgeList) as info:
            await load_graph(stores, bad)
        assert info.value.line_number == line
        assert await graph_rows(stores) == (users, follows), name
    for kind in ("truncated", "crc", "plain"):
        with pytest.raises(DamagedFile):
            await load_graph(stores, damaged(tmp_path, kind))
        assert await graph_rows(stores) == (users, follows), kind


def test_cli_load_flags_and_errors(stores: Stores, tmp_path: Path) -> None:
    s = stores.settings
    ns = ["--schema", s.schema, "--prefix", s.prefix]
    path = tmp_path / "friends.csv"
    path.write_bytes(edge_list(FRIENDSHIPS, sep=","))
    result = fanout(*ns, "graph", "load", str(path), "--undirected")
    assert result.exit_code == 0, result.output
    assert "csv, every edge both ways" in result.stdout
    bad = damaged(tmp_path, "truncated")
    result = fanout(*ns, "graph", "load", str(bad))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}: the gzip data ends early: the file is truncated (download or write it again)"
    ]


def test_bench_graph_takes_the_format_options(stores: Stores, tmp_path: Path) -> None:
    path = tmp_path / "out.weighted"  # KONECT, directed, a weight column
    path.write_bytes(b"% asym positive\n" + "".join(f"{i} {j} 7\n" for i in range(2, 60) for j in (1, i - 1)).encode())
    out = tmp_path / "r.json"
    s = stores.settings

    def bench(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "bench.cli", "--prefix", s.prefix, "--schema", s.schema, "bench", "--graph"]
        run = ["--strategy", "push", "--duration", "1", "--rate", "20", "--warmup", "0", "--out", str(out)]
        return subprocess.run([*argv, str(path), *run, *args], capture_output=True, text=True, timeout=240)

    refused = bench()
    assert refused.returncode == 2 and "--ignore-extra-columns" in refused.stderr and not out.exists()
    result = bench("--ignore-extra-columns")
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert (doc["graph"]["users"], doc["graph"]["follows"]) == (59, 58 + 57)  # 2 -> 1 is listed twice
    alone = fanout("bench", "--undirected")
    assert alone.exit_code == 2 and "describe a --graph FILE" in alone.stderr
