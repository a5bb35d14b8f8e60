"""Helpers for tests of the HTTP service and Locust: a small follower graph in the session's namespace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import networkx as nx
import pytest

from bench.service_process import ServiceProcess
from targets.config import Settings
from targets.fanout.worker import drain
from targets.stores.connections import Stores
from targets.stores.postgres import Social
from tests.conftest import SESSION_TAG, namespace_settings


def service_namespace(**changes: object) -> Settings:
    """The session's namespace family, but apart from the ``stores`` fixture's (which resets it per test), so a
    service can keep serving a loaded graph for a whole test module."""
    return namespace_settings(prefix=f"fanout_{SESSION_TAG}_svc:", schema=f"fanout_{SESSION_TAG}_svc", **changes)


def small_graph(users: int = 150, seed: int = 1) -> nx.DiGraph:
    """A scale-free follow graph without self loops; an edge u -> v reads "u follows v"."""
    graph = nx.DiGraph(nx.scale_free_graph(users, seed=seed))
    graph.remove_edges_from(nx.selfloop_edges(graph))
    return graph


async def load_graph(settings: Settings, graph: nx.DiGraph) -> None:
    """Reset the namespace and load the graph's users and follows (no posts yet, so no derived state)."""
    async with await Stores.connect(settings) as stores:
        await stores.reset()
        social = Social(stores.pg, "0")  # never publishes: the id default is unused
        await social.add_users(list(graph.nodes))
        for follower, followee in graph.edges:
            await social.follow(follower, followee)


async def drop_namespace(settings: Settings) -> None:
    """Remove the namespace's keys and schema."""
    async with await Stores.connect(settings, create=False) as stores:
        await stores.drop()


@pytest.fixture(scope="module")
def served_graph() -> nx.DiGraph:
    """The graph the module's service serves."""
    return small_graph(150, seed=3)


@pytest.fixture(scope="module")
def served(served_graph: nx.DiGraph) -> Iterator[ServiceProcess]:
    """``fanout serve --strategy push`` (async fan-out, in-process worker) over :func:`service_namespace`."""
    settings = service_namespace()
    asyncio.run(load_graph(settings, served_graph))
    try:
        with ServiceProcess(settings, "push") as service:
            yield service
    finally:
        asyncio.run(drop_namespace(settings))


async def drain_namespace(settings: Settings) -> None:
    """Wait until the namespace's fan-out queue is empty."""
    async with await Stores.connect(settings, create=False) as stores:
        await drain(stores, 30)
