"""`fanout perf http` says what it measures: a closed loop (throughput), with service-time latencies."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from targets.config import Settings
from targets.stores.connections import Stores
from tests.conftest import SESSION_TAG, namespace_settings


def test_perf_http_says_its_loop_is_closed(tmp_path: Path) -> None:
    settings = namespace_settings(prefix=f"fanout_{SESSION_TAG}_perf:", schema=f"fanout_{SESSION_TAG}_perf")
    out = tmp_path / "perf.json"
    namespace = ["--prefix", settings.prefix, "--schema", settings.schema]
    args = ["perf", "http", "--users", "60", "--posts-per-user", "2", "--duration", "1", "--concurrency", "4"]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bench.cli", *namespace, *args, "--no-locust", "--output", str(out)],
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "COLUMNS": "200"},
        )
    finally:
        asyncio.run(drop(settings))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "closed loop: 4 in flight" in result.stdout
    assert "For latency at a fixed rate (open loop): fanout bench --target URL" in " ".join(result.stdout.split())
    doc = json.loads(out.read_text())
    assert doc["loop"] == "closed" and doc["latency"].startswith("service time")
    assert set(doc["runs"]) == {"in process (driver -> PushStrategy)", "over HTTP (driver -> fanout serve, 1 process)"}


async def drop(settings: Settings) -> None:
    async with await Stores.connect(settings, create=False) as stores:
        await stores.drop()
