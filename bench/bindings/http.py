"""Workload operations sent over HTTP to a service that speaks the ``fanout serve`` API, for the open-loop driver.

One aiohttp session with a bounded keep-alive connection pool; an answer other than the expected status raises
:class:`HttpStatusError`, which the driver counts as an error of that kind.
"""

from __future__ import annotations

from types import TracebackType

import aiohttp

from bench.bindings.operations import http_call, read_pages
from bench.workload import READ_KINDS, Op


class HttpStatusError(Exception):
    """The service answered with an unexpected status."""


class HttpTarget:
    """Sends :class:`~bench.workload.Op` to the service: reads, posts, follows and unfollows."""

    def __init__(self, base_url: str, page_size: int = 50, connections: int = 64, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self.connections = connections
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpTarget:
        connector = aiohttp.TCPConnector(limit=self.connections)
        self.session = aiohttp.ClientSession(self.base_url, connector=connector, timeout=self.timeout)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.session is not None:
            await self.session.close()

    async def __call__(self, op: Op) -> None:
        """Perform one operation and read the whole answer."""
        assert self.session is not None, "use HttpTarget as an async context manager"
        if op.kind in READ_KINDS:
            await read_pages(op, self.page_size, lambda before: self._page(op, before))
            return
        call = http_call(op, self.page_size)
        async with self.session.request(call.method, call.path, json=call.json) as response:
            await response.read()
            if response.status != call.expected:
                raise HttpStatusError(f"{op.kind} answered {response.status}")

    async def _page(self, op: Op, before: int | None) -> tuple[int, int | None]:
        """One page of a read: posts on it and the cursor of the next."""
        assert self.session is not None
        call = http_call(op, self.page_size, before)
        async with self.session.get(call.path) as response:
            if response.status != call.expected:
                await response.read()
                raise HttpStatusError(f"{op.kind} answered {response.status}")
            page = await response.json()
        return len(page["posts"]), page["next_before"]
