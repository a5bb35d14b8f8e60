"""``fanout locust`` stops with its parent's signal: SIGTERM or SIGINT to it leaves no Locust, worker or service
process behind and nothing listening on the web UI's port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from bench.service_process import free_port
from targets.config import Settings
from targets.stores.connections import Stores
from tests.conftest import SESSION_TAG, namespace_settings
from tests.signal_support import terminal_signals
from tests.test_locust import wait_until, wait_until_up

DEADLINE_S = 60.0


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    def running(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return [p for p in procs if running(p)]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
async def locust_namespace() -> AsyncIterator[Settings]:
    settings = namespace_settings(prefix=f"fanout_{SESSION_TAG}_sig:", schema=f"fanout_{SESSION_TAG}_sig")
    yield settings
    async with await Stores.connect(settings, create=False) as stores:
        await stores.drop()


@pytest.mark.parametrize(
    ("signum", "options", "processes"),
    [
        (signal.SIGTERM, ["--host", "http://127.0.0.1:1", "--processes", "2"], 3),  # a master and two workers
        (signal.SIGINT, ["--serve", "push"], 2),  # Locust and the service it started
    ],
    ids=["sigterm-workers", "sigint-serve"],
)
def test_a_signal_to_fanout_locust_leaves_nothing_behind(
    locust_namespace: Settings, tmp_path: Path, signum: signal.Signals, options: list[str], processes: int
) -> None:
    port = free_port()
    namespace = ["--prefix", locust_namespace.prefix, "--schema", locust_namespace.schema]
    command = [sys.executable, "-m", "bench.cli", *namespace, "locust", "--web", "--web-port", str(port), *options]
    proc = subprocess.Popen(  # a session of its own, so only this test's signal reaches it
        [*command, "--out", str(tmp_path / "run")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=terminal_signals,
    )
    children: list[psutil.Process] = []
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", proc, timeout=DEADLINE_S)

        def all_started() -> bool:
            children[:] = alive(psutil.Process(proc.pid).children(recursive=True))
            return len(children) >= processes

        wait_until(all_started, timeout=DEADLINE_S)
        proc.send_signal(signum)  # to fanout locust alone, as `kill` or a supervisor would
        proc.wait(timeout=DEADLINE_S)
        deadline = time.monotonic() + DEADLINE_S
        while alive(children) and time.monotonic() < deadline:
            time.sleep(0.1)  # polling for the children to exit, with a deadline
        assert alive(children) == [], [p.cmdline() for p in alive(children)]
        assert not listening(port)
        assert proc.returncode == 128 + signum
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for child in alive(children):
            child.kill()
