"""Degenerate inputs give a valid (schema-checked) chart, never an exception."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from chart_frames import START, empty_requests, empty_steps, is_no_data, requests_frame
from chart_frames import synthetic_steps as _steps

from sagellm_obs import charts


@dataclass
class _Frames:
    requests: pl.DataFrame
    steps: pl.DataFrame


REQUEST_CHARTS: dict[str, Callable[[pl.DataFrame], Any]] = {
    "ttft histogram": lambda r: charts.latency_distribution(r, "ttft_s"),
    "e2e ecdf": lambda r: charts.latency_distribution(r, "e2e_s", kind="ecdf"),
    "over time": charts.latency_over_time,
    "ttft vs prompt": charts.ttft_vs_prompt,
    "waterfall": charts.request_waterfall,
    "cached share by request": charts.cached_share_by_request,
    "compare": lambda r: charts.compare_runs({"A": r, "B": r}),
    "dashboard": lambda r: charts.run_dashboard(_Frames(r, empty_steps())),
}
STEP_CHARTS: dict[str, Callable[[pl.DataFrame], Any]] = {
    "kv usage": charts.kv_usage,
    "prefix hit rate": charts.prefix_hit_rate,
    "throughput": charts.throughput,
    "concurrency": charts.concurrency,
    "dashboard": lambda s: charts.run_dashboard(_Frames(empty_requests(), s)),
}


@pytest.mark.parametrize("name", REQUEST_CHARTS)
def test_empty_requests(name: str) -> None:
    spec = REQUEST_CHARTS[name](empty_requests()).to_dict()  # validates against Vega-Lite
    assert is_no_data(spec)


@pytest.mark.parametrize("name", STEP_CHARTS)
def test_empty_steps(name: str) -> None:
    assert is_no_data(STEP_CHARTS[name](empty_steps()).to_dict())


@pytest.mark.parametrize("name", REQUEST_CHARTS)
def test_one_request_and_null_latencies(name: str) -> None:
    one = requests_frame(
        [
            {
                "request_id": "only",
                "arrival": START,
                "ttft_s": 0.01,
                "e2e_s": 0.02,
                "queue_s": 0.0,
                "prefill_s": 0.01,
                "decode_s": 0.01,
                "input_tokens": 0,
                "cached_prompt_share": None,
            },
            {"request_id": "nan", "arrival": START + timedelta(seconds=1), "ttft_s": float("nan")},
        ]
    )
    REQUEST_CHARTS[name](one).to_dict()


@pytest.mark.parametrize("name", STEP_CHARTS)
def test_one_step(name: str) -> None:
    STEP_CHARTS[name](_steps(1)).to_dict()


def test_frames_missing_columns_give_no_data() -> None:
    bare = pl.DataFrame({"request_id": ["a"]})
    assert is_no_data(charts.latency_distribution(bare).to_dict())
    assert is_no_data(charts.request_waterfall(bare).to_dict())
    assert is_no_data(charts.kv_usage(pl.DataFrame({"x": [1]})).to_dict())
