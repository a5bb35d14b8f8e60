"""Graph jobs on a terminal: generate a graph into an edge list with a status line per phase, and a load's progress.

Shared by ``fanout graph`` and ``fanout perf graph`` (which generates in a child process, with a console of its own).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from graphs.edgelist import write_edges
from graphs.generate import GraphSpec, generate, header


def write_graph(spec: GraphSpec, output: Path, console: Console) -> dict[str, float]:
    """Generate ``spec`` into the edge list ``output``, showing each phase on ``console``; returns users, edges and
    the seconds of each phase."""
    start = time.perf_counter()
    with console.status(f"generating {spec.model} graph of {spec.users:,} users"):
        edges = generate(spec)
    generated = time.perf_counter()
    with console.status(f"writing {len(edges):,} edges to {output}"):
        size = write_edges(output, edges.followers, edges.followees, header(spec, edges))
    done = time.perf_counter()
    users = edges.user_count
    console.print(
        f"wrote {output}: {users:,} users, {len(edges):,} edges ({size / 1e6:.1f} MB of text) "
        f"in {done - start:.1f} s (model {generated - start:.1f} s, writing {done - generated:.1f} s)"
    )
    return {"users": users, "edges": len(edges), "generate_s": generated - start, "write_s": done - generated}


def load_progress(console: Console) -> Progress:
    """The progress display of a graph load (pass it to :func:`graphs.load.load_graph`)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
    )
