"""Run ``fanout serve`` as a child process on a free loopback port, for the Locust wrapper, benchmarks and tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import requests

from targets.config import Settings

READY_TIMEOUT_S = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def serve_command(
    strategy: str, port: int, workers: int = 1, host: str = "127.0.0.1", fanout_worker: bool = True
) -> list[str]:
    """The ``fanout serve`` command line; the settings travel in the environment (:func:`serve_env`)."""
    command = [sys.executable, "-m", "bench.cli", "serve", "--strategy", strategy, "--host", host, "--port", str(port)]
    return [*command, "--workers", str(workers), "--worker" if fanout_worker else "--no-worker"]


def serve_env(settings: Settings) -> dict[str, str]:
    """This process's environment with every field of ``settings`` in its ``FANOUT_*`` variable: the child runs with
    exactly these settings, whatever this environment held, and the store URLs (which may hold passwords) stay off
    its command line (anyone can read a command line; only the owner can read a process's environment)."""
    return {**os.environ, **settings.to_env()}


class ServiceProcess:
    """``fanout serve`` in a child process, started and ready (``/healthz`` answers) inside the ``with`` block."""

    def __init__(
        self,
        settings: Settings,
        strategy: str = "push",
        *,
        workers: int = 1,
        fanout_worker: bool = True,
        port: int | None = None,
        log: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = serve_command(strategy, self.port, workers, fanout_worker=fanout_worker)
        self.env = serve_env(settings)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        """Start the service and wait until it answers; raises RuntimeError with its output if it exits first."""
        out = self.log.open("wb") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                detail = self.log.read_text()[-2000:] if self.log else ""
                raise RuntimeError(f"fanout serve exited with {self.process.returncode}: {detail}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)  # polling for readiness, not papering over a race
        self.stop()
        raise RuntimeError(f"fanout serve did not answer at {self.url} within {READY_TIMEOUT_S:.0f} s")

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """Stop it like Ctrl-C would (uvicorn shuts down gracefully, flushing the metrics); returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
