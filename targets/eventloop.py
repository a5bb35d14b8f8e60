"""Running the harness's coroutines from synchronous entry points."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop (uvloop where it is installed).

    A second Ctrl-C makes the runner raise KeyboardInterrupt wherever the loop is, possibly inside a transport's
    callback; the loop would then report it as a "Fatal error on transport" with a traceback before the command
    stops. :func:`quiet_interrupts` keeps those reports out: the stop itself is the answer to the Ctrl-C.
    """

    async def main() -> T:
        asyncio.get_running_loop().set_exception_handler(quiet_interrupts)
        return await coro

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.run(main())
    return uvloop.run(main())


def quiet_interrupts(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: a KeyboardInterrupt (the user's Ctrl-C) is not reported; anything else is, as
    the default handler reports it."""
    if isinstance(context.get("exception"), KeyboardInterrupt):
        return
    loop.default_exception_handler(context)


# Python 3.11's asyncio.wait_for can swallow a cancellation that arrives just as the call it waits for completes
# (CPython gh-86296, fixed in 3.12), and redis-py sends every command through wait_for when a socket timeout is set.
# A Ctrl-C (which cancels the main task) can then be lost: the task goes on with its cancellation still counted in
# Task.cancelling(). Code that handles a cancellation and carries on calls handled_cancel(); checkpoints raise a
# lost one at the next phase boundary or wait slice.


def handled_cancel() -> None:
    """Mark the current task's cancellation as handled: it chose to go on (to write what it measured, to undo)."""
    task = asyncio.current_task()
    while task is not None and task.cancelling():
        task.uncancel()


def raise_if_cancelled() -> None:
    """Raise :class:`asyncio.CancelledError` when the current task was cancelled and nothing handled it yet."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
