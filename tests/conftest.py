"""Shared fixtures: real Redis and Postgres, in a namespace of the test session's own.

Every session draws a fresh key prefix and schema, so parallel runs on one machine never see each other's data, and
drops them at the end. Nothing outside that namespace is touched (tests/test_namespace.py checks it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from bench.servers import resolve_urls
from targets.config import Settings
from targets.stores import Stores

SESSION_TAG = f"t{os.getpid()}_{uuid.uuid4().hex[:8]}"


def namespace_settings(**changes: object) -> Settings:
    """Settings for the configured servers with this session's namespace (``changes`` override fields)."""
    redis_url, database_url = resolve_urls(os.environ.get("FANOUT_REDIS_URL"), os.environ.get("FANOUT_DATABASE_URL"))
    base = Settings.from_env(
        redis_url=redis_url,
        database_url=database_url,
        prefix=f"fanout_{SESSION_TAG}:",
        schema=f"fanout_{SESSION_TAG}",
    )
    return base.with_(**changes) if changes else base


@pytest.fixture
async def stores() -> AsyncIterator[Stores]:
    """Connected stores on an empty namespace, dropped after the test."""
    s = await Stores.connect(namespace_settings())
    await s.reset()
    try:
        yield s
    finally:
        await s.drop()
        await s.close()
