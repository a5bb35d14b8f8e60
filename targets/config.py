"""Where the stores are and which namespace the harness owns in them."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from targets.urls import mask_url  # noqa: F401  (re-exported: it lives in targets.urls with the other URL helpers)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_PREFIX = "fanout:"
DEFAULT_SCHEMA = "fanout"
DEFAULT_TIMELINE_CAP = 800
DEFAULT_CELEBRITY_THRESHOLD = 10_000
DEFAULT_FANOUT_BATCH = 1_000
#: "async": publish enqueues one job and workers deliver it; "sync": publish writes every timeline itself.
FANOUT_MODES = ("async", "sync")
DEFAULT_FANOUT_MODE = "async"
DEFAULT_FANOUT_CLAIM_IDLE_MS = 5_000
DEFAULT_FANOUT_REPORT_TTL_S = 86_400

REDIS_URL_VAR = "FANOUT_REDIS_URL"
DATABASE_URL_VAR = "FANOUT_DATABASE_URL"
PREFIX_VAR = "FANOUT_REDIS_PREFIX"
SCHEMA_VAR = "FANOUT_SCHEMA"

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Settings:
    """Store locations, the harness's namespace, and the knobs every strategy shares.

    ``prefix`` is the Redis key prefix and ``schema`` the Postgres schema the harness owns; nothing outside them is
    ever read, written or deleted.
    """

    redis_url: str = DEFAULT_REDIS_URL
    database_url: str = DEFAULT_DATABASE_URL
    prefix: str = DEFAULT_PREFIX
    schema: str = DEFAULT_SCHEMA
    timeline_cap: int = DEFAULT_TIMELINE_CAP
    celebrity_threshold: int = DEFAULT_CELEBRITY_THRESHOLD
    fanout_batch: int = DEFAULT_FANOUT_BATCH
    #: How push and hybrid deliver a post: "async" (queue + workers, the default) or "sync" (inside publish).
    fanout_mode: str = DEFAULT_FANOUT_MODE
    #: A fan-out job pending this long on a silent worker is claimed by another (XAUTOCLAIM), so none is lost.
    fanout_claim_idle_ms: int = DEFAULT_FANOUT_CLAIM_IDLE_MS
    #: How long per-post delivery reports stay readable in Redis.
    fanout_report_ttl_s: int = DEFAULT_FANOUT_REPORT_TTL_S
    pool_size: int = 10

    def __post_init__(self) -> None:
        if not _SCHEMA_RE.match(self.schema):
            raise ValueError(
                f"schema name {self.schema!r} is not a plain lower-case identifier: use letters, digits and _"
            )
        if not self.prefix:
            raise ValueError("the Redis key prefix is empty: the harness needs a namespace of its own (e.g. fanout:)")
        for name in (
            "timeline_cap",
            "celebrity_threshold",
            "fanout_batch",
            "fanout_claim_idle_ms",
            "fanout_report_ttl_s",
            "pool_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, not {getattr(self, name)}")
        if self.fanout_mode not in FANOUT_MODES:
            raise ValueError(f"fan-out mode {self.fanout_mode!r} is unknown: use one of {', '.join(FANOUT_MODES)}")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``FANOUT_*`` environment variables; explicit ``overrides`` (when not None) win."""
        env = {
            "redis_url": os.environ.get(REDIS_URL_VAR),
            "database_url": os.environ.get(DATABASE_URL_VAR),
            "prefix": os.environ.get(PREFIX_VAR),
            "schema": os.environ.get(SCHEMA_VAR),
        }
        values = {k: v for k, v in env.items() if v}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]
