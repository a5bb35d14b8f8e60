"""``fanout demo``: a small end-to-end run of all three strategies with the oracle verdict; ``fanout reset``."""

from __future__ import annotations

import random

import click
import networkx as nx
from rich.console import Console
from rich.table import Table

from bench.cli.options import setting_options, settings_from
from bench.scenarios.ensemble import Ensemble
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
    """Load a small scale-free graph, publish posts, and show one timeline from each strategy."""
    settings = settings_from(ctx)
    run(_demo(settings, users, posts, seed))


async def _demo(settings, users: int, posts: int, seed: int) -> None:  # type: ignore[no-untyped-def]
    console = Console()
    rng = random.Random(seed)
    graph = nx.DiGraph(nx.scale_free_graph(users, seed=seed))
    graph.remove_edges_from(nx.selfloop_edges(graph))
    async with await Stores.connect(settings) as stores:
        await stores.reset()
        await _populate_and_check(stores, console, rng, graph, posts)


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


@click.command()
@click.confirmation_option(prompt="Delete the harness's namespace (its Redis keys and Postgres schema)?")
@click.pass_context
def reset(ctx: click.Context) -> None:
    """Remove everything in the harness's namespace, and nothing else."""

    async def _reset() -> None:
        async with await Stores.connect(settings_from(ctx)) as stores:
            await stores.reset()

    run(_reset())
    click.echo("namespace reset")
