"""Workload operations sent over HTTP to a service that speaks the ``fanout serve`` API, for the open-loop driver.

One aiohttp session with a bounded keep-alive connection pool; an answer other than the expected status raises
:class:`HttpStatusError`, which the driver counts as an error of that kind. Like the in-process binding it keeps
what the run changed, as the service's answers say: each post's receipt (``published``, with the id and the
``entries_written`` the service reports) and each follow edge that changed (``churn``), so the run can be undone.
Reads are not decoded (the driver measures them; decoding would only add client time); :meth:`home_timeline` reads
a page for the oracle.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

from bench.bindings.operations import http_call, read_pages
from bench.bindings.receipts import Published, net_churn
from bench.workload import READ_KINDS, Op
from targets.service import routes


class HttpStatusError(Exception):
    """The service answered with an unexpected status."""


class HttpContractError(Exception):
    """The service answered with a body the API description does not allow (a field missing or of the wrong type)."""


@dataclass(frozen=True, slots=True)
class PageEntry:
    """One post of a timeline page read over HTTP (what the oracle compares)."""

    id: int
    author_id: int


@dataclass
class HttpTarget:
    """Sends :class:`~bench.workload.Op` to the service: reads, posts, follows and unfollows."""

    base_url: str
    page_size: int = 50
    connections: int = 64
    timeout_s: float = 30.0
    published: list[Published] = field(default_factory=list)
    churn: list[tuple[int, int, int]] = field(default_factory=list)
    session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")

    async def __aenter__(self) -> HttpTarget:
        connector = aiohttp.TCPConnector(limit=self.connections)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        self.session = aiohttp.ClientSession(self.base_url, connector=connector, timeout=timeout)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.session is not None:
            await self.session.close()

    async def __call__(self, op: Op) -> None:
        """Perform one operation and read the whole answer (posts and follow changes are recorded)."""
        assert self.session is not None, "use HttpTarget as an async context manager"
        if op.kind in READ_KINDS:
            await read_pages(op, self.page_size, lambda before: self._page(op, before))
            return
        call = http_call(op, self.page_size)
        began = time.perf_counter()
        async with self.session.request(call.method, call.path, json=call.json) as response:
            body = await response.read()
            acked = time.perf_counter()
            if response.status != call.expected:
                raise HttpStatusError(f"{op.kind} answered {response.status}")
        data = _json_object(body, op.kind)
        if op.kind == "post":
            post_id, written = data.get("id"), data.get("entries_written")
            if not isinstance(post_id, int) or not isinstance(written, int):
                raise HttpContractError(f"post answer without integer id and entries_written: {body[:120]!r}")
            self.published.append(Published(post_id, op.user, began, acked, written, op.seq < 0))
        else:
            changed = data.get("changed")
            if not isinstance(changed, bool):
                raise HttpContractError(f"{op.kind} answer without a boolean changed: {body[:120]!r}")
            if changed:
                assert op.other is not None
                self.churn.append((1 if op.kind == "follow" else -1, op.user, op.other))

    async def _page(self, op: Op, before: int | None) -> tuple[int, int | None]:
        """One page of a read: posts on it and the cursor of the next."""
        assert self.session is not None
        call = http_call(op, self.page_size, before)
        async with self.session.get(call.path) as response:
            body = await response.read()
            if response.status != call.expected:
                raise HttpStatusError(f"{op.kind} answered {response.status}")
        page = _json_object(body, op.kind)
        return len(page["posts"]), page.get("next_before")

    async def revert_churn(self) -> int:
        """Undo the recorded follow changes through the API, edge by edge; returns how many edges were reverted.

        Each edge gets the opposite of its net change (see :func:`~bench.bindings.receipts.net_churn`): concurrent
        requests on one edge may have been answered in another order than the service applied them.
        """
        assert self.session is not None, "use HttpTarget as an async context manager"
        net = net_churn(self.churn)
        self.churn.clear()
        reverted = 0
        for (follower, followee), delta in net.items():
            method = "DELETE" if delta > 0 else "PUT"
            async with self.session.request(method, routes.path(routes.FOLLOWING, follower, followee)) as response:
                await response.read()
                if response.status != 200:
                    raise HttpStatusError(f"{method} following {follower} -> {followee} answered {response.status}")
            reverted += 1
        return reverted

    async def home_timeline(self, user_id: int, limit: int, before: int | None = None) -> list[PageEntry]:
        """One home-timeline page as the service serves it (raises on any answer but 200)."""
        assert self.session is not None, "use HttpTarget as an async context manager"
        query = f"?limit={limit}" + (f"&before={before}" if before is not None else "")
        async with self.session.get(routes.path(routes.TIMELINE, user_id) + query) as response:
            body = await response.read()
            if response.status != 200:
                raise HttpStatusError(f"timeline of {user_id} answered {response.status}")
        posts = _json_object(body, "timeline").get("posts")
        if not isinstance(posts, list):
            raise HttpContractError(f"timeline answer without a posts list: {body[:120]!r}")
        return [PageEntry(int(p["id"]), int(p["author_id"])) for p in posts]

    async def get_json(self, path: str) -> dict[str, Any]:
        """GET one of the service's JSON resources (``/healthz``, ``/metrics``, ``/users/sample``)."""
        assert self.session is not None, "use HttpTarget as an async context manager"
        async with self.session.get(path) as response:
            body = await response.read()
            if response.status != 200:
                raise HttpStatusError(f"GET {path} answered {response.status}: {body[:200]!r}")
        return _json_object(body, path)


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise HttpContractError(f"{what} answer is not JSON: {body[:120]!r}") from None
    if not isinstance(data, dict):
        raise HttpContractError(f"{what} answer is not a JSON object: {body[:120]!r}")
    return data
