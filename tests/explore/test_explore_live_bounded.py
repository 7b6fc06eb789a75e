"""The live view's charts stay small however full the window is, and bin what they draw right.

The live charts are pure functions of a window's frames: checked here on their Vega-Lite specs,
fed windows of thousands of steps and requests (the synthetic frames of the charts' benchmark),
against values computed again in plain Python from the raw rows.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from benchmarks.charts import synthetic_requests, synthetic_steps
from sagellm_obs.explore.live_view import LIVE_POINTS, VIEWS, live_charts
from sagellm_obs.frames.loaded import Frames
from sagellm_obs.frames.schemas import METRICS, SPANS, empty

UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _frames(steps: pl.DataFrame, requests: pl.DataFrame) -> Frames:
    return Frames(
        spans=empty(SPANS), requests=requests, steps=steps, metrics=empty(METRICS), source=Path()
    )


def _window(seconds: float, *, steps_per_s: float = 40.0, engines: int = 1) -> Frames:
    """A full live window: ``seconds`` of steps (``steps_per_s`` per engine) and requests."""
    n = int(seconds * steps_per_s * engines)
    steps = synthetic_steps(n, every_ms=1000.0 / (steps_per_s * engines), engines=engines)
    requests = synthetic_requests(int(seconds * 20), rate=20.0, engines=engines)
    return _frames(steps, requests)


def _datasets(spec: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    return list(spec.get("datasets", {}).values())


def _rows(spec: Mapping[str, Any]) -> int:
    return sum(len(rows) for rows in _datasets(spec))


def _dataset_with(spec: Mapping[str, Any], *keys: str) -> list[dict[str, Any]]:
    (rows,) = [rows for rows in _datasets(spec) if rows and all(k in rows[0] for k in keys)]
    return rows


def _ms(t: datetime) -> float:
    return (t - UTC_EPOCH) / timedelta(milliseconds=1)


def _width_ms(times: list[float]) -> float:
    """The bucket width: the smallest gap between bucket starts (none is empty here)."""
    ordered = sorted(set(times))
    return min(b - a for a, b in itertools.pairwise(ordered))


def _by_bucket(frame: pl.DataFrame, column: str, width_ms: float) -> dict[float, list[Any]]:
    """Rows of ``frame`` (as dicts) by the start of their ``width_ms`` bucket, in plain Python."""
    out: dict[float, list[Any]] = defaultdict(list)
    for row in frame.iter_rows(named=True):
        t = _ms(row[column])
        out[math.floor(t / width_ms) * width_ms].append(row)
    return out


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, the summary's)."""
    s = sorted(values)
    h = (len(s) - 1) * q
    lo = math.floor(h)
    return s[lo] + (h - lo) * (s[min(lo + 1, len(s) - 1)] - s[lo])


@pytest.mark.parametrize(
    ("seconds", "steps_per_s", "engines"),
    [(120, 40.0, 1), (120, 100.0, 2), (600, 40.0, 4), (3, 40.0, 1)],
)
def test_live_specs_stay_under_the_point_bound(
    seconds: float, steps_per_s: float, engines: int
) -> None:
    frames = _window(seconds, steps_per_s=steps_per_s, engines=engines)
    assert frames.steps.height > LIVE_POINTS or seconds < 10
    for name, chart in live_charts(frames).items():
        spec = chart.to_dict()
        assert 0 < _rows(spec) <= LIVE_POINTS, (name, _rows(spec))
    for name, chart in live_charts(frames, points=60).items():
        assert 0 < _rows(chart.to_dict()) <= 60, name


def test_the_bound_holds_where_the_default_charts_exceed_it() -> None:
    """The same window charted with the charts' defaults carries far more rows: the live view's
    widths and samples are what bounds it (else this test could not fail)."""
    from sagellm_obs import charts

    frames = _window(120, steps_per_s=100.0, engines=2)
    default = {
        "queue": charts.concurrency(frames.steps),
        "hit_rate": charts.prefix_hit_rate(frames.steps),
        "ttft": charts.latency_over_time(frames.requests, "ttft_s"),
    }
    for name, chart in default.items():
        assert _rows(chart.to_dict()) > LIVE_POINTS, name
    assert set(live_charts(frames)) == set(VIEWS)


@pytest.fixture(scope="module")
def window() -> Frames:
    return _window(120)


@pytest.fixture(scope="module")
def specs(window: Frames) -> dict[str, dict[str, Any]]:
    return {name: chart.to_dict() for name, chart in live_charts(window).items()}


def test_kv_buckets_are_the_mean_and_peak_of_their_steps(
    window: Frames, specs: dict[str, dict[str, Any]]
) -> None:
    rows = _dataset_with(specs["kv"], "peak", "mean", "steps")
    width = _width_ms([r["time"] for r in rows])
    raw = _by_bucket(window.steps, "time", width)
    assert len(rows) == len(raw) and sum(r["steps"] for r in rows) == window.steps.height
    for r in rows:
        usage = [s["kv_cache_usage"] for s in raw[r["time"]]]
        assert r["steps"] == len(usage)
        assert r["peak"] == max(usage)
        assert r["mean"] == pytest.approx(sum(usage) / len(usage), rel=1e-12)


def test_queue_buckets_are_the_mean_running_and_waiting(
    window: Frames, specs: dict[str, dict[str, Any]]
) -> None:
    rows = _dataset_with(specs["queue"], "series", "requests")
    width = _width_ms([r["time"] for r in rows])
    raw = _by_bucket(window.steps, "time", width)
    assert len(rows) == 2 * len(raw)
    for r in rows:
        values = [s[r["series"]] for s in raw[r["time"]]]
        assert r["requests"] == pytest.approx(sum(values) / len(values), rel=1e-12)


def test_throughput_buckets_are_tokens_per_second(
    window: Frames, specs: dict[str, dict[str, Any]]
) -> None:
    rows = _dataset_with(specs["throughput"], "tokens_s")
    width = _width_ms([r["time"] for r in rows])
    raw = _by_bucket(window.steps, "time", width)
    assert len(rows) == len(raw)
    for r in rows:
        tokens = sum(s["generation_tokens"] for s in raw[r["time"]])
        assert r["tokens_s"] == pytest.approx(tokens / (width / 1000.0), rel=1e-12)


def test_hit_rate_line_is_the_rolling_rate_at_each_buckets_last_step(
    window: Frames, specs: dict[str, dict[str, Any]]
) -> None:
    rows = [r for rows in _datasets(specs["hit_rate"]) for r in rows]
    rolling = [r for r in rows if r["series"] == "rolling"]
    dots = [r for r in rows if r["series"] == "per step"]
    assert rolling and dots
    queried = [s for s in window.steps.iter_rows(named=True) if s["prefix_queries"] > 0]
    at = {_ms(s["time"]): s for s in queried}
    for r in rolling:
        t = r["time"]  # the bucket's last step
        assert t in at
        inside = [s for s in queried if t - 1000.0 < _ms(s["time"]) <= t]  # trailing 1 s
        rate = sum(s["prefix_hits"] for s in inside) / sum(s["prefix_queries"] for s in inside)
        assert r["rate"] == pytest.approx(min(max(rate, 0.0), 1.0), rel=1e-9)
    for r in dots:  # a sample of steps, drawn as they are
        s = at[r["time"]]
        assert r["rate"] == pytest.approx(s["prefix_hits"] / s["prefix_queries"], rel=1e-12)


def test_ttft_buckets_are_the_quantiles_of_their_requests(
    window: Frames, specs: dict[str, dict[str, Any]]
) -> None:
    rows = _dataset_with(specs["ttft"], "quantile", "ms", "requests")
    width = _width_ms([r["time"] for r in rows])
    ok = window.requests.filter(pl.col("error_type").is_null() & ~pl.col("cancelled"))
    raw = _by_bucket(ok, "arrival", width)
    assert sum(r["requests"] for r in rows if r["quantile"] == "p50") == ok.height
    for r in rows:
        ttft = [q["ttft_s"] * 1000.0 for q in raw[r["time"]]]
        q = float(r["quantile"].removeprefix("p")) / 100.0
        assert r["requests"] == len(ttft)
        assert r["ms"] == pytest.approx(_quantile(ttft, q), rel=1e-9)
