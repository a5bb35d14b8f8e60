"""Child programs that stop with their parent: SIGINT and SIGTERM are forwarded, and nothing is left behind.

A child runs in a process group of its own, so a terminal's Ctrl-C reaches it once (forwarded by the parent) rather
than twice, and whatever it forked (Locust's worker processes) can be found and ended after it exits, even once
re-parented to init.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from types import FrameType, TracebackType

FORWARDED = (signal.SIGINT, signal.SIGTERM)
#: How long a child may take to stop after a forwarded signal (Locust writes its reports) before it is killed.
STOP_GRACE_S = 30.0
#: How long what a child left in its process group may take to exit after SIGTERM before SIGKILL.
LEFTOVER_GRACE_S = 5.0
POLL_S = 0.05


class Interrupted(SystemExit):
    """Raised when SIGINT or SIGTERM arrives while no child runs: the command stops, its cleanups run."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


class ForwardedSignals:
    """While active, SIGINT and SIGTERM go to the running child (see :meth:`run`); with no child running they raise
    :class:`Interrupted` (before the child) or are only recorded (after it, while the command cleans up)."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.received: list[int] = []
        self._ran = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> ForwardedSignals:
        self._previous = {signum: signal.signal(signum, self._handle) for signum in FORWARDED}
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    @property
    def exit_code(self) -> int | None:
        """128 + the first signal received (the shell's convention), or None when none was."""
        return 128 + self.received[0] if self.received else None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        child = self.child
        if child is not None and child.poll() is None:
            if len(self.received) > 1:  # a second signal: stop now, not gracefully
                _signal_group(child.pid, signal.SIGKILL)
            else:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)
        elif not self._ran:
            raise Interrupted(signum)

    def run(self, command: list[str]) -> int:
        """Run ``command`` until it exits and return its exit code; then end whatever it left in its process group.

        A forwarded signal gives it :data:`STOP_GRACE_S` to stop before it is killed.
        """
        self.child = subprocess.Popen(command, process_group=0)
        try:
            while True:
                try:
                    return self.child.wait(timeout=STOP_GRACE_S if self.received else POLL_S * 20)
                except subprocess.TimeoutExpired:
                    if self.received:
                        _signal_group(self.child.pid, signal.SIGKILL)
        finally:
            self._ran = True
            if self.child.poll() is None:
                self.child.kill()
                self.child.wait()
            end_group(self.child.pid)


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to every process of the group; False when the group has no process left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def end_group(pgid: int, grace: float = LEFTOVER_GRACE_S) -> None:
    """SIGTERM what remains of a process group, then SIGKILL it if it outlives ``grace`` seconds."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _signal_group(pgid, 0):
            return
        time.sleep(POLL_S)  # polling for the processes to exit, with a deadline
    _signal_group(pgid, signal.SIGKILL)
