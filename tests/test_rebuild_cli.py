"""`fanout rebuild`: a Redis that lost the derived state gets it back from Postgres, page for page."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from graphs.generate import GraphSpec
from graphs.load import load_generated
from targets.stores.connections import Stores
from targets.stores.materialise import clear_derived, marker_key
from targets.stores.recovery import lost
from tests.conftest import SESSION_TAG, namespace_settings
from tests.test_bench_cli import assert_every_page_matches_postgres, namespace_args

THRESHOLD = 60


async def test_rebuild_restores_every_page_after_redis_lost_the_derived_state() -> None:
    settings = namespace_settings(
        prefix=f"fanout_{SESSION_TAG}_rb:", schema=f"fanout_{SESSION_TAG}_rb", celebrity_threshold=THRESHOLD
    ).with_(timeline_cap=4)
    async with await Stores.connect(settings) as stores:
        try:
            spec = GraphSpec("ba", 300, seed=3, celebrities=1, celebrity_reach=0.5, params={"m": 3})
            await load_generated(stores, spec, 3, seed=3)
            assert not await lost(stores)
            # What a Redis restart without persistence does to the namespace (only ours: never FLUSHALL).
            await clear_derived(stores)
            await stores.redis.unlink(marker_key(stores))
            assert await lost(stores)
            command = [sys.executable, "-m", "bench.cli", *namespace_args(settings), "rebuild"]
            command += ["--strategy", "push,hybrid", "--threshold", str(THRESHOLD), "--timeline-cap", "4"]
            done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            assert "push: " in done.stdout and "hybrid: " in done.stdout and "post cache:" in done.stdout
            assert not await lost(stores)
            await assert_every_page_matches_postgres(settings)
        finally:
            await stores.drop()
