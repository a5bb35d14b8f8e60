"""Follower graphs from networkx models, as directed edges follower -> followee.

* ``scale-free``: the model of :func:`networkx.scale_free_graph` (Bollobás et al. directed preferential attachment),
  self-loops and parallel edges removed: the heavy-tailed follower counts seen on Twitter. networkx's pure-Python
  loop and MultiDiGraph take minutes and gigabytes at a million users, so by default (``engine="fast"``) the same
  process runs vectorised in numpy (:func:`scale_free_edges`); ``engine="networkx"`` calls networkx itself.
* ``ba``: :func:`networkx.barabasi_albert_graph`; each undirected edge becomes a follow from the newer account to the
  older one (newcomers follow established accounts, so followers are heavy-tailed and followees are ``m`` each).
* ``small-world``: :func:`networkx.watts_strogatz_graph`, each edge followed in a random direction: a control graph
  with no celebrities.

On every model ``reciprocity`` R makes a random R of the model's edges followed back, and ``celebrities`` K adds K
accounts each followed by a random ``celebrity_reach`` fraction of all users (drawn with numpy, so half of a million
users is one vectorised draw, not half a million Python calls). networkx's BA and Watts–Strogatz generators are fast
enough at a million users (see the README's "Follower graphs"); everything after them is numpy. Users are numbered
from 1 (the model's node ``i`` is user ``i + 1``; celebrities come after the model's users). The output is sorted
and free of self-loops and duplicates, so the same model, size, options and seed always give the same file bytes.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import networkx as nx
import numpy as np

from targets.errors import FanoutError

MODELS = ("scale-free", "ba", "small-world")
#: "fast": numpy for scale-free (networkx's own process, vectorised), networkx for the others; "networkx": always.
ENGINES = ("fast", "networkx")

#: networkx's defaults for scale_free_graph; about 2.2 follows per user.
SCALE_FREE_DEFAULTS = {"alpha": 0.41, "beta": 0.54, "gamma": 0.05, "delta_in": 0.2, "delta_out": 0.0}
BA_DEFAULTS = {"m": 5}
SMALL_WORLD_DEFAULTS = {"k": 10, "p": 0.1}
DEFAULTS: dict[str, dict[str, float]] = {
    "scale-free": SCALE_FREE_DEFAULTS,
    "ba": BA_DEFAULTS,
    "small-world": SMALL_WORLD_DEFAULTS,
}


class GraphSpecError(FanoutError, ValueError):
    """Generator options that cannot produce a graph."""


@dataclass(frozen=True)
class GraphSpec:
    """Everything that determines a generated graph (the same spec always gives the same edges)."""

    model: str
    users: int
    seed: int = 0
    celebrities: int = 0
    celebrity_reach: float = 0.5
    reciprocity: float = 0.0
    engine: str = "fast"
    #: model parameters (see :data:`DEFAULTS`); missing ones take the defaults.
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise GraphSpecError(f"unknown model {self.model!r}: choose one of {', '.join(MODELS)}")
        unknown = set(self.params) - set(DEFAULTS[self.model])
        if unknown:
            raise GraphSpecError(
                f"{self.model} takes no option {', '.join(sorted(unknown))}: its options are "
                f"{', '.join(DEFAULTS[self.model])}"
            )
        object.__setattr__(self, "params", {**DEFAULTS[self.model], **self.params})
        _check(self)

    def describe(self) -> str:
        """One line naming the model and every option (the file's header)."""
        opts = {k: v for k, v in asdict(self).items() if k != "params"} | self.params
        return " ".join(f"{k}={v}" for k, v in opts.items())


@dataclass(frozen=True, slots=True)
class Edges:
    """Directed follow edges, sorted by (follower, followee), unique, without self-loops; users numbered from 1."""

    followers: np.ndarray
    followees: np.ndarray

    def __len__(self) -> int:
        return len(self.followers)

    @property
    def user_count(self) -> int:
        """Distinct users that appear in an edge."""
        return len(np.union1d(self.followers, self.followees))


def _check(spec: GraphSpec) -> None:
    p = spec.params
    if spec.engine not in ENGINES:
        raise GraphSpecError(f"unknown engine {spec.engine!r}: choose one of {', '.join(ENGINES)}")
    if spec.users < 2:
        raise GraphSpecError(f"--users {spec.users} is too small: a follower graph needs at least 2 users")
    if spec.celebrities < 0:
        raise GraphSpecError(f"--celebrities {spec.celebrities} is negative: pass 0 or more")
    if not 0 < spec.celebrity_reach <= 1:
        raise GraphSpecError(f"--celebrity-reach {spec.celebrity_reach} is outside (0, 1]: pass a fraction of users")
    if not 0 <= spec.reciprocity <= 1:
        raise GraphSpecError(f"--reciprocity {spec.reciprocity} is outside [0, 1]: pass a fraction of edges")
    if spec.model == "scale-free":
        if min(p["alpha"], p["beta"], p["gamma"]) <= 0 or abs(p["alpha"] + p["beta"] + p["gamma"] - 1) > 1e-9:
            raise GraphSpecError("--alpha, --beta and --gamma must be positive and sum to 1 (networkx's rule)")
        if min(p["delta_in"], p["delta_out"]) < 0:
            raise GraphSpecError("--delta-in and --delta-out must be non-negative")
    elif spec.model == "ba":
        if not 1 <= p["m"] < spec.users:
            raise GraphSpecError(f"--m {p['m']} must be at least 1 and below --users {spec.users}")
    elif spec.model == "small-world":
        if not 2 <= p["k"] < spec.users:
            raise GraphSpecError(f"--k {p['k']} must be at least 2 and below --users {spec.users}")
        if not 0 <= p["p"] <= 1:
            raise GraphSpecError(f"--p {p['p']} is outside [0, 1]: it is a rewiring probability")


def _edge_arrays(graph: nx.Graph) -> tuple[np.ndarray, np.ndarray]:
    """A networkx graph's distinct edges (u, v) as two int64 arrays, iterating adjacency dicts in C.

    Parallel edges of a multigraph come out once; an undirected edge comes out once, as (smaller, larger).
    """
    adj = graph.adj
    sizes = np.fromiter(map(len, adj.values()), dtype=np.int64, count=len(adj))
    sources = np.repeat(np.fromiter(adj, dtype=np.int64, count=len(adj)), sizes)
    targets = np.fromiter(itertools.chain.from_iterable(adj.values()), dtype=np.int64, count=int(sizes.sum()))
    if graph.is_directed():
        return sources, targets
    once = sources < targets
    return sources[once], targets[once]


def model_edges(spec: GraphSpec) -> tuple[np.ndarray, np.ndarray]:
    """The model's own directed edges on nodes ``0..users-1`` (may contain self-loops and duplicates)."""
    p, n, seed = spec.params, spec.users, spec.seed
    if spec.model == "scale-free" and spec.engine == "fast":
        return scale_free_edges(n, **p, rng=np.random.default_rng([seed, 0]))
    if spec.model == "scale-free":
        graph = nx.scale_free_graph(
            n,
            alpha=p["alpha"],
            beta=p["beta"],
            gamma=p["gamma"],
            delta_in=p["delta_in"],
            delta_out=p["delta_out"],
            seed=seed,
        )
        return _edge_arrays(graph)  # u -> v: v was chosen by preferential attachment on in-degree
    if spec.model == "ba":
        u, v = _edge_arrays(nx.barabasi_albert_graph(n, int(p["m"]), seed=seed))
        return np.maximum(u, v), np.minimum(u, v)  # the newer account follows the older one
    u, v = _edge_arrays(nx.watts_strogatz_graph(n, int(p["k"]), float(p["p"]), seed=seed))
    flip = np.random.default_rng([seed, 1]).random(len(u)) < 0.5
    return np.where(flip, v, u), np.where(flip, u, v)


def scale_free_edges(
    n: int, alpha: float, beta: float, gamma: float, delta_in: float, delta_out: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """networkx's ``scale_free_graph`` process, vectorised: the same model, drawn with numpy in seconds.

    networkx starts from the cycle 0 -> 1 -> 2 -> 0 and adds one edge per step until there are ``n`` nodes: with
    probability alpha a new node follows an existing one, beta an existing node follows another, gamma an existing
    node follows a new one. An existing followee is drawn by in-degree + ``delta_in`` (an existing follower by
    out-degree + ``delta_out``): with probability ``N * delta / (N * delta + E)`` a uniform node among the N so
    far, otherwise the endpoint of a uniform one of the E earlier edges. That "endpoint of an earlier edge" is a
    pointer to a smaller index, so all steps are drawn at once and the pointers resolved by pointer jumping
    (each pass doubles the distance followed; a few dozen passes at most). Returns (sources, targets), parallel
    edges and self-loops included, as networkx's MultiDiGraph has them.
    """
    kinds = np.empty(0, np.int8)
    added = np.zeros(1, np.int64)
    while added[-1] < n - 3:  # draw step kinds until the n-th node is added (rarely needs a second round)
        more = int((n - 3 - added[-1]) / (alpha + gamma) * 1.05) + 1000
        kinds = np.concatenate([kinds, rng.choice(np.array([0, 1, 2], np.int8), size=more, p=[alpha, beta, gamma])])
        added = np.cumsum(kinds != 1)
    steps = int(np.searchsorted(added, n - 3)) + 1
    kinds, added = kinds[:steps], added[:steps]
    nodes_before = 3 + added - (kinds != 1)
    edges_before = np.arange(3, 3 + steps, dtype=np.int64)

    def endpoints(known: np.ndarray, pool: np.ndarray, delta: float, initial: list[int]) -> np.ndarray:
        # known steps take nodes_before (the new node); the others a uniform node of `pool` or an earlier edge's.
        uniform = rng.random(steps) * (pool * delta + edges_before) < pool * delta
        value = np.concatenate([initial, np.where(known, nodes_before, (rng.random(steps) * pool).astype(np.int64))])
        pointer = np.arange(3 + steps, dtype=np.int64)
        copied = ~known & ~uniform
        pointer[3:][copied] = (rng.random(steps) * edges_before).astype(np.int64)[copied]
        while not np.array_equal(jumped := pointer[pointer], pointer):
            pointer = jumped
        return value[pointer]

    # alpha: the new node v is in the node list before its followee is drawn (networkx appends it first).
    targets = endpoints(kinds == 2, nodes_before + (kinds == 0), delta_in, [1, 2, 0])
    sources = endpoints(kinds == 0, nodes_before, delta_out, [0, 1, 2])
    return sources, targets


def generate(spec: GraphSpec) -> Edges:
    """The follower graph the spec describes."""
    followers, followees = model_edges(spec)
    rng = np.random.default_rng([spec.seed, 2])
    parts_a, parts_b = [followers], [followees]
    if spec.reciprocity > 0:
        back = rng.random(len(followers)) < spec.reciprocity
        parts_a.append(followees[back])
        parts_b.append(followers[back])
    reach = max(1, round(spec.celebrity_reach * spec.users))
    for celebrity in range(spec.users, spec.users + spec.celebrities):
        parts_a.append(rng.choice(spec.users, size=reach, replace=False).astype(np.int64))
        parts_b.append(np.full(reach, celebrity, dtype=np.int64))
    return normalise(np.concatenate(parts_a), np.concatenate(parts_b), offset=1)


def normalise(followers: np.ndarray, followees: np.ndarray, offset: int = 0) -> Edges:
    """Sort by (follower, followee), drop self-loops and duplicates, and add ``offset`` to every id."""
    keep = followers != followees
    key = np.unique((followers[keep] << 32) | followees[keep])  # ids here are node numbers, far below 2**31
    return Edges((key >> 32) + offset, (key & 0xFFFFFFFF) + offset)


def header(spec: GraphSpec, edges: Edges) -> list[str]:
    """The comment lines a generated file starts with."""
    return [
        "fanout-bench follower graph: one `follower followee` pair per line (SNAP edge-list format)",
        f"model {spec.describe()}",
        f"users {edges.user_count} edges {len(edges)}",
    ]
