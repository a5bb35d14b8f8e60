"""Statistics of an edge list: users, edges, degree distributions, reciprocity, top accounts, power-law exponent.

The file is read with :func:`graphs.edgelist.read_edges` and held as numpy arrays (about 24 bytes per edge), so a
graph of millions of edges takes seconds and a few hundred megabytes, where a networkx DiGraph would take gigabytes.
Counting follows the loader: every id in the file is a user, self-follows and duplicate lines are not edges.
A file whose edges all point from the smaller id to the larger (or all the other way) has reciprocity 0 by
construction: it is most likely an undirected graph listed once, which :func:`listed_once_warning` points out.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from graphs.edgelist import read_edges
from graphs.formats import ReadOptions

#: Fewest tail values a power-law fit may rest on.
MIN_TAIL = 50
#: Candidate x_min values tried (the distinct degrees, thinned to at most this many).
MAX_XMIN_CANDIDATES = 200
#: Fewest edges for which "every edge goes one way in id order" is taken as a sign of an undirected file.
MIN_ORIENTED_EDGES = 10


@dataclass(frozen=True)
class DegreeSummary:
    """One degree distribution over all users."""

    mean: float
    median: float
    p99: float
    max: int

    @classmethod
    def of(cls, degrees: np.ndarray) -> DegreeSummary:
        if not len(degrees):
            return cls(0.0, 0.0, 0.0, 0)
        return cls(
            float(degrees.mean()),
            float(np.median(degrees)),
            float(np.percentile(degrees, 99)),
            int(degrees.max()),
        )


@dataclass(frozen=True)
class GraphStats:
    """What ``fanout graph stats`` reports."""

    path: str
    #: how the file was read, e.g. ``mtx, every edge both ways``
    format: str
    lines: int
    self_loops: int
    duplicates: int
    users: int
    edges: int
    in_degree: DegreeSummary
    out_degree: DegreeSummary
    #: fraction of edges whose reverse edge is also present (networkx's ``reciprocity``)
    reciprocity: float
    #: (user id, followers), most followed first
    top_followed: list[tuple[int, int]]
    #: discrete power-law fit of the in-degree tail: P(k) ~ k^-alpha for k >= xmin (None when too few values)
    powerlaw_alpha: float | None
    powerlaw_xmin: int | None
    #: every edge goes from the smaller id to the larger, or every one the other way (see :func:`listed_once_warning`)
    oriented_by_id: bool

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Graph:
    """An edge list in compact form: users' ids and the distinct non-self edges as indices into them."""

    ids: np.ndarray
    sources: np.ndarray
    targets: np.ndarray
    #: edge lines in the file
    lines: int
    #: directed edges they gave (more than ``lines`` when each line is followed both ways)
    rows: int
    self_loops: int
    format: str = ""

    def in_degrees(self) -> np.ndarray:
        """Followers per user (aligned with ``ids``)."""
        return np.bincount(self.targets, minlength=len(self.ids))

    def out_degrees(self) -> np.ndarray:
        """Followees per user (aligned with ``ids``)."""
        return np.bincount(self.sources, minlength=len(self.ids))


def read_graph(path: str | os.PathLike[str], options: ReadOptions | None = None) -> Graph:
    """Read an edge list into a :class:`Graph` (self-follows and duplicates dropped, every id kept as a user)."""
    followers, followees = [], []
    self_loops = lines = 0
    layout = ""
    for block in read_edges(path, options=options):
        followers.append(block.followers)
        followees.append(block.followees)
        self_loops += int((block.followers == block.followees).sum())
        lines += block.lines
        layout = block.layout.describe() if block.layout else layout
    a = np.concatenate(followers) if followers else np.empty(0, np.int64)
    b = np.concatenate(followees) if followees else np.empty(0, np.int64)
    ids = np.unique(np.concatenate([a, b]))
    n = max(len(ids), 1)
    keep = a != b
    key = np.unique(np.searchsorted(ids, a[keep]) * n + np.searchsorted(ids, b[keep]))
    return Graph(ids, key // n, key % n, lines=lines, rows=len(a), self_loops=self_loops, format=layout)


def reciprocity(graph: Graph) -> float:
    """Fraction of edges u -> v for which v -> u is an edge too."""
    if not len(graph.sources):
        return 0.0
    n = len(graph.ids)
    key = graph.sources * n + graph.targets  # sorted, as read_graph built it
    reverse = graph.targets * n + graph.sources
    found = np.searchsorted(key, reverse)
    found[found == len(key)] = 0
    return float((key[found] == reverse).mean())


def oriented_by_id(graph: Graph) -> bool:
    """Whether every edge goes from the smaller id to the larger, or every one the other way (and there are enough)."""
    if len(graph.sources) < MIN_ORIENTED_EDGES:
        return False
    upward = graph.sources < graph.targets  # indices into the sorted ids: the same order as the ids
    return bool(upward.all() or not upward.any())


def listed_once_warning(stats: GraphStats) -> str | None:
    """A hint when the file looks like an undirected graph with each edge listed once, else None."""
    if not stats.oriented_by_id:
        return None
    return (
        f"{stats.path} looks undirected, each edge listed once: reciprocity is 0 and every edge goes one way in id "
        "order, so the ids alone decide who follows whom; if each line is a friendship, pass --undirected"
    )


def powerlaw_fit(degrees: np.ndarray) -> tuple[float, int] | None:
    """Exponent and x_min of a discrete power law fitted to the positive degrees (Clauset, Shalizi & Newman 2009).

    For each candidate x_min, alpha = 1 + n / sum(ln(k / (x_min - 1/2))) (their discrete approximation); the x_min
    whose fit has the smallest Kolmogorov-Smirnov distance to the data wins.
    """
    values = np.sort(degrees[degrees > 0])
    if len(values) < MIN_TAIL:
        return None
    candidates = np.unique(values)
    candidates = candidates[len(values) - np.searchsorted(values, candidates) >= MIN_TAIL]
    if len(candidates) > MAX_XMIN_CANDIDATES:
        candidates = candidates[np.linspace(0, len(candidates) - 1, MAX_XMIN_CANDIDATES).astype(int)]
    best: tuple[float, float, int] | None = None
    for xmin in candidates:
        tail = values[np.searchsorted(values, xmin) :]
        alpha = 1 + len(tail) / np.log(tail / (xmin - 0.5)).sum()
        # KS distance between the tail's empirical CCDF and the fitted one, at the distinct tail values.
        distinct, first = np.unique(tail, return_index=True)
        empirical = 1 - first / len(tail)
        fitted = (distinct / xmin) ** (1 - alpha)
        distance = float(np.abs(empirical - fitted).max())
        if best is None or distance < best[0]:
            best = (distance, float(alpha), int(xmin))
    return None if best is None else (best[1], best[2])


def graph_stats(
    path: str | os.PathLike[str], top: int = 10, graph: Graph | None = None, options: ReadOptions | None = None
) -> GraphStats:
    """Statistics of the edge list at ``path`` (``graph``: the file already read by :func:`read_graph`)."""
    graph = graph if graph is not None else read_graph(path, options)
    ins, outs = graph.in_degrees(), graph.out_degrees()
    order = np.lexsort((graph.ids, -ins))[:top]  # most followers first, ties by id
    fit = powerlaw_fit(ins)
    return GraphStats(
        path=str(path),
        format=graph.format,
        lines=graph.lines,
        self_loops=graph.self_loops,
        duplicates=graph.rows - graph.self_loops - len(graph.sources),
        users=len(graph.ids),
        edges=len(graph.sources),
        in_degree=DegreeSummary.of(ins),
        out_degree=DegreeSummary.of(outs),
        reciprocity=reciprocity(graph),
        top_followed=[(int(graph.ids[i]), int(ins[i])) for i in order],
        powerlaw_alpha=None if fit is None else fit[0],
        powerlaw_xmin=None if fit is None else fit[1],
        oriented_by_id=oriented_by_id(graph),
    )


def plot_in_degree(graph: Graph, out: str | os.PathLike[str], stats: GraphStats) -> None:
    """Write a log-log plot of the in-degree distribution (share of users per follower count) to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ins = graph.in_degrees()
    counts = np.bincount(ins)
    k = np.nonzero(counts)[0]
    k = k[k > 0]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.loglog(k, counts[k] / len(ins), ".", markersize=3, label="users")
    if stats.powerlaw_alpha and stats.powerlaw_xmin:
        xs = k[k >= stats.powerlaw_xmin]
        share = (ins >= stats.powerlaw_xmin).mean()
        # A discrete power law normalised over the tail, scaled to the tail's share of users.
        norm = (np.arange(stats.powerlaw_xmin, 10 * int(xs.max()) + 1, dtype=float) ** -stats.powerlaw_alpha).sum()
        ax.loglog(xs, share * xs**-stats.powerlaw_alpha / norm, "-", label=f"power law α={stats.powerlaw_alpha:.2f}")
    ax.set_xlabel("followers (in-degree)")
    ax.set_ylabel("fraction of users")
    ax.set_title(f"In-degree distribution: {os.path.basename(stats.path)}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
