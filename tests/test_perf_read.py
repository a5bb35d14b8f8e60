"""`fanout perf read` end to end on a small generated graph: every row measured, split readers, a result file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.perf.read import FLOOR, NOOP, TWO_COMMANDS
from targets.eventloop import run
from targets.stores.connections import Stores
from tests.conftest import namespace_settings


@pytest.fixture
def namespace() -> Iterator[list[str]]:
    settings = namespace_settings()
    s = settings.with_(prefix=f"{settings.prefix.rstrip(':')}_perfread:", schema=f"{settings.schema}_perfread")
    try:
        yield ["--prefix", s.prefix, "--schema", s.schema]
    finally:

        async def drop() -> None:
            async with await Stores.connect(s, create=False) as stores:
                await stores.drop()

        run(drop())


def test_perf_read_measures_every_row_and_writes_the_result(namespace: list[str], tmp_path: Path) -> None:
    out = tmp_path / "perf_read.json"
    args = ["--users", "300", "--posts-per-user", "3", "--threshold", "100", "--sample", "40", "--duration", "0.5"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cli",
            *namespace,
            "perf",
            "read",
            *args,
            "--concurrency",
            "1,4",
            "--repeat",
            "2",
            "--output",
            out,
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    readers = result["readers"]
    assert readers["all"] == 40 and readers["celebrity"] + readers["ordinary"] == 40
    assert readers["celebrity"] > 0 and readers["ordinary"] > 0  # the celebrity is followed by half of the users
    expected = {NOOP, FLOOR, TWO_COMMANDS, "push", "pull"}
    expected |= {f"{s}, {g} readers" for s in ("push", "hybrid") for g in ("celebrity", "no-celebrity")}
    assert set(result["runs"]) == {"1", "4"}
    for rows in result["runs"].values():
        assert set(rows) == expected
        assert all(r["reads"] > 0 and r["errors"] == 0 for r in rows.values())
        assert all(
            len(r["rounds"]) == 2 and r["p50_ms"] == min(x["p50_ms"] for x in r["rounds"]) for r in rows.values()
        )
        assert rows[FLOOR]["p50_vs_floor"] == 1.0
        for group in ("celebrity", "no-celebrity"):  # hybrid against push on the same readers
            hybrid, push = rows[f"hybrid, {group} readers"], rows[f"push, {group} readers"]
            assert hybrid["readers"] == push["readers"]
            assert hybrid["p50_vs_push"] == round(hybrid["p50_ms"] / push["p50_ms"], 2)
    assert "in flight" in done.stdout and str(out) in done.stdout
