"""The fleet charts on the spec level: engines side by side, balance, the slowest engine."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from chart_frames import (
    empty_requests,
    empty_steps,
    is_no_data,
    rows_of,
    synthetic_requests,
    synthetic_steps,
    units,
    units_with_mark,
)

from sagellm_obs import charts
from sagellm_obs.charts import fleet as fleet_charts


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Three engines; engine-2's TTFT is tripled and it gets every third request twice over."""
    req = synthetic_requests(3000, engines=3, rate=200)
    req = req.with_columns(
        pl.when(pl.col("engine_id") == "engine-2")
        .then(pl.col("ttft_s") * 3)
        .otherwise(pl.col("ttft_s"))
        .alias("ttft_s")
    )
    return req, synthetic_steps(3000, engines=3)


def _rows(spec: dict[str, Any], mark: str) -> list[dict[str, Any]]:
    return [r for u in units_with_mark(spec, mark) for r in rows_of(spec, u)]


def test_engine_latency_has_p50_and_p99_per_engine(frames: Any) -> None:
    req, _ = frames
    spec = charts.engine_latency(req).to_dict()
    rows = spec["datasets"][spec["data"]["name"]]
    assert {r["engine"] for r in rows} == {"engine-0", "engine-1", "engine-2"}
    assert {r["metric"] for r in rows} == {"TTFT", "TPOT", "E2E"}
    ttft = {(r["engine"], r["quantile"]): r["ms"] for r in rows if r["metric"] == "TTFT"}
    assert ttft[("engine-2", "p50")] > 2 * ttft[("engine-0", "p50")]
    assert all(ttft[(e, "p99")] >= ttft[(e, "p50")] for e in ("engine-0", "engine-1"))
    ok = req.filter(pl.col("error_type").is_null() & (pl.col("engine_id") == "engine-1"))
    assert ttft[("engine-1", "p50")] == pytest.approx(ok["ttft_s"].quantile(0.5, "linear") * 1000)
    assert spec["facet"]["column"]["field"] == "metric"
    marks = {m for u in units(spec["spec"]) for m in [u["mark"]["type"]]}
    assert marks == {"bar", "tick"}


def test_engine_colours_agree_between_charts(frames: Any) -> None:
    req, steps = frames
    scales = []
    for chart in (
        charts.engine_latency(req),
        charts.engine_kv_usage(steps, requests=req),
        charts.engine_queue(steps, requests=req),
        charts.engine_imbalance(req, steps=steps),
        charts.slowest_engine_chart(req, steps=steps),
    ):
        spec = chart.to_dict()
        found = [
            u["encoding"]["color"]["scale"]
            for u in units(spec.get("spec", spec))
            if u.get("encoding", {}).get("color", {}).get("field") == "engine"
        ]
        assert found, spec
        scales.extend(found)
    assert all(s == scales[0] for s in scales)
    assert scales[0]["domain"] == ["engine-0", "engine-1", "engine-2"]


def test_kv_and_queue_lines_per_engine(frames: Any) -> None:
    _req, steps = frames
    for chart, column, agg in (
        (charts.engine_kv_usage(steps, every="1s"), "kv_cache_usage", "max"),
        (charts.engine_queue(steps, every="1s"), "waiting", "mean"),
    ):
        spec = chart.to_dict()
        rows = _rows(spec, "line")
        assert {r["engine"] for r in rows} == {"engine-0", "engine-1", "engine-2"}
        first = steps.filter(pl.col("engine_id") == "engine-1").sort("time")
        bucket = first.group_by_dynamic("time", every="1s").agg(getattr(pl.col(column), agg)())
        want = float(bucket[column][0])
        got = sorted((r for r in rows if r["engine"] == "engine-1"), key=lambda r: r["time"])
        assert got[0]["value"] == pytest.approx(want)


def test_imbalance_shares_add_up_per_bucket(frames: Any) -> None:
    req, _steps = frames
    # engine-0 takes every request of the second half: the balance chart must show it.
    half = req.height // 2
    skewed = pl.concat(
        [
            req.head(half),
            req.tail(req.height - half).with_columns(
                engine_id=pl.lit("engine-0", dtype=pl.Categorical)
            ),
        ]
    )
    rows = fleet_charts.imbalance_rows(skewed, every="1s")
    sums = rows.group_by("time", "share").agg(pl.col("value").sum())
    assert sums["value"].to_list() == pytest.approx([1.0] * sums.height)
    last = rows.filter(pl.col("time") == rows["time"].max(), pl.col("share") == "requests")
    assert last.filter(pl.col("engine") == "engine-0")["value"].item() == 1.0
    spec = charts.engine_imbalance(skewed, every="1s").to_dict()
    (area,) = units_with_mark(spec["spec"], "area")
    assert area["encoding"]["y"]["stack"] == "normalize"
    assert spec["facet"]["row"]["field"] == "share"
    assert {r["share"] for r in spec["datasets"][spec["data"]["name"]]} == {
        "requests",
        "output tokens",
    }


def test_slowest_engine_is_marked_against_the_fleet_p99(frames: Any) -> None:
    req, steps = frames
    spec = charts.slowest_engine_chart(req, steps=steps).to_dict()
    bars = _rows(spec, "bar")
    slowest = [r for r in bars if r["slowest"]]
    assert [r["engine"] for r in slowest] == ["engine-2"]
    (rule,) = _rows(spec, "rule")
    ok = req.filter(pl.col("error_type").is_null())
    assert rule["ms"] == pytest.approx(ok["ttft_s"].quantile(0.99, "linear") * 1000)
    assert "engine-2" in spec["title"]["subtitle"]
    with pytest.raises(ValueError, match="p99"):
        charts.slowest_engine_chart(req, metric="prefill_s")


def test_data_parallel_ranks_are_engines_of_their_own(frames: Any) -> None:
    req, _steps = frames
    one = req.with_columns(
        engine_id=pl.lit("127.0.0.1:8000"), engine_idx=pl.int_range(pl.len()) % 2
    )
    spec = charts.engine_latency(one).to_dict()
    rows = spec["datasets"][spec["data"]["name"]]
    assert {r["engine"] for r in rows} == {"127.0.0.1:8000#0", "127.0.0.1:8000#1"}


def test_empty_fleet_charts_say_no_data() -> None:
    req, steps = empty_requests(), empty_steps()
    for chart in (
        charts.engine_latency(req),
        charts.engine_kv_usage(steps),
        charts.engine_queue(steps),
        charts.engine_imbalance(req),
        charts.slowest_engine_chart(req),
    ):
        assert is_no_data(chart.to_dict())
    spec = charts.fleet_dashboard(req, steps).to_dict()
    assert len(spec["vconcat"]) == 5
