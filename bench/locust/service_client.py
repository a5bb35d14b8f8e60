"""A small synchronous client for the HTTP timeline service's control routes (users, health, metrics).

Used from Locust (gevent patches ``requests``' sockets, so these calls yield like any other) and from tests. The
load itself goes through Locust's FastHttpUser, not through this client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from targets.service import routes

DEFAULT_TIMEOUT_S = 5.0


class ServiceError(RuntimeError):
    """The service did not answer, or answered with an error."""


@dataclass(frozen=True)
class UserSample:
    """Users of the loaded graph as the service reports them: ids with follower and followee counts, and the most
    followed (id, followers)."""

    total: int
    users: list[int]
    followers: list[int]
    followees: list[int]
    top: list[tuple[int, int]]


class ServiceClient:
    """Control-plane calls to a running ``fanout serve``."""

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, method: str, path: str, **params: Any) -> Any:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, params=params or None, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ServiceError(f"the service does not answer at {url} ({exc}): start it with `fanout serve`") from None
        if response.status_code >= 400:
            raise ServiceError(f"{method} {url} answered {response.status_code}: {response.text[:200]}")
        return response.json()

    def health(self) -> dict[str, Any]:
        """``/healthz``: status and the strategy the service runs."""
        return self._call("GET", routes.HEALTHZ)

    def sample(self, n: int = 10_000, top: int = 10, seed: int = 0) -> UserSample:
        """Up to ``n`` users with follower and followee counts, and the ``top`` most followed."""
        data = self._call("GET", routes.SAMPLE, n=n, top=top, seed=seed)
        return UserSample(
            total=data["total"],
            users=data["users"],
            followers=data["followers"],
            followees=data["followees"],
            top=[(t["id"], t["followers"]) for t in data["top"]],
        )

    def metrics(self) -> dict[str, Any]:
        """``/metrics``: counters, write amplification, latency, delivery lag and Redis memory."""
        return self._call("GET", routes.METRICS)

    def reset_metrics(self) -> None:
        """Start the service's counters from zero."""
        self._call("DELETE", routes.METRICS)
