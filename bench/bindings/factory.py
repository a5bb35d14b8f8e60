"""The binding a benchmark run drives, chosen in one place: the strategy in this process, or a service over HTTP.

Scenarios and the run only see a :class:`Binding`: the driver's target, the receipts and churn it keeps, the pages the
oracle reads, and what can be observed through it. In process everything can. Over HTTP (``--target URL``) the
service's ``/healthz`` says which strategy, fan-out mode and namespace (on which servers) it serves: when that is the
harness's own namespace the harness reads the same stores (counters, memory, the workers' delivery reports), checks
the service's pages against Postgres and undoes the run's posts; otherwise those are reported as skipped or not
measured, with the reason, and never made up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.bindings.http import HttpTarget
from bench.bindings.inprocess import InProcessTarget
from bench.bindings.receipts import Published
from bench.bindings.service import view_service
from bench.workload import Op
from targets.errors import FanoutError
from targets.stores.connections import Stores
from targets.strategies.registry import keeps_timelines, make_strategy

#: What a run cannot observe through a service in another namespace (or one that is no ``fanout serve``).
FOREIGN_NOT_MEASURED = (
    "delivery_lag",
    "store_counters",
    "memory",
    "spike.redis_memory_growth_bytes",
    "spike.timelines_memory_growth_bytes",
)


class PageSource(Protocol):
    """What the oracle reads: a home-timeline page of posts (anything with an ``id``), newest first."""

    async def home_timeline(self, user_id: int, limit: int, before: int | None = None) -> Sequence[Any]: ...


@dataclass
class Binding:
    """The driver's target for one strategy's run, and what the run can observe through it."""

    #: The async callable the driver drives.
    target: Callable[[Op], Awaitable[None]]
    #: Every post's receipt, in completion order (the target appends to it).
    published: list[Published]
    #: How the measured system delivers posts: "sync", "async", "none" (pull), or "unknown".
    fanout: str
    #: The system's data is the harness's namespace: counters, memory, deliveries and undo come from the stores.
    own_namespace: bool
    #: Pages the oracle compares with Postgres's; None when it cannot run (``oracle_skipped`` says why).
    pages: PageSource | None
    oracle_skipped: str | None = None
    #: Deliveries are timed by the strategy's own write hook (in process) rather than by the fan-out workers.
    write_hook: bool = True
    #: Figures the run cannot observe through this binding (the result names them instead of inventing them).
    not_measured: tuple[str, ...] = ()
    #: The result's ``target`` block (None in process).
    description: dict[str, Any] | None = field(default=None)
    #: The service's client for its own resources (``/metrics``), None in process.
    service: HttpTarget | None = None


@asynccontextmanager
async def open_binding(
    url: str | None,
    name: str,
    stores: Stores,
    page_size: int,
    churn: list[tuple[int, int, int]],
    on_written: Callable[[int, int], None] | None = None,
    connections: int = 64,
) -> AsyncIterator[Binding]:
    """The binding for strategy ``name``: in process when ``url`` is None, else the service at ``url``.

    ``churn`` receives every follow edge the run changes (the caller undoes them); ``on_written`` is the in-process
    strategy's write hook. Raises :class:`FanoutError` (one line, with the fix) when the service does not answer or
    serves another strategy.
    """
    if url is None:
        strategy = make_strategy(name, stores, on_written=on_written)
        target = InProcessTarget(strategy, page_size, churn=churn)
        fanout = stores.settings.fanout_mode if keeps_timelines(name) else "none"
        yield Binding(target, target.published, fanout, True, strategy)
        return
    async with HttpTarget(url, page_size, connections=connections, churn=churn) as http:
        yield await _http_binding(http, name, stores)


async def _http_binding(http: HttpTarget, name: str, stores: Stores) -> Binding:
    view = await view_service(http, stores)
    if view.strategy is not None and view.strategy != name:
        raise FanoutError(
            f"the service at {view.url} serves {view.strategy}, not {name}: pass --strategy {view.strategy}"
        )
    if view.own_namespace:
        # The workers' delivery reports are in the namespace (async); a sync service times its writes itself.
        not_measured: tuple[str, ...] = ("delivery_lag",) if view.fanout == "sync" else ()
    else:
        not_measured = FOREIGN_NOT_MEASURED
        if view.fanout not in ("sync", "none"):  # async entries are written after the answer, out of sight
            not_measured += ("write_amplification",)
    description = {
        "transport": "http",
        "url": view.url,
        "strategy": view.strategy,
        "fanout": view.fanout,
        "namespace": "own" if view.own_namespace else "foreign",
        "namespace_detail": view.detail,
        "not_measured": list(not_measured),
    }
    return Binding(
        http,
        http.published,
        view.fanout,
        view.own_namespace,
        http if view.own_namespace else None,
        oracle_skipped=None if view.own_namespace else f"the service is not on the harness's namespace: {view.detail}",
        write_hook=False,
        not_measured=not_measured,
        description=description,
        service=http,
    )


async def undo_through_api(binding: Binding) -> str:
    """Undo what a run changed in a service of another namespace, as far as its API allows; says what was done.

    Follow changes are reverted over HTTP (emptying the churn list the binding was given); posts stay, since the API
    has no delete and the service's stores are not the harness's.
    """
    reverted = await binding.target.revert_churn() if isinstance(binding.target, HttpTarget) else 0
    return (
        f"{reverted} follow change(s) reverted through the API; {len(binding.published)} post(s) stay in the service "
        "(the API has no delete and its stores are not the harness's)"
    )
