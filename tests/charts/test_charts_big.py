"""Spec size at 1M requests: every chart reduces its frame in Polars before Altair sees it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest
from chart_frames import synthetic_requests, synthetic_steps

from sagellm_obs import charts

LIMIT = 2_000_000


@dataclass
class _Frames:
    requests: pl.DataFrame
    steps: pl.DataFrame


@pytest.fixture(scope="module")
def big() -> _Frames:
    return _Frames(synthetic_requests(1_000_000, engines=2), synthetic_steps(500_000, engines=2))


CHARTS: dict[str, Callable[[_Frames], Any]] = {
    "ttft histogram": lambda f: charts.latency_distribution(f.requests, "ttft_s"),
    "e2e ecdf": lambda f: charts.latency_distribution(f.requests, "e2e_s", kind="ecdf"),
    "ttft over time": lambda f: charts.latency_over_time(f.requests, "ttft_s"),
    "ttft vs prompt": lambda f: charts.ttft_vs_prompt(f.requests),
    "waterfall": lambda f: charts.request_waterfall(f.requests),
    "cached share by request": lambda f: charts.cached_share_by_request(f.requests),
    "kv usage": lambda f: charts.kv_usage(f.steps),
    "prefix hit rate": lambda f: charts.prefix_hit_rate(f.steps),
    "throughput": lambda f: charts.throughput(f.steps),
    "concurrency": lambda f: charts.concurrency(f.steps),
    "compare": lambda f: charts.compare_runs({"A": f.requests, "B": f.requests.tail(500_000)}),
    "dashboard": charts.run_dashboard,
}


@pytest.mark.parametrize("name", CHARTS)
def test_spec_stays_small_for_a_million_requests(big: _Frames, name: str) -> None:
    # Build time is measured by `make bench` (benchmarks/charts), never asserted here.
    spec = CHARTS[name](big).to_dict()
    size = len(json.dumps(spec))
    assert size < LIMIT, f"{name}: spec is {size:,} bytes"
