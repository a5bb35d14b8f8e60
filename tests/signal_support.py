"""Processes that tests interrupt as a terminal would."""

from __future__ import annotations

import signal


def terminal_signals() -> None:
    """``preexec_fn`` for a child the test sends SIGINT: the disposition a terminal gives, whatever launched the suite.

    A suite started in the background by a non-interactive shell inherits SIGINT ignored, and so would the child,
    which then never sees the Ctrl-C the test sends.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
