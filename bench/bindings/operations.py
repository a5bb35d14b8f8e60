"""What every transport agrees on about a workload operation: the post body it publishes, and the HTTP call it is.

The in-process binding calls the strategy; the HTTP bindings (the open-loop driver's aiohttp target and Locust's
user) send :func:`http_call`'s request. One definition each, so every way of driving a target sends the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.workload import Op
from targets.service import routes


def post_body(op: Op) -> str:
    """The body of the post a ``post`` operation publishes."""
    return f"bench post {op.seq} by {op.user}"


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One operation as an HTTP request to a service that speaks the ``fanout serve`` API."""

    method: str
    #: The path with its query string.
    path: str
    #: The route's name with ids folded (``GET /users/[id]/timeline``), for per-route statistics.
    name: str
    #: The status a successful call answers.
    expected: int
    json: dict[str, Any] | None = None


def http_call(op: Op, page_size: int) -> HttpCall:
    """The request that performs ``op`` (a read asks for a first page of ``page_size`` posts)."""
    if op.kind == "read":
        return _call("GET", routes.TIMELINE, op, 200, query=f"?limit={page_size}")
    if op.kind == "post":
        return _call("POST", routes.POSTS, op, 201, json={"body": post_body(op)})
    if op.kind == "follow":
        return _call("PUT", routes.FOLLOWING, op, 200)
    if op.kind == "unfollow":
        return _call("DELETE", routes.FOLLOWING, op, 200)
    raise ValueError(f"unknown operation kind {op.kind!r}")  # pragma: no cover - the workload makes only these


def _call(
    method: str, template: str, op: Op, expected: int, *, query: str = "", json: dict[str, Any] | None = None
) -> HttpCall:
    path = routes.path(template, op.user, op.other) + query
    return HttpCall(method, path, routes.request_name(method, template), expected, json)
