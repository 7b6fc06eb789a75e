"""frames.fleet: engine labels, per-engine stats, shares over time, the slowest engine."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from sagellm_obs.frames import fleet
from sagellm_obs.frames.schemas import REQUESTS, STEPS, conform

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _requests(rows: list[dict[str, object]]) -> pl.DataFrame:
    return conform(pl.DataFrame(rows, infer_schema_length=None), REQUESTS)


def _steps(rows: list[dict[str, object]]) -> pl.DataFrame:
    return conform(pl.DataFrame(rows, infer_schema_length=None), STEPS)


def _req(i: int, engine: str, idx: int = 0, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "request_id": f"r{i}",
        "engine_id": engine,
        "engine_idx": idx,
        "arrival": T0 + timedelta(seconds=i * 0.5),
        "ttft_s": 0.1,
        "e2e_s": 1.0,
        "queue_s": 0.01,
        "tpot_s": 0.02,
        "input_tokens": 100,
        "output_tokens": 10,
        "cancelled": False,
    }
    row.update(over)
    return row


def _step(i: int, engine: str, idx: int = 0, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "time": T0 + timedelta(seconds=i * 0.1),
        "engine_id": engine,
        "engine_idx": idx,
        "step": i,
        "running": 2,
        "waiting": 1,
        "kv_cache_usage": 0.2,
        "prefix_queries": 10,
        "prefix_hits": 5,
    }
    row.update(over)
    return row


def test_one_engine_is_not_a_fleet() -> None:
    req = _requests([_req(i, "a:1") for i in range(4)])
    assert fleet.engines(req) == ["a:1"]
    assert not fleet.is_fleet(req, _steps([_step(0, "a:1")]))
    assert fleet.engine_stats(req).height == 1


def test_labels_name_ranks_only_for_data_parallel_instances() -> None:
    req = _requests([_req(0, "a:1", 0), _req(1, "a:1", 1), _req(2, "b:2", 0), _req(3, "b:2", None)])
    assert fleet.engines(req) == ["a:1#0", "a:1#1", "b:2"]
    # A rank seen only in the steps still makes its instance data-parallel in both frames.
    steps = _steps([_step(0, "b:2", 0), _step(1, "b:2", 1)])
    r, s = fleet.engine_labels(req, steps)
    assert set(r["engine"]) == {"a:1#0", "a:1#1", "b:2#0"}
    assert set(s["engine"]) == {"b:2#0", "b:2#1"}
    assert fleet.engines(req, steps) == ["a:1#0", "a:1#1", "b:2#0", "b:2#1"]
    nameless = _requests([_req(0, None)])  # type: ignore[arg-type]
    assert fleet.engines(nameless) == [fleet.UNKNOWN]


def test_engine_stats_split_and_add_up() -> None:
    rows = [_req(i, "a:1") for i in range(6)]
    rows += [_req(10 + i, "b:2", ttft_s=0.5, output_tokens=30) for i in range(2)]
    rows.append(_req(20, "b:2", error_type="timeout", ttft_s=9.0))
    req = _requests(rows)
    steps = _steps(
        [_step(i, "a:1", kv_cache_usage=0.1 * i, waiting=i) for i in range(4)]
        + [_step(i, "b:2", kv_cache_usage=0.9, waiting=7, prefix_queries=0) for i in range(2)]
    )
    stats = fleet.engine_stats(req, steps)
    assert stats.schema == fleet.ENGINE_STATS
    a, b = (
        stats.filter(pl.col("engine") == "a:1").row(0, named=True),
        stats.filter(pl.col("engine") == "b:2").row(0, named=True),
    )
    assert (a["requests"], a["ok"], a["failed"]) == (6, 6, 0)
    assert (b["requests"], b["ok"], b["failed"]) == (3, 2, 1)
    assert a["request_share"] + b["request_share"] == pytest.approx(1.0)
    assert b["request_share"] == pytest.approx(3 / 9)
    assert a["output_tokens"] == 60 and b["output_tokens"] == 70
    assert b["token_share"] == pytest.approx(70 / 130)
    assert b["ttft_p99_s"] == pytest.approx(0.5)  # the failed request is not in the latencies
    assert a["ttft_p50_s"] == pytest.approx(0.1)
    # One duration for the fleet: the throughputs add up to the fleet's.
    duration = (10.0 - 0.0) + 1.0  # first arrival 0 s, last finish 10 s + 1 s
    assert a["request_throughput"] == pytest.approx(6 / duration)
    assert a["output_token_throughput"] + b["output_token_throughput"] == pytest.approx(
        130 / duration
    )
    assert a["kv_usage_peak"] == pytest.approx(0.3) and b["kv_usage_mean"] == pytest.approx(0.9)
    assert a["waiting_mean"] == pytest.approx(1.5) and b["waiting_peak"] == 7
    assert a["prefix_hit_rate"] == pytest.approx(0.5) and b["prefix_hit_rate"] is None
    top = fleet.slowest_engine(req, steps)
    assert top is not None and top["engine"] == "b:2"
    assert top["p99_s"] == pytest.approx(0.5)
    assert top["ratio"] == pytest.approx(0.5 / top["fleet_p99_s"])


def test_an_engine_with_steps_but_no_requests_is_listed() -> None:
    req = _requests([_req(0, "a:1")])
    steps = _steps([_step(0, "a:1"), _step(1, "idle:3", waiting=0)])
    stats = fleet.engine_stats(req, steps)
    idle = stats.filter(pl.col("engine") == "idle:3").row(0, named=True)
    assert idle["requests"] == 0 and idle["steps"] == 1 and idle["request_share"] == 0.0
    assert fleet.is_fleet(req, steps)


def test_a_missing_engine_id_and_the_unknown_label_are_one_engine() -> None:
    # Stats group on the stored (engine_id, engine_idx) pair and label the groups: two stored
    # ids that label alike ("unknown" and a null id) must still make one row, not two.
    req = _requests([_req(0, "unknown"), _req(1, "a"), _req(2, "a")]).with_columns(
        pl.when(pl.col("request_id") == "r0")
        .then(None)
        .otherwise(pl.col("engine_id"))
        .alias("engine_id")
    )
    req = pl.concat([req, _requests([_req(3, "unknown", ttft_s=0.5)])])
    stats = fleet.engine_stats(req)
    assert stats["engine"].to_list() == ["a", "unknown"]
    assert stats["requests"].to_list() == [2, 2]
    assert stats["ttft_p99_s"][1] == pytest.approx(0.1 + 0.99 * 0.4)


def test_shares_over_time() -> None:
    # First second: a gets 2, b gets 0; second: 1 and 1 (arrivals every 0.5 s).
    req = _requests(
        [
            _req(0, "a:1", output_tokens=10),
            _req(1, "a:1", output_tokens=30),
            _req(2, "a:1", output_tokens=10),
            _req(3, "b:2", output_tokens=30),
        ]
    )
    shares = fleet.engine_shares(req, every="1s")
    first = shares.filter(pl.col("time") == T0)
    assert first["engine"].to_list() == ["a:1"] and first["request_share"].item() == 1.0
    second = shares.filter(pl.col("time") == T0 + timedelta(seconds=1))
    assert second["request_share"].to_list() == [0.5, 0.5]
    assert second["token_share"].to_list() == [0.25, 0.75]
    assert fleet.engine_shares(req.clear()).height == 0
