"""The run dashboard: engine timelines whose brushed interval filters the request charts.

Dragging over the KV-usage or queue timeline selects a time interval (``alt.selection_interval``
on x, named ``brush``). The request charts below keep only requests whose arrival falls inside it
(``transform_filter(brush)`` on a ``time`` column that holds the arrival), and recompute their
histograms and quantiles in the browser. With no brush every request shows.

So that the filter can run in the browser, the request charts get per-request rows, not
pre-aggregated bins: a fixed-seed sample of at most ``sample`` requests (and ``waterfall``
requests for the waterfall). The timelines are resampled in Polars as in the single charts.
"""

from __future__ import annotations

from typing import Final, Protocol

import altair as alt
import polars as pl
from altair.typing import ChartType

from sagellm_obs.charts._data import (
    MAX_POINTS,
    auto_every,
    count_y,
    engine_column,
    epoch_ms,
    finite,
    no_data,
    ok_requests,
    resample,
    sample,
    sample_note,
    time_x,
)
from sagellm_obs.charts.theme import SERIES_COLORS, cached_share_color, quantile_scale, series_scale
from sagellm_obs.charts.throughput import concurrency_rows
from sagellm_obs.charts.waterfall import waterfall_chart, waterfall_rows
from sagellm_obs.frames.analysis import QUANTILES, quantile_label

__all__ = ["BRUSH", "FramesLike", "request_sample", "run_dashboard"]

BRUSH: Final = "brush"
"""Name of the interval selection on the timelines."""

_WIDTH: Final = 900
_HALF: Final = 420


class FramesLike(Protocol):
    """What the dashboard reads: ``sagellm_obs.frames.Frames`` or anything with these frames."""

    @property
    def requests(self) -> pl.DataFrame: ...

    @property
    def steps(self) -> pl.DataFrame: ...


def _kv_timeline(steps: pl.DataFrame, every: str) -> alt.Chart:
    data = resample(
        engine_column(finite(steps, "time", "kv_cache_usage")),
        every,
        [pl.col("kv_cache_usage").mean().alias("usage")],
        group_by="engine_id",
    ).with_columns(time=epoch_ms("time"))
    several = data["engine_id"].n_unique() > 1
    color: alt.Color | alt.ColorValue = (
        alt.Color("engine_id:N", title="engine")
        if several
        else alt.ColorValue(SERIES_COLORS["KV usage"])
    )
    title = alt.Title("KV-cache usage", subtitle="drag to select a time range")
    chart: alt.Chart = (
        alt.Chart(data, title=title, width=_WIDTH, height=110)
        .mark_line(interpolate="step-after")
        .encode(
            x=time_x(title=None, ticks=_WIDTH // 120, full=True),
            y=alt.Y(
                "usage:Q",
                title="KV usage",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=color,
            tooltip=[
                alt.Tooltip("time:T", format="%H:%M:%S.%L"),
                alt.Tooltip("usage:Q", format=".1%"),
            ],
        )
    )
    return chart


def _queue_timeline(steps: pl.DataFrame, every: str) -> alt.Chart:
    names = ["running", "waiting"]
    data = concurrency_rows(steps, every=every)
    chart: alt.Chart = (
        alt.Chart(data, title="Running and waiting requests", width=_WIDTH, height=110)
        .mark_line(interpolate="step-after")
        .encode(
            x=time_x(ticks=_WIDTH // 120, full=True),
            y=alt.Y("requests:Q", title="requests"),
            color=alt.Color("series:N", scale=series_scale(names), title=None),
            tooltip=[alt.Tooltip("time:T", format="%H:%M:%S.%L"), "series:N", "requests:Q"],
        )
    )
    return chart


def request_sample(requests: pl.DataFrame, n: int = MAX_POINTS) -> pl.DataFrame:
    """The per-request rows behind the linked request charts (fixed-seed sample of ``n``).

    Returns:
        Columns ``time`` (arrival, epoch ms), ``request_id``, ``ttft_ms``, ``e2e_ms``,
        ``input_tokens``, ``cached_share``.
    """
    frame = finite(ok_requests(requests), "ttft_s", "e2e_s", "input_tokens").filter(
        pl.col("arrival").is_not_null()
    )
    cached = pl.col("cached_tokens").fill_null(0) if "cached_tokens" in frame.columns else pl.lit(0)
    return sample(frame, n).select(
        time=epoch_ms("arrival"),
        request_id="request_id",
        ttft_ms=pl.col("ttft_s") * 1000.0,
        e2e_ms=pl.col("e2e_s") * 1000.0,
        input_tokens="input_tokens",
        cached_share=pl.when(pl.col("input_tokens") > 0)
        .then(cached / pl.col("input_tokens"))
        .otherwise(0.0)
        .clip(0.0, 1.0),
    )


def _filtered(chart: alt.Chart, brush: alt.Parameter | None) -> alt.Chart:
    return chart.transform_filter(brush) if brush is not None else chart


def _histogram(
    data: pl.DataFrame, field: str, label: str, brush: alt.Parameter | None
) -> alt.LayerChart:
    names = [quantile_label(q) for q in QUANTILES]
    title = f"{label} distribution (selected range)"
    base = _filtered(alt.Chart(data), brush)
    bars = base.mark_bar(color="#4c78a8", opacity=0.85).encode(
        x=alt.X(f"{field}:Q", bin=alt.Bin(maxbins=30), title=f"{label} (ms)"),
        y=count_y("count()"),
    )
    quantiles = base.transform_quantile(
        field, probs=list(QUANTILES), as_=["prob", "value"]
    ).transform_calculate(
        quantile="'p' + format(datum.prob * 100, '~g')",
        label="'p' + format(datum.prob * 100, '~g') + ' ' + format(datum.value, '.3~r')",
    )
    color = alt.Color("quantile:N", scale=quantile_scale(names), legend=None)
    rules = quantiles.mark_rule(strokeDash=[5, 3], strokeWidth=1.5).encode(
        x="value:Q", color=color, tooltip=["quantile:N", alt.Tooltip("value:Q", format=",.2f")]
    )
    labels = [
        quantiles.transform_filter(alt.datum.quantile == name)
        .mark_text(align="left", dx=4, baseline="top", fontSize=11, fontWeight=600)
        .encode(x="value:Q", y=alt.value(4 + k * 14), text="label:N", color=color)
        for k, name in enumerate(names)
    ]
    return alt.LayerChart(layer=[bars, rules, *labels], title=title, width=_HALF, height=180)


def _scatter(data: pl.DataFrame, brush: alt.Parameter | None, note: str) -> alt.Chart:
    title = alt.Title("TTFT vs prompt length (selected range)", subtitle=note)
    chart: alt.Chart = (
        _filtered(alt.Chart(data, title=title, width=_HALF, height=220), brush)
        .mark_circle(size=24, opacity=0.7)
        .encode(
            x=alt.X("input_tokens:Q", title="prompt tokens", axis=alt.Axis(tickCount=6)),
            y=alt.Y("ttft_ms:Q", title="TTFT (ms)"),
            color=cached_share_color(),
            tooltip=[
                alt.Tooltip("request_id:N", title="request"),
                alt.Tooltip("input_tokens:Q", title="prompt tokens"),
                alt.Tooltip("ttft_ms:Q", title="TTFT (ms)", format=",.2f"),
            ],
        )
    )
    return chart


def run_dashboard(
    frames: FramesLike, *, sample: int = MAX_POINTS, waterfall: int = 150
) -> ChartType:
    """Linked views of one run: brushing the timelines filters the request charts.

    Layout, top to bottom: KV-cache usage and running/waiting timelines (both carry the brush),
    TTFT and E2E histograms with live p50/p90/p99 rules, TTFT vs prompt length, and a waterfall
    of a fixed-seed sample of requests spread over the run.

    Args:
        frames: The run's frames (``sagellm_obs.frames.load(run_dir)``).
        sample: Most requests behind the histograms and the scatter.
        waterfall: Most requests in the waterfall.

    Returns:
        One vertically concatenated chart.
    """
    requests, steps = frames.requests, frames.steps
    timed = engine_column(finite(steps, "time")) if "time" in steps.columns else pl.DataFrame()
    rows: list[ChartType] = []
    views: list[str] = []
    if timed.height:
        engines = timed["engine_id"].n_unique()
        every = auto_every(timed, "time", per_bucket=2, groups=engines)
        if "kv_cache_usage" in steps.columns:
            rows.append(_kv_timeline(steps, every).properties(name="kv_timeline"))
            views.append("kv_timeline")
        if {"running", "waiting"} <= set(steps.columns):
            rows.append(_queue_timeline(steps, every).properties(name="queue_timeline"))
            views.append("queue_timeline")
    # One brush shared by both timelines, declared once at the top with the views that carry it
    # (adding the same parameter to two charts makes Altair deduplicate it with a warning).
    brush = alt.selection_interval(name=BRUSH, encodings=["x"]) if views else None
    if not rows:
        rows.append(no_data("Engine timeline", message="no engine steps: nothing to brush"))
    has_arrival = requests.height > 0 and "arrival" in requests.columns
    data = request_sample(requests, sample) if has_arrival else pl.DataFrame()
    if data.height:
        total = ok_requests(requests).height
        note = sample_note(data.height, total) or f"all {total:,} successful requests of the run"
        rows.append(
            alt.hconcat(
                _histogram(data, "ttft_ms", "TTFT", brush), _histogram(data, "e2e_ms", "E2E", brush)
            )
        )
        rows.append(_scatter(data, brush, note))
    else:
        rows.append(no_data("Requests"))
    if has_arrival:
        wf = waterfall_rows(requests, waterfall, "sample")
        if wf.height:
            chart = _filtered(waterfall_chart(wf, width=_WIDTH, height=300), brush).properties(
                name="waterfall",
                title="Request waterfall (sampled requests in the selected range)",
            )
            rows.append(chart)
    params = []
    if brush is not None:
        select = alt.IntervalSelectionConfig(type="interval", encodings=["x"])
        params.append(alt.TopLevelSelectionParameter(name=BRUSH, select=select, views=views))
    title = alt.Title("Run dashboard", subtitle="drag over a timeline to filter the requests")
    return alt.vconcat(*rows, params=params or alt.Undefined, title=title)
