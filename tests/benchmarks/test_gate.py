"""The gate's own logic: cost figures against a baseline file, and the two-commit summary of bench.regress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.regress import summarise
from tests.benchmarks.costs import LOOSE_FACTOR, UPDATE_VAR, check_costs


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    path = tmp_path / "costs.json"
    path.write_text(json.dumps({"read": {"pg_queries": 2, "pg_rows": 50, "worker_redis_round_trips": 10}}))
    return path


def test_a_rise_fails_naming_figure_old_new_and_the_update_command(baseline: Path) -> None:
    with pytest.raises(AssertionError) as failure:
        check_costs("read", {"pg_queries": 404, "pg_rows": 50, "worker_redis_round_trips": 10}, baseline=baseline)
    message = str(failure.value)
    assert "read" in message and "pg_queries rose from 2 to 404" in message and "pg_rows" not in message
    assert f"{UPDATE_VAR}=1" in message and "costs.json" in message


def test_equal_passes_and_a_fall_only_warns(baseline: Path) -> None:
    check_costs("read", {"pg_queries": 2, "pg_rows": 50, "worker_redis_round_trips": 10}, baseline=baseline)
    with pytest.warns(UserWarning, match="pg_rows fell from 50 to 40"):
        check_costs("read", {"pg_queries": 2, "pg_rows": 40, "worker_redis_round_trips": 10}, baseline=baseline)


def test_missing_or_unknown_figures_and_benchmarks_fail(baseline: Path) -> None:
    with pytest.raises(AssertionError, match="no cost baseline"):
        check_costs("publish", {"pg_queries": 1}, baseline=baseline)
    with pytest.raises(AssertionError, match="redis_commands \\(measured 3\\) has no baseline"):
        check_costs("read", {"pg_queries": 2, "pg_rows": 50, "worker_redis_round_trips": 10, "redis_commands": 3},
                    baseline=baseline)  # fmt: skip
    with pytest.raises(AssertionError, match="pg_rows \\(baseline 50\\) was not measured"):
        check_costs("read", {"pg_queries": 2, "worker_redis_round_trips": 10}, baseline=baseline)


def test_loose_figures_fail_only_above_the_factor(baseline: Path) -> None:
    figures = {"pg_queries": 2, "pg_rows": 50}
    loose = ("worker_redis_round_trips",)
    check_costs("read", {**figures, "worker_redis_round_trips": 10 * LOOSE_FACTOR}, loose, baseline=baseline)
    with pytest.raises(AssertionError, match="worker_redis_round_trips rose from 10 to 10000"):
        check_costs("read", {**figures, "worker_redis_round_trips": 10_000}, loose, baseline=baseline)


def test_update_rewrites_only_that_entry(baseline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UPDATE_VAR, "1")
    check_costs("publish", {"redis_round_trips": 11}, baseline=baseline)
    assert json.loads(baseline.read_text()) == {
        "publish": {"redis_round_trips": 11},
        "read": {"pg_queries": 2, "pg_rows": 50, "worker_redis_round_trips": 10},
    }


def _run(path: Path, mins: dict[str, float], extra: dict[str, dict[str, int]]) -> Path:
    benchmarks = [{"name": n, "stats": {"min": m}, "extra_info": extra.get(n, {})} for n, m in mins.items()]
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


def test_summary_takes_each_commits_best_run_and_shows_cost_changes(tmp_path: Path) -> None:
    runs = {
        "aaa": [
            _run(tmp_path / "a0.json", {"read": 0.002, "load": 1.0}, {"read": {"pg_queries": 2}}),
            _run(tmp_path / "a1.json", {"read": 0.001, "load": 1.2}, {"read": {"pg_queries": 2}}),
        ],
        "bbb": [
            _run(tmp_path / "b0.json", {"read": 0.004}, {"read": {"pg_queries": 404}}),
            _run(tmp_path / "b1.json", {"read": 0.003}, {"read": {"pg_queries": 404}}),
        ],
    }
    table = summarise(runs)
    cells = {col.header: list(col.cells) for col in table.columns}
    assert cells["benchmark"] == ["load", "read"]
    assert cells["aaa min (ms)"] == ["1000.000", "1.000"] and cells["bbb min (ms)"] == ["-", "3.000"]
    assert cells["ratio"] == ["-", "3.00"]
    assert cells["cost figures that differ"] == ["same", "pg_queries 2 -> 404"]
