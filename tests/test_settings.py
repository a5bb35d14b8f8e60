"""Every setting is declared once and reaches child processes unchanged."""

from __future__ import annotations

import asyncio
from dataclasses import fields, replace
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from bench.cli.main import main
from bench.service_process import ServiceProcess
from targets.config import Settings, declared
from targets.service.app import SERVICE_CONFIG_VAR, ServiceConfig
from tests.conftest import SESSION_TAG, namespace_settings
from tests.service_support import drop_namespace


def _with_query(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


#: Settings that need servers the shared machine lacks (a Redis Cluster, PostgreSQL replicas) to connect with.
TOPOLOGY = ("redis_cluster", "read_from")


def every_field_changed(*, connectable: bool = False) -> Settings:
    """The session's stores and a namespace of its own, with every other field off its default too (the URLs gain a
    harmless query parameter), so a setting dropped on the way shows up as a default. ``connectable``: leave the
    :data:`TOPOLOGY` settings at their defaults, so the stores can be connected to."""
    base = namespace_settings()
    changed = replace(
        base,
        redis_url=_with_query(base.redis_url, "health_check_interval=30"),
        database_url=_with_query(base.database_url, "application_name=fanout-settings-test"),
        prefix=f"fanout_{SESSION_TAG}_env:",
        schema=f"fanout_{SESSION_TAG}_env",
        timeline_cap=123,
        celebrity_threshold=4_321,
        fanout_batch=77,
        fanout_mode="sync",
        fanout_claim_idle_ms=1_234,
        fanout_report_ttl_s=4_567,
        pool_size=3,
        worker_inflight=2,
        active_window_s=3_600,
        cost_ratio=0.75,
        rate_source="declared",
        rate_half_life_s=30,
        reevaluate_s=5,
        replica_urls=base.database_url.replace("127.0.0.1", "localhost"),
    )
    if not connectable:
        changed = replace(changed, redis_cluster=3, read_from="replica")
    default = Settings()
    unchanged = [f.name for f in fields(Settings) if getattr(changed, f.name) == getattr(default, f.name)]
    assert unchanged == (list(TOPOLOGY) if connectable else []), f"still at their defaults: {unchanged}"
    return changed


def test_each_setting_has_its_own_flag_and_variable() -> None:
    names = [f.name for f in fields(Settings)]
    flags = [declared(n).flag for n in names]
    variables = [declared(n).env for n in names]
    assert len(set(flags)) == len(names) and len(set(variables)) == len(names)
    assert all(v.startswith("FANOUT_") for v in variables)
    assert all(declared(n).help for n in names)


@pytest.mark.parametrize("command", [["bench"], ["serve"], ["worker"], ["perf", "fanout"]])
def test_commands_spell_a_shared_setting_the_same_way(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in ("timeline_cap", "fanout_batch", "worker_inflight"):
        assert f"{declared(name).flag} INTEGER RANGE" in result.output
        assert f"env var: {declared(name).env}" in result.output


@pytest.mark.parametrize(("command", "old"), [("serve", "--cap"), ("serve", "--batch"), ("worker", "--inflight")])
def test_an_old_flag_name_is_a_usage_error(command: str, old: str) -> None:
    result = CliRunner().invoke(main, [command, old, "5"])
    assert result.exit_code == 2
    assert f"No such option '{old}'" in result.output


def test_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = every_field_changed()
    assert Settings.from_env(settings.to_env()) == settings
    monkeypatch.setenv(SERVICE_CONFIG_VAR, ServiceConfig(settings, "hybrid", worker=False).to_env())
    assert ServiceConfig.from_env() == ServiceConfig(settings, "hybrid", worker=False)


def test_a_bad_variable_is_a_one_line_usage_error() -> None:
    result = CliRunner().invoke(main, ["drain"], env={"FANOUT_POOL_SIZE": "many"})
    assert result.exit_code == 2
    assert "FANOUT_POOL_SIZE='many' is not an integer" in result.output


def test_the_service_child_receives_every_setting(tmp_path: Path) -> None:
    settings = every_field_changed(connectable=True)
    log = tmp_path / "serve.log"
    try:
        with ServiceProcess(settings, "push", log=log) as service:
            metrics = requests.get(service.url + "/metrics", timeout=10).json()
    finally:
        asyncio.run(drop_namespace(settings))
    # `fanout serve` prints the settings it passes to the app (ServiceConfig, round-tripped above).
    lines = [line for line in log.read_text().splitlines() if line.startswith("settings: ")]
    assert lines == [f"settings: {settings.describe()}"]
    assert metrics["fanout"]["mode"] == "sync"  # and the app itself runs with them
