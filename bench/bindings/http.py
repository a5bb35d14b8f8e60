"""Workload operations sent to the HTTP timeline service (``fanout serve``), as a target for the open-loop driver.

One aiohttp session with a bounded keep-alive connection pool; an answer other than the expected status raises
:class:`HttpStatusError`, which the driver counts as an error of that kind.
"""

from __future__ import annotations

from types import TracebackType

import aiohttp

from bench.workload import Op


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
        if op.kind == "read":
            request = self.session.get(f"/users/{op.user}/timeline", params={"limit": self.page_size})
            expected = 200
        elif op.kind == "post":
            request = self.session.post(f"/users/{op.user}/posts", json={"body": f"post {op.seq} by {op.user}"})
            expected = 201
        elif op.kind == "follow":
            request, expected = self.session.put(f"/users/{op.user}/following/{op.other}"), 200
        else:
            request, expected = self.session.delete(f"/users/{op.user}/following/{op.other}"), 200
        async with request as response:
            await response.read()
            if response.status != expected:
                raise HttpStatusError(f"{op.kind} answered {response.status}")
