"""Local Redis and PostgreSQL servers for machines that have none (``fanout up`` / ``down`` / ``status``).

Only :func:`resolve_urls` lives here so far: explicit URLs win, then servers recorded by ``fanout up`` in
``.fanout/state.json``, then the defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

from targets.config import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL

STATE_DIR = Path(".fanout")
STATE_FILE = STATE_DIR / "state.json"


def resolve_urls(redis_url: str | None, database_url: str | None) -> tuple[str, str]:
    """The URLs to use: given ones, else those of servers `fanout up` started, else the defaults."""
    state: dict[str, dict[str, str]] = {}
    if STATE_FILE.exists():
        state = json.loads(STATE_FILE.read_text())
    return (
        redis_url or state.get("redis", {}).get("url") or DEFAULT_REDIS_URL,
        database_url or state.get("postgres", {}).get("url") or DEFAULT_DATABASE_URL,
    )
