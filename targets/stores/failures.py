"""Why a store did not answer, in the few kinds that call for different fixes, and the fix for each kind."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
from redis import exceptions as redis_errors
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

AUTH = "auth"  # the server answered but refused the credentials
REFUSED = "refused"  # nothing listens at host:port
TIMEOUT = "timeout"  # something holds the port but did not answer in time
OTHER = "other"  # unreachable host, unknown name, protocol error...

_EXAMPLES = {"Redis": "redis://:PASSWORD@HOST:PORT/0", "PostgreSQL": "postgresql://USER:PASSWORD@HOST:PORT/DB"}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it (redis-py wraps socket errors without ``from``, so follow ``__context__`` too)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


#: What a store that went away (restarting, crashed, unreachable) raises: Redis's connection errors; asyncpg's for a
#: connection lost, refused or not yet accepted (08xxx, 57P0x: shut down, crashed, starting up) and the socket errors
#: under them. Not a bug's error (a script error, bad SQL): retrying those cannot help.
LOST_STORE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.CannotConnectNowError,
    OSError,
)


def lost_store(exc: BaseException) -> bool:
    """Whether ``exc`` says a store went away, or Redis came back without the fan-out queue's group (a restart
    without its data)."""
    return isinstance(exc, LOST_STORE) or (isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP"))


def failure_kind(exc: BaseException) -> str:
    """The kind of a connection failure (:data:`AUTH`, :data:`REFUSED`, :data:`TIMEOUT` or :data:`OTHER`)."""
    auth = (
        redis_errors.AuthenticationError,
        redis_errors.AuthorizationError,
        redis_errors.AuthenticationWrongNumberOfArgsError,
        redis_errors.NoPermissionError,
        asyncpg.InvalidAuthorizationSpecificationError,  # wrong password, unknown role, pg_hba rejection
    )
    for cause in _chain(exc):
        if isinstance(cause, auth):
            return AUTH
        if isinstance(cause, ConnectionRefusedError):
            return REFUSED
        if isinstance(cause, TimeoutError | redis_errors.TimeoutError):
            return TIMEOUT
    return OTHER


def failure_message(kind: str, store: str, url: str, variable: str, reason: str = "") -> str:
    """One line saying that ``store`` ("Redis" or "PostgreSQL") at ``url`` (masked) failed, why, and what to do about
    a failure of ``kind``; ``variable`` is the setting that names the URL."""
    detail = f" ({reason})" if reason else ""
    if kind == AUTH:
        example = _EXAMPLES.get(store, "SCHEME://USER:PASSWORD@HOST:PORT")
        return (
            f"{store} at {url} answers but refuses the credentials{detail}: put its user and password in {variable} "
            f"({example}, with / ? # @ : % percent-encoded)"
        )
    if kind == TIMEOUT:
        return (
            f"{store} at {url} did not answer in time{detail}: a busy, paused or firewalled server holds that port; "
            f"check it with `fanout status`, or set {variable} to another server"
        )
    return (
        f"{store} does not answer at {url}{detail}: run `fanout up` to start a private one, "
        f"or set {variable} to a running server"
    )
