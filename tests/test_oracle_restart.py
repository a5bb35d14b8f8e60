"""The correctness oracle across a real Redis restart.

The same hypothesis scenarios as tests/test_oracle.py, on a private Redis that ``fanout up`` started (Postgres is the
shared one, in this session's schema). In the middle of every sequence that Redis is killed and started again with
nothing (it keeps no persistence); the recovery the bench and the service run (:func:`rebuild_if_lost`) must notice
the loss and rebuild every strategy's derived state from Postgres (home timelines, hybrid's author timelines and
celebrity sets), after which every page and every Redis structure must equal the in-memory model again.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from redis.exceptions import ConnectionError as RedisConnectionError

from bench.scenarios.oracle import Ensemble
from devservers.support import free_port
from targets.stores.connections import Stores
from targets.stores.materialise import mark_built
from targets.stores.recovery import lost, rebuild_if_lost
from targets.strategies.registry import timeline_owners
from tests.conftest import SESSION_TAG, namespace_settings
from tests.test_oracle import run_scenario, scenarios, view_for

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FANOUT_RESTART_EXAMPLES", "12"))


def fanout(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def private_redis() -> Iterator[tuple[dict[str, str], Path]]:
    """A private Redis started by `fanout up` in a folder of its own (Postgres: the configured one); removed after."""
    with tempfile.TemporaryDirectory(prefix="fanout-oracle-restart-") as name:
        where = Path(name)
        env = {**os.environ, "FANOUT_REDIS_URL": f"redis://127.0.0.1:{free_port('127.0.0.1')}/0"}
        up = fanout(env, where, "up", "--timeout", "60")
        assert up.returncode == 0 and "Redis: started a private" in up.stdout, up.stdout + up.stderr
        try:
            yield env, where
        finally:
            fanout(env, where, "down", "--purge")


@pytest.fixture(scope="module")
def runner(private_redis: tuple[dict[str, str], Path]) -> Iterator[tuple[asyncio.Runner, Stores]]:
    env, _ = private_redis
    with asyncio.Runner() as r:
        settings_ = namespace_settings(redis_url=env["FANOUT_REDIS_URL"], schema=f"fanout_{SESSION_TAG}_rs")
        stores = r.run(Stores.connect(settings_))
        try:
            yield r, stores
        finally:
            r.run(stores.drop())
            r.run(stores.close())


def crash_restart(private_redis: tuple[dict[str, str], Path]) -> None:
    """Kill the private Redis and start it again, through the same code `--fault redis-restart` uses."""
    env, where = private_redis
    code = f"from devservers.manager import crash_restart; crash_restart('redis', {env['FANOUT_REDIS_URL']!r})"
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=where, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr


async def answered(stores: Stores) -> None:
    """Wait until the restarted Redis answers (a pooled connection to the old process fails once, then reconnects)."""
    for _ in range(50):
        try:
            await stores.redis.ping()
            return
        except (RedisConnectionError, OSError):
            await asyncio.sleep(0.1)
    raise AssertionError("the restarted Redis does not answer")


_examples = iter(range(10**9))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_pages_and_derived_state_survive_a_real_redis_restart(
    runner: tuple[asyncio.Runner, Stores], private_redis: tuple[dict[str, str], Path], scenario: dict
) -> None:
    r, stores = runner
    # Every sequence restarts, somewhere in it.
    scenario = scenario | {"restart_at": (scenario["restart_at"] or 0) % len(scenario["ops"])}
    restarts: list[bool] = []

    async def restart(ensemble: Ensemble, users: range, post_ids: list[int]) -> bool:
        view = next(iter(ensemble.strategies.values())).stores
        await mark_built(view)  # what a load leaves: the derived state was complete in this Redis
        await asyncio.to_thread(crash_restart, private_redis)
        await answered(view)
        assert await lost(view)  # the restart really emptied Redis
        rebuilt = await rebuild_if_lost(view, timeline_owners(ensemble.strategies))
        restarts.append(rebuilt is not None and not await lost(view))
        return True

    async def play() -> None:
        await stores.pg.execute("TRUNCATE users, follows, posts, mentions")
        view = view_for(stores, scenario, next(_examples), fanout_mode="sync")
        await run_scenario(Ensemble(view), scenario, restart=restart)

    r.run(play())
    assert restarts == [True]
