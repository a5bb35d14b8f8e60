"""Which namespace, on which servers, a set of stores is: what ``/healthz`` reports and ``fanout bench --target``
compares with its own, to know whether a service serves the very data the harness can inspect and undo.

The prefix and schema alone are not enough: the same prefix on another Redis (a service on a private server, say)
is another namespace. So each server is named by what tells its instances apart: Redis's ``run_id`` (new at every
start) and PostgreSQL's database name with the postmaster's start time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from targets.stores.connections import Stores
from targets.stores.server_info import run_ids


@dataclass(frozen=True)
class NamespaceIdentity:
    """A namespace (key prefix and schema) and the server instances that hold it."""

    prefix: str
    schema: str
    #: Redis INFO server ``run_id``.
    redis: str
    #: ``<database>@<postmaster start time>``.
    postgres: str

    def to_json(self) -> dict[str, str]:
        """As ``/healthz`` reports it."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> NamespaceIdentity | None:
        """From a ``/healthz`` answer's ``namespace`` (None when the service does not report one)."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(*(str(data[k]) for k in ("prefix", "schema", "redis", "postgres")))
        except KeyError:
            return None


async def namespace_identity(stores: Stores) -> NamespaceIdentity:
    """The identity of the namespace these stores serve."""
    run_id = await run_ids(stores.redis)
    row = await stores.pg.fetchrow("SELECT current_database() AS db, pg_postmaster_start_time()::text AS started")
    assert row is not None
    s = stores.settings
    return NamespaceIdentity(s.prefix, s.schema, run_id, f"{row['db']}@{row['started']}")
