"""The HTTP timeline service: one strategy (push, pull or hybrid) behind a small JSON API, on Starlette and uvicorn.

Locust runs on gevent, where asyncpg and redis.asyncio cannot, so Locust (and the HTTP mode of the driver) reach
the targets through this service, as the load test of a real feed service would. Each uvicorn worker process opens
its own store pools in the lifespan; counters and histograms are shared through Redis (:mod:`targets.service.metrics`).

Routes (see :data:`targets.service.openapi.OPENAPI`, served at ``/openapi.json``)::

    GET    /users/{id}/timeline?limit=&before=    home timeline page
    POST   /users/{id}/posts                      {"body": "..."} -> the new post
    PUT    /users/{id}/following/{other}          follow
    DELETE /users/{id}/following/{other}          unfollow
    GET    /users/sample?n=&top=&seed=            user ids and follower counts from the loaded graph
    GET    /healthz, GET /metrics, DELETE /metrics, GET /openapi.json

Every client mistake is a 4xx with a JSON body ``{"error": "...", "status": N}``, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from targets.config import Settings
from targets.errors import DeliveryFailed, FanoutError, InvalidOperation, StoreUnavailable, UnknownUser
from targets.fanout.worker import Worker, running_worker
from targets.ids import MAX_USER_ID
from targets.service import routes
from targets.service.delivery import DeliveryTracker
from targets.service.metrics import ServiceMetrics
from targets.service.openapi import OPENAPI
from targets.stores.connections import Stores
from targets.stores.failures import LOST_STORE
from targets.stores.identity import namespace_identity
from targets.stores.postgres import Post
from targets.stores.recovery import rebuild_if_lost
from targets.strategies.base import DEFAULT_PAGE, Strategy
from targets.strategies.registry import STRATEGIES, keeps_timelines, make_strategy, timeline_owners

log = logging.getLogger("fanout.service")

#: Environment variable carrying the :class:`ServiceConfig` to uvicorn's worker processes (JSON).
SERVICE_CONFIG_VAR = "FANOUT_SERVICE_CONFIG"
MAX_REQUEST_BYTES = 16 * 1024
MAX_POST_CHARS = 2_000
#: The header that makes a publish safe to retry (IETF draft-ietf-httpapi-idempotency-key-header), and its bound.
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
MAX_SAMPLE = 100_000
MAX_TOP = 1_000
FLUSH_INTERVAL_S = 1.0

_INT_RE = re.compile(r"^-?[0-9]+$")
_MAX_DIGITS = 19


@dataclass(frozen=True)
class ServiceConfig:
    """What one service runs: the stores and namespace, and the strategy behind the API."""

    settings: Settings
    strategy: str = "push"
    #: With asynchronous fan-out, run a fan-out worker inside each service process (else run `fanout worker`).
    worker: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")

    def to_env(self) -> str:
        """The config as JSON, for :data:`SERVICE_CONFIG_VAR`."""
        return json.dumps({"strategy": self.strategy, "worker": self.worker, "settings": asdict(self.settings)})

    @classmethod
    def from_env(cls) -> ServiceConfig:
        """The config from :data:`SERVICE_CONFIG_VAR`, else from the ``FANOUT_*`` variables with push."""
        raw = os.environ.get(SERVICE_CONFIG_VAR)
        if not raw:
            return cls(Settings.from_env())
        data = json.loads(raw)
        return cls(Settings(**data["settings"]), data["strategy"], data.get("worker", True))


class Problem(Exception):
    """A request the service refuses, answered with ``status`` and a message naming the problem and the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Service:
    """Per-process state: the stores, the strategy, the metrics, and (async fan-out) the posts awaiting delivery."""

    stores: Stores
    strategy: Strategy
    metrics: ServiceMetrics
    delivery: DeliveryTracker | None = None
    #: The in-process fan-out worker, when there is one (its ``state`` makes /healthz ok or not).
    fanout_worker: Worker | None = None

    async def collect(self) -> None:
        """Account for completed deliveries, then send this process's numbers to Redis."""
        if self.delivery is not None:
            await self.delivery.collect()
        await self.metrics.flush()


def _svc(request: Request) -> Service:
    return request.app.state.service


# -- parsing ----------------------------------------------------------------------------------------------------
def _parse_int(raw: str, what: str) -> int:
    if not _INT_RE.match(raw):
        raise Problem(400, f"{what} {raw[:40]!r} is not an integer: pass a whole number")
    if len(raw.lstrip("-")) > _MAX_DIGITS:
        raise Problem(400, f"{what} {raw[:24]}... is out of range: pass a number of at most {_MAX_DIGITS} digits")
    return int(raw)


def _path_id(request: Request, name: str) -> int:
    value = _parse_int(request.path_params[name], "user id")
    if not 0 <= value <= MAX_USER_ID:
        raise Problem(400, f"user id {value} is out of range: ids are integers from 0 to {MAX_USER_ID}")
    return value


def _query_int(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw == "":
        raise Problem(400, f"{name} is empty: pass a whole number or leave {name} out")
    return _parse_int(raw, name)


async def _json_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, refusing anything over :data:`MAX_REQUEST_BYTES` without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise Problem(413, f"request body of {declared} bytes is over the {MAX_REQUEST_BYTES}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise Problem(413, f"request body is over the {MAX_REQUEST_BYTES}-byte limit")
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Problem(400, f'request body is not valid JSON ({exc}): send {{"body": "..."}}') from None
    except RecursionError:  # the decoder's nesting limit (about 1,000 levels), not a server fault
        raise Problem(400, 'request body is nested too deeply: send {"body": "..."}') from None
    if not isinstance(data, dict):
        raise Problem(400, 'request body must be a JSON object: send {"body": "..."}')
    return data


def _post_text(data: dict[str, Any]) -> str:
    body = data.get("body")
    if not isinstance(body, str) or not body:
        raise Problem(400, 'the post needs a non-empty string field "body": send {"body": "..."}')
    if len(body) > MAX_POST_CHARS:
        raise Problem(413, f"the post has {len(body)} characters, over the limit of {MAX_POST_CHARS}")
    if "\x00" in body:
        raise Problem(400, "the post contains a NUL character, which cannot be stored: remove it")
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(400, "the post contains an unpaired surrogate (invalid Unicode): send valid UTF-8 text") from None
    return body


def _post_json(post: Post) -> dict[str, Any]:
    return {"id": post.id, "author_id": post.author_id, "created_at": post.created_at.isoformat(), "body": post.body}


# -- handlers ---------------------------------------------------------------------------------------------------
async def timeline(request: Request) -> Response:
    """GET /users/{id}/timeline: one home-timeline page, newest first."""
    return await _page(request, _svc(request).strategy.home_timeline)


async def user_posts(request: Request) -> Response:
    """GET /users/{id}/posts: one page of the account's own posts (its user timeline), newest first."""
    return await _page(request, _svc(request).strategy.user_timeline)


async def _page(request: Request, read: Callable[[int, int, int | None], Awaitable[list[Post]]]) -> Response:
    """One page of ``read`` for the path's user (``limit``, ``before`` from the query), timed as a read."""
    user_id = _path_id(request, "user_id")
    limit = _query_int(request, "limit", DEFAULT_PAGE)
    before = _query_int(request, "before", None)
    svc = _svc(request)
    started = time.perf_counter()
    posts = await read(user_id, limit, before)  # type: ignore[arg-type]
    svc.metrics.record("read", time.perf_counter() - started)
    svc.metrics.count("reads")
    return JSONResponse(
        {"user_id": user_id, "posts": [_post_json(p) for p in posts], "next_before": posts[-1].id if posts else None}
    )


async def publish(request: Request) -> Response:
    """POST /users/{id}/posts: store a post and deliver it as the strategy does.

    With an ``Idempotency-Key`` header a retry stores nothing new: it answers with the post stored the first time
    (``Idempotent-Replayed: true``) and delivers it again, completing a delivery that had failed.
    """
    user_id = _path_id(request, "user_id")
    key = _idempotency_key(request)
    body = _post_text(await _json_body(request))
    svc = _svc(request)
    started = time.perf_counter()
    receipt = await svc.strategy.publish(user_id, body, key=key)
    elapsed = time.perf_counter() - started
    svc.metrics.record("publish", elapsed)
    svc.metrics.count("posts")
    if svc.delivery is not None:
        svc.delivery.published(receipt.post.id)  # the workers deliver it; their report is read later
    else:
        # Synchronous fan-out (or none, for pull): delivered to every follower before the acknowledgement.
        svc.metrics.count("posts_delivered")
        svc.metrics.count("entries_written", receipt.entries_written)
        if receipt.entries_written:
            svc.metrics.record("fanout", elapsed)
    headers = {"Idempotent-Replayed": "true"} if receipt.replayed else None
    return JSONResponse(
        {**_post_json(receipt.post), "entries_written": receipt.entries_written}, status_code=201, headers=headers
    )


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_CHARS or not all(" " <= c <= "~" for c in key):
        raise Problem(
            400,
            f"the {IDEMPOTENCY_HEADER} header must be 1 to {MAX_KEY_CHARS} printable ASCII characters: send a UUID",
        )
    return key


async def follow(request: Request) -> Response:
    """PUT /users/{id}/following/{other}: follow (idempotent)."""
    return await _change_follow(request, following=True)


async def unfollow(request: Request) -> Response:
    """DELETE /users/{id}/following/{other}: unfollow (idempotent)."""
    return await _change_follow(request, following=False)


async def _change_follow(request: Request, *, following: bool) -> Response:
    follower, followee = _path_id(request, "user_id"), _path_id(request, "other_id")
    svc = _svc(request)
    if following:
        changed = await svc.strategy.follow(follower, followee)
    else:
        changed = await svc.strategy.unfollow(follower, followee)
    svc.metrics.count("follows" if following else "unfollows")
    return JSONResponse({"follower": follower, "followee": followee, "following": following, "changed": changed})


async def sample_users(request: Request) -> Response:
    """GET /users/sample: up to ``n`` users with follower and followee counts (all users when the graph is smaller),
    and the ``top`` most followed."""
    n = _query_int(request, "n", 10_000)
    top = _query_int(request, "top", 10)
    seed = _query_int(request, "seed", 0)
    if not 1 <= n <= MAX_SAMPLE:  # type: ignore[operator]
        raise Problem(400, f"n={n} is outside 1..{MAX_SAMPLE}: ask for fewer users")
    if not 0 <= top <= MAX_TOP:  # type: ignore[operator]
        raise Problem(400, f"top={top} is outside 0..{MAX_TOP}")
    if not -MAX_USER_ID - 1 <= seed <= MAX_USER_ID:  # type: ignore[operator]
        raise Problem(400, f"seed={seed} is outside the int64 range")
    social = _svc(request).stores.social
    total = await social.user_count()
    sample = await social.sample_users(n, seed)  # type: ignore[arg-type]
    top_users = await social.most_followed(top)  # type: ignore[arg-type]
    return JSONResponse(
        {
            "total": total,
            "users": sample.ids,
            "followers": sample.followers,
            "followees": sample.followees,
            "top": [{"id": user, "followers": followers} for user, followers in top_users],
        }
    )


async def healthz(request: Request) -> Response:
    """GET /healthz: both stores answer and the in-process fan-out worker (if any) delivers; the strategy, its fan-out
    mode and the namespace (on which servers) served.

    A worker that is reconnecting to a store, has stopped or has failed makes it a 503 with status "degraded": posts
    are accepted but not delivered meanwhile. ``fanout bench --target`` compares the namespace with its own to know
    whether it may inspect and undo the data.
    """
    svc = _svc(request)
    await svc.stores.redis.ping()
    await svc.stores.social.ping()
    worker = svc.fanout_worker
    healthy = worker is None or worker.state in ("starting", "running")
    body: dict[str, Any] = {
        "status": "ok" if healthy else "degraded",
        "strategy": svc.strategy.name,
        "fanout": _fanout_mode(svc),
        "namespace": (await namespace_identity(svc.stores)).to_json(),
    }
    if worker is not None:
        body["worker"] = {"state": worker.state, "reconnects": worker.counts.reconnects}
        if worker.failure:
            body["worker"]["failure"] = worker.failure
    return JSONResponse(body, status_code=200 if healthy else 503)


def _fanout_mode(svc: Service) -> str:
    return svc.strategy.settings.fanout_mode if keeps_timelines(svc.strategy.name) else "none"


async def metrics(request: Request) -> Response:
    """GET /metrics: counters, write amplification, latency percentiles and Redis memory, over all processes."""
    svc = _svc(request)
    if svc.delivery is not None:
        await svc.delivery.collect()
    snapshot = await svc.metrics.snapshot()
    fanout = {
        "mode": _fanout_mode(svc),
        "in_process_worker": svc.fanout_worker is not None,
        "worker_state": svc.fanout_worker.state if svc.fanout_worker else None,
        "pending_in_this_process": len(svc.delivery.pending) if svc.delivery else 0,
    }
    return JSONResponse({"strategy": svc.strategy.name, "time": time.time(), "fanout": fanout, **snapshot})


async def reset_metrics(request: Request) -> Response:
    """DELETE /metrics: start counting from zero (for every process of the service)."""
    await _svc(request).metrics.reset()
    return JSONResponse({"reset": True})


async def openapi(request: Request) -> Response:
    """GET /openapi.json: the API description."""
    return JSONResponse(OPENAPI)


# -- errors -----------------------------------------------------------------------------------------------------
def _error(request: Request, status: int, message: str) -> JSONResponse:
    service = getattr(request.app.state, "service", None)
    if service is not None:
        service.metrics.count("server_errors" if status >= 500 else "client_errors")
    return JSONResponse({"error": message, "status": status}, status_code=status)


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return _error(request, exc.status, str(exc))


async def _on_fanout_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, UnknownUser):
        status = 404
    elif isinstance(exc, InvalidOperation):
        status = 422
    elif isinstance(exc, StoreUnavailable | DeliveryFailed):
        status = 503
    else:
        status = 400
    return _error(request, status, str(exc))


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}: see /openapi.json"
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        message = f"{request.method} is not allowed on {request.url.path}: use {', '.join(allowed)}"
    else:
        message = str(exc.detail)
    response = _error(request, exc.status_code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(allowed)
    return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (Starlette's own Allow names only the first route's)."""
    matching = (r for r in request.app.routes if isinstance(r, Route) and r.matches(request.scope)[0] != Match.NONE)
    return sorted({method for route in matching for method in route.methods or ()})


async def _on_store_error(request: Request, exc: Exception) -> Response:
    log.warning("store error on %s %s: %s", request.method, request.url.path, exc)
    return _error(request, 503, f"a store did not answer ({type(exc).__name__}: {exc}); retry later")


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after answering, so uvicorn logs the traceback.
    return _error(request, 500, f"internal error ({type(exc).__name__}); see the service log")


# -- the app ----------------------------------------------------------------------------------------------------
async def _flush_every(service: Service, interval: float) -> None:
    """Send the metrics, and rebuild the derived state whenever Redis lost it (a restart without its data)."""
    owners = timeline_owners([service.strategy.name])
    while True:
        await asyncio.sleep(interval)
        try:
            await service.collect()
            rebuilt = await rebuild_if_lost(service.stores, owners)
            if rebuilt is not None:
                log.warning(
                    "Redis had lost the derived state: rebuilt %s timeline entries from Postgres in %.1fs",
                    f"{rebuilt.timeline_entries:,}",
                    rebuilt.seconds,
                )
        except (RedisError, *LOST_STORE) as exc:  # keep serving; retry at the next tick
            log.warning("metrics flush or state check failed: %s", exc)


def create_app(config: ServiceConfig) -> Starlette:
    """The ASGI app for one strategy; stores connect in the lifespan (one pool per worker process)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            stores = await Stores.connect(config.settings)
            stack.push_async_callback(stores.close)
            strategy = make_strategy(config.strategy, stores)
            service_metrics = ServiceMetrics(stores.redis, config.settings.prefix, strategy.name)
            service = Service(stores, strategy, service_metrics)
            if keeps_timelines(strategy.name) and config.settings.fanout_mode == "async":
                service.delivery = DeliveryTracker(stores, strategy.name, service_metrics)
                if config.worker:
                    service.fanout_worker = await stack.enter_async_context(running_worker(stores))
            app.state.service = service
            flusher = asyncio.create_task(_flush_every(service, FLUSH_INTERVAL_S))
            try:
                yield
            finally:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
                with contextlib.suppress(RedisError, OSError):
                    await service.collect()

    table = [
        Route(routes.SAMPLE, sample_users, methods=["GET"]),
        Route(routes.TIMELINE, timeline, methods=["GET"]),
        Route(routes.POSTS, user_posts, methods=["GET"]),
        Route(routes.POSTS, publish, methods=["POST"]),
        Route(routes.FOLLOWING, follow, methods=["PUT"]),
        Route(routes.FOLLOWING, unfollow, methods=["DELETE"]),
        Route(routes.HEALTHZ, healthz, methods=["GET"]),
        Route(routes.METRICS, metrics, methods=["GET"]),
        Route(routes.METRICS, reset_metrics, methods=["DELETE"]),
        Route(routes.OPENAPI, openapi, methods=["GET"]),
    ]
    handlers: dict[Any, Any] = {
        Problem: _on_problem,
        FanoutError: _on_fanout_error,
        HTTPException: _on_http_exception,
        RedisError: _on_store_error,
        asyncpg.PostgresConnectionError: _on_store_error,
        asyncpg.InterfaceError: _on_store_error,
        OSError: _on_store_error,
        Exception: _on_unexpected,
    }
    return Starlette(routes=table, lifespan=lifespan, exception_handlers=handlers)


def create_app_from_env() -> Starlette:
    """uvicorn factory (``targets.service.app:create_app_from_env``): the app for :data:`SERVICE_CONFIG_VAR`."""
    return create_app(ServiceConfig.from_env())
