"""The dashboard's linked views: one interval brush on the timelines filters the request charts."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import polars as pl
from chart_frames import (
    empty_requests,
    empty_steps,
    is_no_data,
    rows_of,
    synthetic_requests,
    synthetic_steps,
    units,
)

from sagellm_obs.charts import run_dashboard


@dataclass
class _Frames:
    requests: pl.DataFrame
    steps: pl.DataFrame


def _spec(requests: pl.DataFrame, steps: pl.DataFrame) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return run_dashboard(_Frames(requests, steps)).to_dict()


def _filters(unit: dict[str, Any]) -> list[Any]:
    return [t["filter"] for t in unit.get("transform", []) if "filter" in t]


def test_brush_on_both_timelines_filters_every_request_chart() -> None:
    spec = _spec(synthetic_requests(2000), synthetic_steps(3000))
    assert spec["params"] == [
        {
            "name": "brush",
            "select": {"type": "interval", "encodings": ["x"]},
            "views": ["kv_timeline", "queue_timeline"],
        }
    ]
    names = [v.get("name") for v in spec["vconcat"]]
    assert names[:2] == ["kv_timeline", "queue_timeline"]
    for timeline in spec["vconcat"][:2]:
        x = timeline["encoding"]["x"]
        assert (x["field"], x["type"]) == ("time", "temporal")
    request_units = [u for view in spec["vconcat"][2:] for u in units(view)]
    assert len(request_units) >= 8  # 2 histograms with rules and labels, scatter, waterfall
    for unit in request_units:
        rows = rows_of(spec, unit)
        assert rows and "time" in rows[0], unit["mark"]
    # TTFT and E2E histograms, scatter and waterfall each filter on the brush (every layer).
    filtered = [
        view
        for view in spec["vconcat"][2:]
        for sub in (view.get("hconcat") or [view])
        if {"param": "brush"} in _filters(sub)
        or all({"param": "brush"} in _filters(layer) for layer in sub.get("layer", [{}]))
    ]
    assert len(filtered) == 4


def test_request_time_is_the_arrival_in_epoch_ms() -> None:
    requests = synthetic_requests(50)
    spec = _spec(requests, synthetic_steps(100))
    scatter = next(u for u in units(spec) if u["mark"]["type"] == "circle")
    times = sorted(r["time"] for r in rows_of(spec, scatter))
    ok = requests.filter(pl.col("error_type").is_null())
    expected = sorted(t.timestamp() * 1000 for t in ok["arrival"].to_list())
    assert times == expected


def test_histogram_quantiles_are_computed_after_the_filter() -> None:
    spec = _spec(synthetic_requests(500), synthetic_steps(100))
    hist = spec["vconcat"][2]["hconcat"][0]
    rule = next(u for u in hist["layer"] if u["mark"]["type"] == "rule")
    transforms = hist.get("transform", []) + rule.get("transform", [])
    kinds = [next(iter(t)) for t in transforms]
    assert kinds.index("filter") < kinds.index("quantile")
    quantile = next(t for t in transforms if "quantile" in t)
    assert quantile["probs"] == [0.5, 0.9, 0.99]


def test_samples_requests_for_big_runs() -> None:
    spec = _spec(synthetic_requests(50_000), synthetic_steps(1000))
    scatter = next(u for u in units(spec) if u["mark"]["type"] == "circle")
    assert len(rows_of(spec, scatter)) == 5000


def test_without_steps_there_is_no_brush() -> None:
    spec = _spec(synthetic_requests(100), empty_steps())
    assert "params" not in spec
    assert is_no_data(spec, spec["vconcat"][0])
    assert all(not _filters(u) for u in units(spec) if u["mark"]["type"] != "text")


def test_without_requests_the_timelines_remain() -> None:
    spec = _spec(empty_requests(), synthetic_steps(100))
    assert spec["params"][0]["views"] == ["kv_timeline", "queue_timeline"]
    assert is_no_data(spec, spec["vconcat"][2])
