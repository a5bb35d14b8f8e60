"""What every transport agrees on about a workload operation: the post body it publishes, and the HTTP call it is.

The in-process binding calls the strategy; the HTTP bindings (the open-loop driver's aiohttp target and Locust's
user) send :func:`http_call`'s request. One definition each, so every way of driving a target sends the same thing.
A read of several pages is one request per page, each ``before`` the last post of the previous page
(:func:`read_pages` walks them for every transport).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.workload import KINDS, READ_KINDS, Op
from targets.service import routes
from targets.stores.mentions import mentioned_ids

#: Text that pads a post body to its size (ASCII: one byte per character).
_FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore " * 21


def post_body(op: Op) -> str:
    """The body of the post a ``post`` operation publishes: exactly ``op.body_bytes`` bytes when that is set.

    Mentions come first (``@<id>`` each), so the size cuts the filler, not them; a size too small for all of them
    keeps those that fit whole (:class:`Tally` counts the mentions each body really holds).
    """
    head = "".join(f"@{user} " for user in op.mentions) + f"bench post {op.seq} by {op.user}"
    if not op.body_bytes:
        return head
    body = (head + " " + _FILLER)[: op.body_bytes]
    if len(body) < len(head) and not body.endswith(" "):
        body = body[: body.rfind(" ") + 1].ljust(op.body_bytes, "-")  # no mention cut to another user's id
    return body


async def read_pages(op: Op, page_size: int, fetch: Callable[[int | None], Awaitable[tuple[int, int | None]]]) -> int:
    """Read ``op.pages`` pages with ``fetch(before) -> (posts on the page, next before)``; returns pages read.

    Stops early at the end of the timeline (a page shorter than ``page_size``, or no cursor to follow).
    """
    before: int | None = None
    page = 0
    while True:
        page += 1
        count, before = await fetch(before)
        if not another_page(op, page, count, before, page_size):
            return page


def another_page(op: Op, read: int, count: int, next_before: int | None, page_size: int) -> bool:
    """Whether a read that has read ``read`` pages, the last with ``count`` posts, goes on to the next one."""
    return read < op.pages and count >= page_size and next_before is not None


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


def http_call(op: Op, page_size: int, before: int | None = None) -> HttpCall:
    """The request that performs ``op``; for a read, the page of ``page_size`` posts below ``before``.

    Every page of a read is one such call, ``before`` the previous answer's ``next_before`` (see :func:`read_pages`).
    """
    if op.kind in ("read", "user_timeline"):
        query = f"?limit={page_size}" + (f"&before={before}" if before is not None else "")
        template = routes.TIMELINE if op.kind == "read" else routes.POSTS
        return _call("GET", template, op, 200, query=query)
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


class Tally:
    """Counts what a stream of operations asked for: operations by kind, pages per read, post body sizes.

    Wraps a source of operations (``Tally(workload.next_op)`` is one too), so it counts exactly what the driver
    issued, whatever the transport; :meth:`summary` is the result's ``workload`` block.
    """

    def __init__(self, source: Callable[[], Op]) -> None:
        self.source = source
        self.kinds: Counter[str] = Counter()
        self.pages: Counter[int] = Counter()
        self.body_bytes: list[int] = []
        self.mentions: list[int] = []
        self.returning = 0

    def __call__(self) -> Op:
        op = self.source()
        self.kinds[op.kind] += 1
        if op.kind in READ_KINDS:
            self.pages[op.pages] += 1
            self.returning += op.returning
        elif op.kind == "post":
            body = post_body(op)
            self.body_bytes.append(len(body.encode()))
            self.mentions.append(len(mentioned_ids(body)))
        return op

    def summary(self) -> dict[str, Any]:
        """Operations by kind, the share of each kind of read, reads by pages asked for, body sizes (bytes) and the
        mentions the bodies hold."""
        reads = sum(self.kinds[k] for k in READ_KINDS)
        sizes = self.body_bytes
        return {
            "operations": {kind: self.kinds[kind] for kind in KINDS},
            "read_mix": {k: round(self.kinds[k] / reads, 6) if reads else 0.0 for k in READ_KINDS},
            "read_pages": {str(depth): n for depth, n in sorted(self.pages.items())},
            "body_bytes": {
                "count": len(sizes),
                "min": min(sizes, default=None),
                "mean": round(sum(sizes) / len(sizes), 3) if sizes else None,
                "max": max(sizes, default=None),
            },
            "returning_first_reads": self.returning,
            "mentions": {
                "posts_with": sum(1 for n in self.mentions if n),
                "total": sum(self.mentions),
                "max": max(self.mentions, default=0),
            },
        }
