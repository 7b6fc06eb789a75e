"""Time axes label ticks as clock times (``12:00:15``, ``12:00:15.500``), never Vega's bare
``.500``, ``:15`` or ``12 PM``: checked on each live chart's spec and on the labels Vega draws
from it (rendered by vl-convert, the renderer the offline charts use)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import altair as alt
import polars as pl
import pytest
import vl_convert as vlc

from sagellm_obs import charts
from sagellm_obs.charts._data import CLOCK_LABEL
from sagellm_obs.frames.schemas import STEPS, conform
from tests.charts.chart_frames import requests_frame

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CLOCK = re.compile(r"^\d\d:\d\d:\d\d(\.\d{3})?$")
VEGA_DEFAULTS = re.compile(r"^(\.\d{3}|:\d\d|\d{1,2} [AP]M)$")

STEP_CHARTS: dict[str, Callable[[pl.DataFrame], alt.TopLevelMixin]] = {
    "kv_usage": charts.kv_usage,
    "concurrency": charts.concurrency,
    "throughput": charts.throughput,
    "prefix_hit_rate": charts.prefix_hit_rate,
}


def _steps(span_s: float, n: int = 60) -> pl.DataFrame:
    rows = [
        {
            "time": T0 + timedelta(seconds=span_s * i / n),
            "engine_id": "e",
            "engine_idx": 0,
            "step": i,
            "running": i % 7,
            "waiting": i % 3,
            "kv_cache_usage": (i % 10) / 10,
            "prefix_queries": 100,
            "prefix_hits": i % 100,
            "generation_tokens": 16,
        }
        for i in range(n)
    ]
    return conform(pl.DataFrame(rows), STEPS)


def _x_axis(spec: dict[str, object]) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            x = (
                node.get("encoding", {}).get("x")
                if isinstance(node.get("encoding"), dict)
                else None
            )
            if isinstance(x, dict) and x.get("type") == "temporal" and "axis" in x:
                found.append(x["axis"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    return found


def _drawn_labels(chart: alt.TopLevelMixin) -> list[str]:
    svg = vlc.vegalite_to_svg(chart.to_dict())
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


@pytest.mark.parametrize("name", sorted(STEP_CHARTS))
@pytest.mark.parametrize("span_s", [3.0, 60.0])
def test_step_charts_label_time_as_a_clock(name: str, span_s: float) -> None:
    chart = STEP_CHARTS[name](_steps(span_s))
    axes = _x_axis(chart.to_dict())
    assert axes and all(axis.get("labelExpr") == CLOCK_LABEL for axis in axes), axes
    labels = _drawn_labels(chart)
    clock = [t for t in labels if CLOCK.match(t)]
    assert len(clock) >= 2, labels
    assert not [t for t in labels if VEGA_DEFAULTS.match(t)], labels
    assert all(t.startswith("12:0") for t in clock), clock  # the steps' own clock times


def test_the_ttft_timeline_too() -> None:
    rows = [
        {"arrival": T0 + timedelta(seconds=0.1 * i), "ttft_s": 0.01 * (i % 5 + 1)}
        for i in range(40)
    ]
    chart = charts.latency_over_time(requests_frame(rows), "ttft_s")
    labels = _drawn_labels(chart)
    assert len([t for t in labels if CLOCK.match(t)]) >= 2, labels
    assert not [t for t in labels if VEGA_DEFAULTS.match(t)], labels
