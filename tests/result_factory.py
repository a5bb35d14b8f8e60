"""Result documents for the result-file and report tests, built from HdrHistograms the tests record themselves.

The values come from a seeded random generator (so the tests are deterministic); they exercise the format and the
report, they are not measurements of anything.
"""

from __future__ import annotations

import copy
import random
from functools import cache
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.results import latency_block, new_result
from targets.histograms import new_histogram, record_us

STRATEGIES = ("push", "pull", "hybrid")
#: Mean read latency (µs) and timeline entries per post of each strategy in the generated documents.
SHAPE = {"push": (400, 30.0), "pull": (2500, 0.0), "hybrid": (600, 4.0)}


def recorded(rng: random.Random, n: int, mean_us: float, *, tail_us: float = 0.0) -> HdrHistogram:
    """A histogram of ``n`` exponential values around ``mean_us`` (1% of them ``tail_us`` slower)."""
    hist = new_histogram()
    for _ in range(n):
        value = rng.expovariate(1 / mean_us) + (tail_us if rng.random() < 0.01 else 0.0)
        record_us(hist, round(value))
    return hist


def strategy_figures(rng: random.Random, name: str, scenario: str, duration_s: int = 20) -> dict[str, Any]:
    """One strategy's block with every field the schema knows of."""
    read_us, amplification = SHAPE.get(name, (1000, 1.0))
    reads, posts = 950, 50
    entries = round(posts * amplification)
    lag = recorded(rng, entries, 2000) if entries else new_histogram()
    figures: dict[str, Any] = {
        "complete": True,
        "read": latency_block(recorded(rng, reads, read_us, tail_us=20_000), uncorrected=recorded(rng, reads, read_us)),
        "publish": latency_block(recorded(rng, posts, 800), uncorrected=recorded(rng, posts, 700)),
        "delivery_lag": latency_block(lag),
        "write_amplification": amplification,
        "timeline_entries_written": entries,
        "load": {
            "target_rate": 50.0,
            "offered_rate": 50.0,
            "achieved_rate": 49.5,
            "duration_s": float(duration_s),
            "operations": reads + posts,
            "arrivals": "poisson",
            "in_flight_limit": 256,
            "in_flight_limit_hits": 0,
        },
        "series": [
            {
                "t_s": float(t),
                "throughput": 50.0,
                "p99_ms": round(read_us * (6 if t == 10 else 3) / 1000, 3),
                "read_p99_ms": round(read_us * (6 if t == 10 else 3) / 1000, 3),
                "errors": 0,
            }
            for t in range(duration_s)
        ],
        "series_window_s": 1.0,
        "store_counters": {
            "operations": reads + posts,
            "redis_commands": 3000,
            "redis_commands_per_op": 3.0,
            "pg_rows_read": 9000,
            "pg_rows_written": 50,
            "pg_rows_read_per_op": 9.0,
            "pg_rows_written_per_op": 0.05,
            "client": {"redis_round_trips": 2500, "redis_commands": 2800, "pg_queries": 400, "pg_rows": 9000},
        },
        "errors": {},
        "memory": {"redis_used_memory_bytes": 4_000_000, "pg_table_bytes": {"users": 65536, "follows": 262144}},
        "oracle": {"verdict": "pass", "users_checked": 50, "mismatched_users": []},
    }
    if scenario == "spike":
        spike_entries = round(3 * amplification * 100)
        figures["spike"] = {
            "at_s": 10.0,
            "during_s": 2.0,
            "celebrities": [{"user_id": 1, "followers": 3000}],
            "posts": 3,
            "reads": {
                "before": latency_block(recorded(rng, 300, read_us), encode=False),
                "during": latency_block(recorded(rng, 60, read_us * 3), encode=False),
                "after": latency_block(recorded(rng, 300, read_us), encode=False),
            },
            "publish": latency_block(recorded(rng, 3, 900)),
            "delivery_lag": latency_block(recorded(rng, spike_entries, 40_000) if spike_entries else new_histogram()),
            "time_to_full_delivery_ms": 120.0 if spike_entries else None,
            "write_amplification": spike_entries / 3,
            "timeline_entries_written": spike_entries,
            "redis_memory_growth_bytes": spike_entries * 60,
            "timelines_memory_growth_bytes": spike_entries * 50 if spike_entries else None,
        }
    return figures


def sample_result(
    run: dict[str, Any], scenario: str = "spike", strategies: tuple[str, ...] = STRATEGIES, seed: int = 7
) -> dict[str, Any]:
    """A complete, valid result document (``run`` from :func:`bench.results.run_metadata`)."""
    doc = new_result(
        scenario, copy.deepcopy(run), {"users": 3000, "follows": 24000, "max_followers": 3000, "celebrities": 1}
    )
    doc["strategies"] = copy.deepcopy(_figures(scenario, strategies, seed))
    doc["complete"] = True
    doc["run"]["finished_at"] = doc["run"]["started_at"]
    return doc


@cache
def _figures(scenario: str, strategies: tuple[str, ...], seed: int) -> dict[str, Any]:
    # Summarising histograms is slow in pure Python (a mean walks every bucket): build each variant once.
    rng = random.Random(seed)
    return {name: strategy_figures(rng, name, scenario) for name in strategies}
