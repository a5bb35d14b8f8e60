"""Where the stores are, which namespace the harness owns in them, and the knobs every strategy shares.

Each setting is declared once, as a field of :class:`Settings` whose metadata (a :class:`targets.declared.Declared`)
names its command-line flag, its environment variable and its help. The command line (``bench/cli/options.py``)
generates its options from these declarations, and a child process receives settings through the same variables
(:meth:`Settings.to_env` / :meth:`Settings.from_env`), so a setting is spelt the same way everywhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from targets.declared import Declared, declarations, option
from targets.urls import mask_url

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
DEFAULT_POOL_SIZE = 10
DEFAULT_WORKER_INFLIGHT = 8
#: 0: fan-out delivers to every follower, active or not.
DEFAULT_ACTIVE_WINDOW_S = 0
DEFAULT_RATE_HALF_LIFE_S = 60
DEFAULT_REEVALUATE_S = 10
#: Feeding Frenzy's H/L: Redis time to push one post to one follower over Redis time to merge one pulled followee
#: into one read (docs/performance.md, "Adaptive's cost ratio", measured with `fanout perf read`).
DEFAULT_COST_RATIO = 0.075
#: "online": adaptive estimates read and post rates from what it sees; "declared": the workload declares them.
RATE_SOURCES = ("online", "declared")
#: Where timeline reads computed in Postgres go.
READ_FROM = ("primary", "replica")

REDIS_URL_VAR = "FANOUT_REDIS_URL"
DATABASE_URL_VAR = "FANOUT_DATABASE_URL"
PREFIX_VAR = "FANOUT_REDIS_PREFIX"
SCHEMA_VAR = "FANOUT_SCHEMA"

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _setting(default: Any, flag: str, env: str, help: str, choices: tuple[str, ...] = (), *, minimum: int = 1) -> Any:
    # Integer settings are counts and sizes: at least 1 unless declared otherwise (checked in __post_init__ too, for
    # values from Python); float settings are ratios: above 0.
    if isinstance(default, float):
        bound: dict[str, Any] = {"min": 0, "min_open": True}
    else:
        bound = {"min": minimum} if isinstance(default, int) else {}
    return option(default, help, flag=flag, env=env, choices=choices or None, **bound)


@dataclass(frozen=True)
class Settings:
    """Store locations, the harness's namespace, and the knobs every strategy shares.

    ``prefix`` is the Redis key prefix and ``schema`` the Postgres schema the harness owns; nothing outside them is
    ever read, written or deleted. Every integer setting is positive.
    """

    redis_url: str = _setting(DEFAULT_REDIS_URL, "--redis-url", REDIS_URL_VAR, "Redis URL.")
    database_url: str = _setting(DEFAULT_DATABASE_URL, "--database-url", DATABASE_URL_VAR, "PostgreSQL URL.")
    redis_cluster: int = _setting(
        0,
        "--redis-cluster",
        "FANOUT_REDIS_CLUSTER",
        "Redis is a Redis Cluster of this many primaries, --redis-url naming one of its nodes (0: one server); "
        "`fanout up --redis-cluster N` starts one [default: that of the cluster `fanout up` started, else 0].",
        minimum=0,
    )
    replica_urls: str = _setting(
        "",
        "--replica-urls",
        "FANOUT_REPLICA_URLS",
        "PostgreSQL streaming replicas to read from with --read-from replica (comma-separated URLs) [default: those "
        "`fanout up --pg-replicas` started].",
    )
    read_from: str = _setting(
        "primary",
        "--read-from",
        "FANOUT_READ_FROM",
        "Where pull reads and hybrid's Postgres reads go: the primary, or the replicas (round-robin); writes, and "
        "reads that must see them, always go to the primary.",
        READ_FROM,
    )
    prefix: str = _setting(DEFAULT_PREFIX, "--prefix", PREFIX_VAR, "Redis key prefix the harness owns.")
    schema: str = _setting(DEFAULT_SCHEMA, "--schema", SCHEMA_VAR, "Postgres schema the harness owns.")
    timeline_cap: int = _setting(
        DEFAULT_TIMELINE_CAP, "--timeline-cap", "FANOUT_TIMELINE_CAP", "Entries kept per home timeline."
    )
    celebrity_threshold: int = _setting(
        DEFAULT_CELEBRITY_THRESHOLD,
        "--threshold",
        "FANOUT_CELEBRITY_THRESHOLD",
        "Hybrid: accounts with at least this many followers are celebrities (pulled on read, not pushed).",
    )
    fanout_batch: int = _setting(
        DEFAULT_FANOUT_BATCH,
        "--fanout-batch",
        "FANOUT_BATCH",
        "Followers per fan-out batch: one atomic Redis call, so it bounds how long reads wait behind it.",
    )
    fanout_mode: str = _setting(
        DEFAULT_FANOUT_MODE,
        "--fanout",
        "FANOUT_MODE",
        "How push and hybrid deliver a post: async (queue + fan-out workers) or sync (inside publish).",
        FANOUT_MODES,
    )
    fanout_claim_idle_ms: int = _setting(
        DEFAULT_FANOUT_CLAIM_IDLE_MS,
        "--claim-idle-ms",
        "FANOUT_CLAIM_IDLE_MS",
        "A fan-out job pending this long on a silent worker is claimed by another (XAUTOCLAIM), so none is lost.",
    )
    fanout_report_ttl_s: int = _setting(
        DEFAULT_FANOUT_REPORT_TTL_S,
        "--report-ttl-s",
        "FANOUT_REPORT_TTL_S",
        "Seconds per-post delivery reports stay readable in Redis.",
    )
    pool_size: int = _setting(
        DEFAULT_POOL_SIZE, "--pool-size", "FANOUT_POOL_SIZE", "Most PostgreSQL connections each process opens."
    )
    worker_inflight: int = _setting(
        DEFAULT_WORKER_INFLIGHT,
        "--worker-inflight",
        "FANOUT_WORKER_INFLIGHT",
        "Fan-out calls each worker keeps in flight (more: faster fan-out, longer waits for reads behind it).",
    )
    active_window_s: int = _setting(
        DEFAULT_ACTIVE_WINDOW_S,
        "--active-window",
        "FANOUT_ACTIVE_WINDOW_S",
        "Push, hybrid and adaptive: fan-out skips followers who have not read for this many seconds (0: off); such "
        "a user's next read rebuilds its timeline from Postgres first.",
        minimum=0,
    )
    cost_ratio: float = _setting(
        DEFAULT_COST_RATIO,
        "--cost-ratio",
        "FANOUT_COST_RATIO",
        "Adaptive: cost of pushing a post to one follower over cost of pulling one followee on one read; an edge is "
        "pushed when reads(follower) / posts(followee) >= this.",
    )
    rate_source: str = _setting(
        "online",
        "--rate-source",
        "FANOUT_RATE_SOURCE",
        "Adaptive: the read and post rates it decides by: online (decayed counts of what it sees) or declared (by "
        "the workload, up front).",
        RATE_SOURCES,
    )
    rate_half_life_s: int = _setting(
        DEFAULT_RATE_HALF_LIFE_S,
        "--rate-half-life",
        "FANOUT_RATE_HALF_LIFE_S",
        "Adaptive: half-life in seconds of the decayed read and post counts (online rates).",
    )
    reevaluate_s: int = _setting(
        DEFAULT_REEVALUATE_S,
        "--reevaluate-every",
        "FANOUT_REEVALUATE_S",
        "Adaptive: a reader's follow edges are decided again at most this often (seconds), on its read.",
    )

    def __post_init__(self) -> None:
        if not _SCHEMA_RE.match(self.schema):
            raise ValueError(
                f"schema name {self.schema!r} is not a plain lower-case identifier: use letters, digits and _"
            )
        if not self.prefix:
            raise ValueError("the Redis key prefix is empty: the harness needs a namespace of its own (e.g. fanout:)")
        for name, spec in _DECLARED.items():
            value = getattr(self, name)
            if isinstance(value, int) and spec.min is not None and value < spec.min:
                kind = "a positive integer" if spec.min == 1 else f"an integer of at least {spec.min:g}"
                raise ValueError(f"{name} must be {kind}, not {value}")
            if isinstance(value, float) and not value > 0:
                raise ValueError(f"{name} must be above 0, not {value}")
        if self.fanout_mode not in FANOUT_MODES:
            raise ValueError(f"fan-out mode {self.fanout_mode!r} is unknown: use one of {', '.join(FANOUT_MODES)}")
        for name, spec in _DECLARED.items():
            if spec.choices and getattr(self, name) not in spec.choices:
                raise ValueError(f"{name} {getattr(self, name)!r} is unknown: use one of {', '.join(spec.choices)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, /, **overrides: object) -> Settings:
        """Settings from each field's ``FANOUT_*`` variable (of ``environ``, default ``os.environ``); explicit
        ``overrides`` (when not None) win. An empty variable counts as unset."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            var = declared(f.name).env
            raw = environ.get(var)
            if not raw:
                continue
            if isinstance(f.default, int):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ValueError(f"{var}={raw!r} is not an integer: set a whole number or unset it") from None
            elif isinstance(f.default, float):
                try:
                    values[f.name] = float(raw)
                except ValueError:
                    raise ValueError(f"{var}={raw!r} is not a number: set one (e.g. 0.25) or unset it") from None
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """Every field as its environment variable: ``Settings.from_env(s.to_env()) == s``, so a child process
        started with these variables runs with exactly these settings."""
        return {declared(f.name).env: str(getattr(self, f.name)) for f in fields(self)}

    @property
    def replicas(self) -> list[str]:
        """The replica URLs, in order."""
        return [u.strip() for u in self.replica_urls.split(",") if u.strip()]

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def describe(self) -> str:
        """Every field as ``name=value``, passwords masked: for start-up lines and logs."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown.update(redis_url=mask_url(self.redis_url), database_url=mask_url(self.database_url))
        shown.update(replica_urls=",".join(mask_url(u) for u in self.replicas))
        return " ".join(f"{name}={value}" for name, value in shown.items())


def declared(name: str) -> Declared:
    """The flag, variable and help of the setting ``name`` (a :class:`Settings` field)."""
    return _DECLARED[name]


_DECLARED: dict[str, Declared] = {f.name: d for f, d in declarations(Settings)}
