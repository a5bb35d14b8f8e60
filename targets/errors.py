"""Errors the targets raise, each with a message that names the problem and the fix."""

from __future__ import annotations

from targets.stores.failures import failure_message


class FanoutError(Exception):
    """Base class of the harness's own, expected errors (printed as one line, never as a traceback)."""


class StoreUnavailable(FanoutError):
    """A store did not answer at its configured URL (``url`` is shown as given: pass it masked).

    The message's advice depends on ``kind``, why it did not (see :mod:`targets.stores.failures`).
    """

    def __init__(self, store: str, url: str, variable: str, reason: str = "", kind: str = "") -> None:
        self.store, self.url, self.variable, self.kind = store, url, variable, kind
        super().__init__(failure_message(kind, store, url, variable, reason))


class UnknownUser(FanoutError, LookupError):
    """The user id does not exist in the loaded graph."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        super().__init__(f"user {user_id} does not exist: load a graph containing it (`fanout graph load FILE`)")


class DeliveryFailed(FanoutError):
    """A post was stored in Postgres, but delivering it failed (a store went away in between).

    The post exists: a client that retries without an idempotency key stores it twice. Retrying with the same key
    stores nothing new and delivers the stored post.
    """

    def __init__(self, post_id: int, reason: str) -> None:
        self.post_id = post_id
        super().__init__(
            f"post {post_id} was stored but its delivery failed ({reason}): retry with the same Idempotency-Key to "
            "deliver it without storing it twice"
        )


class InvalidOperation(FanoutError, ValueError):
    """An operation that cannot be applied as asked (following oneself, a non-positive page size, ...)."""
