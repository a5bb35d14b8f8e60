"""The service's paths, declared once: the app routes them, the OpenAPI description documents them, clients fill them.

Templates use the OpenAPI/Starlette form (``{user_id}``), so one string serves all three.
"""

from __future__ import annotations

TIMELINE = "/users/{user_id}/timeline"
POSTS = "/users/{user_id}/posts"
FOLLOWING = "/users/{user_id}/following/{other_id}"
SAMPLE = "/users/sample"
HEALTHZ = "/healthz"
METRICS = "/metrics"
OPENAPI = "/openapi.json"


def path(template: str, user_id: int, other_id: int | None = None) -> str:
    """A concrete path: the template with the ids filled in."""
    return template.format(user_id=user_id, other_id=other_id)


def request_name(method: str, template: str) -> str:
    """A path's name for per-route statistics, ids folded: ``GET /users/[id]/timeline`` (as Locust names them)."""
    return f"{method} {template.replace('{user_id}', '[id]').replace('{other_id}', '[id]')}"
