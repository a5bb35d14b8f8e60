"""Time-ordered 53-bit post ids.

An id is ``(milliseconds since EPOCH) << SEQUENCE_BITS | sequence``: 41 bits of milliseconds (about 69 years) and
12 bits of sequence. Ids sort by creation time, and every id below 2**53 is exact as a Redis sorted-set score (a
double) and as a JSON number. The database assigns ids (see :data:`POST_ID_DEFAULT_SQL`), so every process that
publishes, in any strategy, draws from one sequence.
"""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
EPOCH_MS = int(EPOCH.timestamp() * 1000)
SEQUENCE_BITS = 12
MAX_POST_ID = (1 << 53) - 1
MAX_USER_ID = (1 << 63) - 1  # a Postgres bigint

#: SQL default for ``posts.id``; ``{schema}`` is filled in by :mod:`targets.stores.schema`.
POST_ID_DEFAULT_SQL = (
    "(((floor(extract(epoch from clock_timestamp()) * 1000)::bigint - {epoch_ms}) << {bits})"
    " | (nextval('{schema}.post_seq') % {modulo}))"
)


def make_post_id(created_ms: int, sequence: int) -> int:
    """Id of a post created at ``created_ms`` (Unix milliseconds) with the given sequence number."""
    if created_ms < EPOCH_MS:
        raise ValueError(f"post time {created_ms} ms is before the id epoch {EPOCH.isoformat()}")
    return ((created_ms - EPOCH_MS) << SEQUENCE_BITS) | (sequence % (1 << SEQUENCE_BITS))


def post_id_time_ms(post_id: int) -> int:
    """Unix milliseconds at which the post with this id was created."""
    return (post_id >> SEQUENCE_BITS) + EPOCH_MS


def id_default_sql(schema: str) -> str:
    """The SQL expression that draws a fresh post id in ``schema``."""
    return POST_ID_DEFAULT_SQL.format(schema=schema, epoch_ms=EPOCH_MS, bits=SEQUENCE_BITS, modulo=1 << SEQUENCE_BITS)
