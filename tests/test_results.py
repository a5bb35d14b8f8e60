"""Result files: metadata from the real stores, histogram round trips, validation, atomic writes, clear errors."""

from __future__ import annotations

import copy
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import pytest

from bench.results import (
    PG_SETTINGS,
    InvalidResult,
    block_histogram,
    decode_histogram,
    encode_histogram,
    finish,
    latency_block,
    load_result,
    run_metadata,
    validation_error,
    write_result,
)
from targets.stores.connections import Stores
from tests.conftest import namespace_settings
from tests.result_factory import recorded, sample_result


@pytest.fixture(scope="module")
async def run() -> dict[str, Any]:
    """Run metadata from the real servers (it only reads their versions, so no schema is created)."""
    stores = await Stores.connect(namespace_settings(), create=False)
    try:
        return await run_metadata(stores, parameters={"rate": 50.0, "read_ratio": 0.95}, seed=3, command="fanout bench")
    finally:
        await stores.close()


async def test_run_metadata_comes_from_the_servers_and_the_checkout(stores: Stores, run: dict[str, Any]) -> None:
    info = await stores.redis.info("server")
    async with stores.pg.acquire() as conn:
        version_num = int(await conn.fetchval("SHOW server_version_num"))
    assert run["redis"]["version"] == info["redis_version"]
    assert run["postgres"]["version_num"] == version_num
    assert run["postgres"]["version"].split(".")[0] == str(version_num // 10000)
    # The settings that move the figures, as the server shows them (io_method exists from 18 on).
    settings = run["postgres"]["settings"]
    async with stores.pg.acquire() as conn:
        assert settings["shared_buffers"] == await conn.fetchval("SHOW shared_buffers")
        assert settings["jit"] == await conn.fetchval("SHOW jit")
    assert set(settings) == set(PG_SETTINGS) - ({"io_method"} if version_num < 180000 else set())
    assert run["cpu_count"] == os.cpu_count()
    assert re.fullmatch(r"[0-9a-f]{40}", run["git"]["commit"])  # the tests run from the git checkout
    assert isinstance(run["git"]["dirty"], bool)
    assert run["seed"] == 3 and run["parameters"] == {"rate": 50.0, "read_ratio": 0.95}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", run["started_at"])


def test_histogram_encoding_round_trips_every_percentile() -> None:
    original = recorded(random.Random(1), 5000, 800, tail_us=50_000)
    copy_ = decode_histogram(encode_histogram(original))
    assert copy_.get_total_count() == original.get_total_count() == 5000
    for p in (0, 1, 10, 50, 90, 99, 99.9, 99.99, 100):
        assert copy_.get_value_at_percentile(p) == original.get_value_at_percentile(p)
    assert copy_.get_min_value() == original.get_min_value()
    assert copy_.get_max_value() == original.get_max_value()


def test_latency_block_summarises_in_milliseconds() -> None:
    hist = recorded(random.Random(2), 1000, 1500)
    block = latency_block(hist, uncorrected=recorded(random.Random(3), 1000, 500))
    assert block["count"] == 1000
    assert block["p99_ms"] == hist.get_value_at_percentile(99) / 1000
    assert block["max_ms"] == hist.get_max_value() / 1000
    figures = [block[k] for k in ("min_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")]
    assert figures == sorted(figures)
    assert block["uncorrected"]["count"] == 1000 and block["uncorrected"]["p50_ms"] < block["p50_ms"]
    assert block_histogram(block).get_value_at_percentile(99.9) == hist.get_value_at_percentile(99.9)
    empty = latency_block(recorded(random.Random(4), 0, 1))
    assert empty["count"] == 0 and empty["p99_ms"] is None and empty["mean_ms"] is None


def test_written_result_validates_and_reads_back(run: dict[str, Any], tmp_path: Path) -> None:
    doc = sample_result(run)
    assert validation_error(doc) is None
    path = write_result(doc, tmp_path / "run.json")
    assert path == tmp_path / "run.json"
    loaded = load_result(path)
    assert loaded == json.loads(json.dumps(doc))
    original = decode_histogram(doc["strategies"]["pull"]["read"]["histogram"])
    assert block_histogram(loaded["strategies"]["pull"]["read"]).get_value_at_percentile(99) == (
        original.get_value_at_percentile(99)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temporary file left behind


def test_default_path_is_timestamp_and_scenario_under_results(
    run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    doc = sample_result(run, scenario="steady")
    first, second = write_result(doc), write_result(doc)
    stamp = re.sub(r"[-:]|\.\d+", "", doc["run"]["started_at"])
    assert first == Path("results") / f"{stamp}-steady.json"
    assert second == Path("results") / f"{stamp}-steady-2.json"
    assert load_result(second)["scenario"] == "steady"


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: d["strategies"]["push"]["read"].pop("p99_ms"), r"strategies/push/read.*'p99_ms' is a required"),
        (lambda d: d["strategies"]["hybrid"].pop("spike"), r"strategies/hybrid.*'spike' is a required"),
        (lambda d: d["strategies"]["pull"]["read"].pop("histogram"), r"strategies/pull/read.*'histogram'"),
        (lambda d: d["strategies"]["push"]["publish"].update(count=-1), r"strategies/push/publish/count.*-1"),
        (lambda d: d["run"].pop("seed"), r"at run: 'seed' is a required property"),
        (lambda d: d.update(scenario="storm"), r"at scenario: 'storm' is not one of"),
    ],
)
def test_invalid_document_is_refused_and_nothing_is_written(
    run: dict[str, Any], tmp_path: Path, damage: Any, expected: str
) -> None:
    doc = sample_result(run)
    damage(doc)
    with pytest.raises(InvalidResult, match=expected) as caught:
        write_result(doc, tmp_path / "bad.json")
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_not_a_number_is_refused(run: dict[str, Any], tmp_path: Path) -> None:
    doc = sample_result(run)
    doc["strategies"]["push"]["load"]["achieved_rate"] = float("nan")
    with pytest.raises(InvalidResult, match="not valid JSON"):
        write_result(doc, tmp_path / "nan.json")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_run_validates_with_what_it_measured(run: dict[str, Any], tmp_path: Path) -> None:
    doc = sample_result(run, strategies=("push", "pull"))
    cut = doc["strategies"]["pull"]
    for part in ("series", "store_counters", "errors", "memory", "oracle", "spike"):
        del cut[part]
    cut["complete"] = False
    finish(doc, complete=False, reason="interrupted (Ctrl-C)")
    assert load_result(write_result(doc, tmp_path / "cut.json"))["incomplete_reason"] == "interrupted (Ctrl-C)"
    whole = copy.deepcopy(doc)
    whole["complete"] = True  # a complete spike run needs every strategy's spike block
    assert "'spike' is a required property" in (validation_error(whole) or "")


def test_load_errors_name_the_file_and_the_problem(run: dict[str, Any], tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    not_json = tmp_path / "notes.json"
    not_json.write_text("p99 was fine\n")
    foreign = tmp_path / "package.json"
    foreign.write_text('{"name": "left-pad"}')
    broken = tmp_path / "broken.json"
    doc = sample_result(run)
    doc["strategies"]["push"]["write_amplification"] = "lots"
    broken.write_text(json.dumps(doc))
    cases = {
        missing: "no such file",
        not_json: "not JSON (Expecting value at line 1 column 1)",
        foreign: "not a fanout-bench result",
        broken: "at strategies/push/write_amplification: 'lots' is not of type",
    }
    for path, problem in cases.items():
        with pytest.raises(InvalidResult) as caught:
            load_result(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


@pytest.mark.parametrize("example", sorted((Path(__file__).parent.parent / "results" / "examples").glob("*.json")))
def test_curated_examples_follow_the_schema(example: Path) -> None:
    doc = load_result(example)
    assert doc["complete"] and doc["strategies"]
