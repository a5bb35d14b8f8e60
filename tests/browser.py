"""Headless Chromium driven over the DevTools protocol, for tests that check pages as a browser renders them.

Only what the tests need: open a URL, evaluate JavaScript, wait for a condition, take a screenshot. Uses the
``websockets`` package (a dependency of uvicorn[standard]); the browser is the system's ``chromium``.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Browser checks may be skipped anywhere but in CI, whose .ci/run installs Chromium (a missing one fails there).
BROWSER_OPTIONAL = os.environ.get("CI") != "true"
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and BROWSER_OPTIONAL, reason="chromium is not installed (apt-get install chromium)"
)
# Headless as root on a machine without a network: without the background-networking flags Chromium keeps trying
# (and failing) to reach Google's hosts.
HEADLESS_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FLAGS = [*HEADLESS_FLAGS, "--window-size=1400,1000", "--remote-debugging-port=0"]
START_TIMEOUT_S = 20.0


def dump_dom(page: Path) -> str:
    """The DOM of a local page once headless Chromium has loaded it (its scripts run)."""
    assert CHROMIUM is not None, "chromium is not installed"
    # Chromium's helpers may still write into the profile as it exits: cleanup must not fail on that.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        return subprocess.run(
            [CHROMIUM, *HEADLESS_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout


class Browser:
    """One headless Chromium with one page."""

    def __init__(self) -> None:
        if CHROMIUM is None:
            raise RuntimeError("chromium is not installed")
        # Chromium helpers may still write into the profile as the browser exits: cleanup must not fail on that.
        self._profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        pages = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        target = next(p for p in pages if p["type"] == "page")
        self.ws = connect(target["webSocketDebuggerUrl"], max_size=None, legacy=True)
        self._ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a DevTools method and return its result (events received meanwhile are skipped)."""
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def goto(self, url: str) -> None:
        """Open ``url`` and wait until the document has loaded."""
        # A marker on the old document tells it apart from the new one (readyState alone may still be the old's).
        self.evaluate("window.__left = true")
        self.send("Page.navigate", url=url)
        self.wait_for("!window.__left && document.readyState === 'complete'")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll until ``expression`` is truthy in the page; returns its value (raises TimeoutError)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied {expression}; it shows: {self.text()[:1500]!r}")
            time.sleep(0.2)

    def text(self) -> str:
        """The page's visible text."""
        return str(self.evaluate("document.body.innerText"))

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Quit the browser."""
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
