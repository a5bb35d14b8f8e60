"""``fanout demo``: a seconds-long tour of the three strategies on a small graph, with the oracle verdict.

It is not the benchmark (that is ``fanout bench --quick``). It runs in a namespace of its own derived from the
configured one (:func:`demo_settings`), dropped afterwards, so a graph loaded with ``fanout graph load`` is never
touched. Users are numbered from 1, as in generated graph files.
"""

from __future__ import annotations

import random

import click
import networkx as nx
from rich.console import Console
from rich.table import Table

from bench.cli.options import setting_options, settings_from
from bench.scenarios.oracle import Ensemble
from targets.config import Settings
from targets.eventloop import run
from targets.fanout.worker import drain, running_worker
from targets.stores.connections import Stores


@click.command()
@click.option("--users", default=300, show_default=True, type=click.IntRange(min=10), help="Users in the graph.")
@click.option("--posts", default=400, show_default=True, type=click.IntRange(min=1), help="Posts to publish.")
@click.option("--seed", default=1, show_default=True, type=int, help="Random seed.")
@setting_options("celebrity_threshold", celebrity_threshold=25)
@click.pass_context
def demo(ctx: click.Context, users: int, posts: int, seed: int) -> None:
    """A quick tour (seconds): a small scale-free graph, posts, one timeline from each strategy, the oracle verdict.

    Runs in a namespace of its own (prefix and schema with a _demo suffix), dropped afterwards: the loaded graph
    stays as it is. The benchmark is `fanout bench --quick`.
    """
    settings = demo_settings(settings_from(ctx))
    run(_demo(settings, users, posts, seed))


def demo_settings(settings: Settings) -> Settings:
    """The demo's namespace: the configured one with a ``_demo`` suffix (``fanout:`` -> ``fanout_demo:``).

    Not nested in the configured prefix (``fanout:demo:`` would be), so neither namespace's SCAN sees the other's keys.
    """
    return settings.with_(prefix=settings.prefix.rstrip(":") + "_demo:", schema=settings.schema[:58] + "_demo")


async def _demo(settings: Settings, users: int, posts: int, seed: int) -> None:
    console = Console()
    rng = random.Random(seed)
    graph = nx.DiGraph(nx.scale_free_graph(users, seed=seed))
    graph.remove_edges_from(nx.selfloop_edges(graph))
    graph = nx.relabel_nodes(graph, {node: node + 1 for node in graph})  # users 1..N, as graph files number them
    async with await Stores.connect(settings) as stores:
        console.print(f"demo namespace: keys {settings.prefix}*, schema {settings.schema} (dropped afterwards)")
        try:
            await stores.reset()
            await _populate_and_check(stores, console, rng, graph, posts)
        finally:
            await stores.drop()


async def _populate_and_check(
    stores: Stores, console: Console, rng: random.Random, graph: nx.DiGraph, posts: int
) -> None:
    async with running_worker(stores):
        ensemble = Ensemble(stores)
        await ensemble.social.add_users(list(graph.nodes))
        # scale_free_graph points edges at popular nodes, so an edge u -> v reads "u follows v".
        for follower, followee in graph.edges:
            await ensemble.follow(follower, followee)
        authors = list(graph.nodes)
        weights = [1 + graph.in_degree(a) for a in authors]
        for i in range(posts):
            await ensemble.publish(rng.choices(authors, weights)[0], f"post {i}")
        await drain(stores)  # async fan-out (the default): an in-process worker delivers, wait for it
        reader = max(graph.nodes, key=graph.out_degree)
        pages = await ensemble.pages(reader, limit=10)
        table = Table(title=f"home timeline of user {reader} (follows {graph.out_degree(reader)})")
        for name in pages:
            table.add_column(name)
        for row in zip(*(pages[n] for n in pages), strict=True):
            table.add_row(*(f"{p.id} by {p.author_id}" for p in row))
        console.print(table)
        mismatched = [
            user
            for user in graph.nodes
            if len({tuple(p.id for p in page) for page in (await ensemble.pages(user, 50)).values()}) != 1
        ]
        verdict = "[green]identical pages for every user[/]" if not mismatched else f"[red]differ for {mismatched}[/]"
        console.print(f"oracle over {graph.number_of_nodes()} users: {verdict}")
        if mismatched:
            raise SystemExit(1)
