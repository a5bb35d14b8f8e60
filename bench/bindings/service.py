"""What a service behind ``fanout bench --target URL`` says about itself, and what the run may do with it.

``/healthz`` names the strategy, the fan-out mode and (for a ``fanout serve``) the namespace and the server instances
that hold it; comparing that with the harness's own stores says whether the service's data is the harness's (then
the graph is read, loaded and undone through the stores) or foreign (then the graph is what ``/users/sample`` lists,
nothing is loaded into it, and what the stores would tell is not measured).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.bindings.http import HttpContractError, HttpStatusError, HttpTarget
from graphs.info import GraphInfo, graph_info
from targets.errors import FanoutError
from targets.service import routes
from targets.stores.connections import Stores
from targets.stores.identity import NamespaceIdentity, namespace_identity

#: Users asked of a foreign service's ``/users/sample`` (its upper bound): the workload runs over them.
SAMPLE_USERS = 100_000
#: How long to wait for a service's own count of deliveries to settle after the load (it flushes about once a second).
SETTLE_S = 30.0
#: Longer than the flush interval, so counts that stay put between two polls have settled.
SETTLE_POLL_S = 1.2


@dataclass(frozen=True)
class ServiceView:
    """What the service at ``url`` serves, as its ``/healthz`` says, compared with the harness's namespace."""

    url: str
    #: None when the service does not say.
    strategy: str | None
    #: "sync", "async", "none" (pull) or "unknown".
    fanout: str
    own_namespace: bool
    #: In words: the namespace served, or why it is not the harness's.
    detail: str


async def view_service(http: HttpTarget, stores: Stores) -> ServiceView:
    """Ask the service what it serves (one line naming the URL and the fix when it does not answer)."""
    health = await service_health(http)
    theirs = NamespaceIdentity.from_json(health.get("namespace"))
    mine = await namespace_identity(stores)
    own = theirs == mine
    detail = f"{mine.prefix} / {mine.schema} on the harness's own servers" if own else foreign_reason(theirs, mine)
    strategy = health.get("strategy")
    return ServiceView(
        http.base_url,
        str(strategy) if strategy is not None else None,
        str(health.get("fanout") or "unknown"),
        own,
        detail,
    )


async def service_health(http: HttpTarget) -> dict[str, Any]:
    """The service's ``/healthz``, or one line naming the URL and the fix."""
    try:
        return await http.get_json(routes.HEALTHZ)
    except (aiohttp.ClientError, OSError, TimeoutError, HttpStatusError, HttpContractError) as exc:
        raise FanoutError(
            f"the service does not answer at {http.base_url}{routes.HEALTHZ} ({type(exc).__name__}: {exc}): "
            "start it (`fanout serve`) or pass another --target"
        ) from None


def foreign_reason(theirs: NamespaceIdentity | None, mine: NamespaceIdentity) -> str:
    """Why a service's namespace is not the harness's, in words."""
    if theirs is None:
        return "its /healthz names no namespace (not a fanout serve)"
    if (theirs.prefix, theirs.schema) != (mine.prefix, mine.schema):
        return f"it serves {theirs.prefix} / {theirs.schema}, the harness uses {mine.prefix} / {mine.schema}"
    return "same prefix and schema, but on other servers (Redis run_id or PostgreSQL instance differ)"


async def check_target(
    url: str, strategies: tuple[str, ...], stores: Stores, *, loads: bool
) -> tuple[tuple[str, ...], ServiceView]:
    """The strategies a ``--target`` run measures (the one the service serves; ``()`` asks for it), and the service.

    Fails as one line (with the fix) when the service does not answer, serves another strategy, more than one is
    asked for, or a graph would be loaded into the harness's namespace while the service serves another.
    """
    async with HttpTarget(url) as http:
        view = await view_service(http, stores)
    if not strategies:
        if view.strategy is None:
            raise FanoutError(f"the service at {url} does not say which strategy it serves: pass --strategy NAME")
        strategies = (view.strategy,)
    if len(strategies) > 1:
        raise FanoutError(f"a service serves one strategy, not {', '.join(strategies)}: pass --strategy NAME")
    if view.strategy is not None and strategies != (view.strategy,):
        raise FanoutError(
            f"the service at {url} serves {view.strategy}, not {strategies[0]}: pass --strategy {view.strategy}"
        )
    if loads and not view.own_namespace:
        raise FanoutError(
            f"--graph/--users load into the harness's namespace, but the service at {url} serves another "
            f"({view.detail}): load its graph there, or run it on the harness's namespace"
        )
    return strategies, view


async def target_graph(url: str | None, stores: Stores) -> GraphInfo:
    """The graph the run's workload covers: the stores' when they are the target's, else ``/users/sample``'s.

    A foreign service's sample lists users with follower and followee counts; its follows are counted over the
    sample and its posts are unknown (None).
    """
    if url is None:
        return await graph_info(stores)
    async with HttpTarget(url) as http:
        if (await view_service(http, stores)).own_namespace:
            return await graph_info(stores)
        try:
            data = await http.get_json(f"{routes.SAMPLE}?n={SAMPLE_USERS}&top=0")
            users, followers, followees = data["users"], data["followers"], data["followees"]
        except (aiohttp.ClientError, OSError, TimeoutError, HttpStatusError, HttpContractError, KeyError) as exc:
            raise FanoutError(
                f"the service at {url} lists no users ({routes.SAMPLE}: {exc}): load a graph into it"
            ) from None
    order = sorted(range(len(users)), key=users.__getitem__)
    return GraphInfo(
        [int(users[i]) for i in order],
        [int(followers[i]) for i in order],
        [int(followees[i]) for i in order],
        sum(int(f) for f in followees),
        None,  # a foreign service's post count is not observable
    )


async def service_counters(http: HttpTarget) -> dict[str, int] | None:
    """The counters of the service's ``/metrics`` (None when it has none: the API does not require them)."""
    try:
        counters = (await http.get_json(routes.METRICS)).get("counters")
    except (aiohttp.ClientError, OSError, TimeoutError, HttpStatusError, HttpContractError):
        return None
    if not isinstance(counters, dict):
        return None
    return {str(k): v for k, v in counters.items() if isinstance(v, int)}


async def counted_by_service(
    http: HttpTarget, before: dict[str, int] | None, settle_s: float = SETTLE_S
) -> dict[str, Any] | None:
    """What the service itself counted since ``before`` (every client's requests): counter deltas and its write
    amplification (entries written per post, as its ``/metrics`` computes it).

    With asynchronous fan-out the service counts entries as its workers' reports complete, so this polls until every
    post it counted is delivered or the counts stop moving, within ``settle_s``; ``all_delivered`` says which.
    """
    if before is None:
        return None
    deadline = time.monotonic() + settle_s
    previous: dict[str, int] | None = None
    while True:
        now = await service_counters(http)
        if now is None:
            return None
        delta = {k: v - before.get(k, 0) for k, v in now.items()}
        delivered = delta.get("posts_delivered", 0) >= delta.get("posts", 0)
        if delivered or delta == previous or time.monotonic() >= deadline:
            break
        previous = delta
        await asyncio.sleep(SETTLE_POLL_S)  # the service flushes its counts about once a second
    posts = delta.get("posts", 0)
    return {
        **delta,
        "write_amplification": round(delta.get("entries_written", 0) / posts, 3) if posts else None,
        "all_delivered": delivered,
    }
