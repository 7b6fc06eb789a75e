"""Latency charts from the requests frame: distributions, latency over time, TTFT vs prompt.

Latency columns are seconds in the frame and milliseconds on the charts. Failed and cancelled
requests are left out, as in the summary, so the quantile rules show the summary's numbers.
"""

from __future__ import annotations

from typing import Literal

import altair as alt
import polars as pl
from altair.typing import ChartType

from sagellm_obs.charts._data import (
    MAX_POINTS,
    auto_bins,
    auto_every,
    count_y,
    ecdf,
    epoch_ms,
    finite,
    histogram,
    metric_label,
    no_data,
    ok_requests,
    parse_every,
    quantile_values,
    sample,
    sample_note,
    time_x,
)
from sagellm_obs.charts.theme import cached_share_color, quantile_scale
from sagellm_obs.frames.analysis import QUANTILES, quantile_label

__all__ = ["latency_distribution", "latency_over_time", "latency_values_ms", "ttft_vs_prompt"]


def latency_values_ms(requests: pl.DataFrame, metric: str) -> pl.Series:
    """Finite values of ``metric`` (seconds) of the successful requests, in milliseconds."""
    frame = finite(ok_requests(requests), metric)
    return (frame[metric] * 1000.0).alias("ms") if frame.height else pl.Series("ms", [], pl.Float64)


def quantile_rules(
    quantiles: pl.DataFrame, *, field: str = "value", stagger: int = 14
) -> alt.LayerChart:
    """Vertical rules at ``quantiles[field]`` with their labels stacked along the top.

    Args:
        quantiles: A frame from ``quantile_values`` (columns ``quantile``, ``value``, ``label``).
        field: Column holding the x position.
        stagger: Pixels between the labels, so close quantiles stay readable.
    """
    names = quantiles["quantile"].to_list()
    base = alt.Chart(quantiles).encode(
        x=alt.X(f"{field}:Q"),
        color=alt.Color("quantile:N", scale=quantile_scale(names), legend=None),
    )
    rules = base.mark_rule(strokeDash=[5, 3], strokeWidth=1.5).encode(
        tooltip=[alt.Tooltip("quantile:N"), alt.Tooltip(f"{field}:Q", format=",.2f")]
    )
    labels = [
        base.mark_text(align="left", dx=4, baseline="top", fontSize=11, fontWeight=600)
        .transform_filter(alt.datum.quantile == name)
        .encode(text="label:N", y=alt.value(4 + k * stagger))
        for k, name in enumerate(names)
    ]
    return alt.LayerChart(layer=[rules, *labels])


def latency_distribution(
    requests: pl.DataFrame,
    metric: str = "ttft_s",
    kind: Literal["histogram", "ecdf"] = "histogram",
    *,
    bins: int = 50,
    quantiles: tuple[float, ...] = QUANTILES,
) -> ChartType:
    """Distribution of one latency, with rules at its quantiles.

    Bins (or the ECDF's points) are computed in Polars, so the spec has at most ``bins`` bars or
    1000 ECDF points however many requests there are; the quantiles use every request.

    Args:
        requests: The requests frame.
        metric: A latency column in seconds (``"ttft_s"``, ``"e2e_s"``, ``"tpot_s"``...).
        kind: ``"histogram"`` (request counts per bin) or ``"ecdf"`` (share at or below).
        bins: About how many histogram bins (rounded to a nice width).
        quantiles: Quantiles drawn as labelled rules.

    Returns:
        A layered chart, or a "no data" chart when no request has the metric.
    """
    label = metric_label(metric)
    title = f"{label} distribution"
    values = latency_values_ms(requests, metric)
    if values.is_empty():
        return no_data(title)
    x_title = f"{label} (ms)"
    qs = quantile_values(values, quantiles, unit="ms")
    subtitle = f"{values.len():,} requests"
    if kind == "histogram":
        data = histogram(values, auto_bins(values.len(), bins))
        body: alt.Chart = (
            alt.Chart(data)
            .mark_bar(color="#4c78a8", opacity=0.85)
            .encode(
                x=alt.X("bin_start:Q", title=x_title, bin="binned"),
                x2="bin_end:Q",
                y=count_y(),
                tooltip=[
                    alt.Tooltip("bin_start:Q", title="from (ms)", format=",.2f"),
                    alt.Tooltip("bin_end:Q", title="to (ms)", format=",.2f"),
                    alt.Tooltip("count:Q", title="requests", format=","),
                ],
            )
        )
    elif kind == "ecdf":
        data = ecdf(values)
        body = (
            alt.Chart(data)
            .mark_line(interpolate="step-after", color="#4c78a8")
            .encode(
                x=alt.X("value:Q", title=x_title),
                y=alt.Y("fraction:Q", title="share of requests", axis=alt.Axis(format="%")),
                tooltip=[
                    alt.Tooltip("value:Q", title="ms", format=",.2f"),
                    alt.Tooltip("fraction:Q", title="share", format=".1%"),
                ],
            )
        )
    else:
        raise ValueError(f"kind must be 'histogram' or 'ecdf', got {kind!r}")
    return alt.layer(body, quantile_rules(qs)).properties(title=alt.Title(title, subtitle=subtitle))


def latency_over_time(
    requests: pl.DataFrame,
    metric: str = "ttft_s",
    *,
    every: str | None = None,
    quantiles: tuple[float, ...] = QUANTILES,
    points: int = 2000,
) -> ChartType:
    """Quantiles of one latency per arrival-time bucket, over a light sample of the requests.

    Args:
        requests: The requests frame.
        metric: A latency column in seconds.
        every: Bucket width as a Polars duration (``"1s"``, ``"500ms"``); by default the
            smallest nice width giving at most 300 buckets.
        quantiles: Quantiles drawn as lines.
        points: Most requests drawn as dots behind the lines (fixed-seed sample).

    Returns:
        A layered chart with time on x, or a "no data" chart.
    """
    label = metric_label(metric)
    title = f"{label} over time"
    frame = finite(ok_requests(requests), metric).filter(pl.col("arrival").is_not_null())
    if frame.height == 0:
        return no_data(title)
    every = every or auto_every(frame, "arrival", per_bucket=10)
    parse_every(every)  # validate early, with our message
    names = [quantile_label(q) for q in quantiles]
    buckets = (
        frame.sort("arrival")
        .group_by_dynamic("arrival", every=every)
        .agg(
            *(
                (pl.col(metric).quantile(q, interpolation="linear") * 1000.0).alias(n)
                for q, n in zip(quantiles, names, strict=True)
            ),
            pl.len().alias("requests"),
        )
        .with_columns(time=epoch_ms("arrival"))
        .unpivot(index=["time", "requests"], on=names, variable_name="quantile", value_name="ms")
    )
    dots = sample(frame, points).select(time=epoch_ms("arrival"), ms=pl.col(metric) * 1000.0)
    y_title = f"{label} (ms)"
    background = (
        alt.Chart(dots)
        .mark_circle(size=8, color="#9d9d9d", opacity=0.35)
        .encode(x=time_x(title="arrival"), y=alt.Y("ms:Q", title=y_title))
    )
    lines = (
        alt.Chart(buckets)
        .mark_line(point=alt.OverlayMarkDef(size=12))
        .encode(
            x=time_x(title="arrival"),
            y=alt.Y("ms:Q", title=y_title),
            color=alt.Color("quantile:N", scale=quantile_scale(names), title="quantile"),
            tooltip=[
                alt.Tooltip("time:T", title="bucket", format="%H:%M:%S.%L"),
                alt.Tooltip("quantile:N"),
                alt.Tooltip("ms:Q", format=",.2f"),
                alt.Tooltip("requests:Q", format=","),
            ],
        )
    )
    subtitle = f"quantiles per {every} bucket; dots: " + (
        sample_note(dots.height, frame.height) or "every request"
    )
    return alt.layer(background, lines).properties(title=alt.Title(title, subtitle=subtitle))


def ttft_vs_prompt(requests: pl.DataFrame, *, points: int = MAX_POINTS) -> ChartType:
    """TTFT against prompt length, coloured by the share of the prompt served from cache.

    Args:
        requests: The requests frame.
        points: Most requests drawn (fixed-seed sample).

    Returns:
        A scatter chart, or a "no data" chart.
    """
    title = "TTFT vs prompt length"
    frame = finite(ok_requests(requests), "ttft_s", "input_tokens")
    if frame.height == 0:
        return no_data(title)
    shown = sample(frame, points)
    cached = pl.col("cached_tokens").fill_null(0) if "cached_tokens" in frame.columns else pl.lit(0)
    data = shown.select(
        pl.col("request_id") if "request_id" in shown.columns else pl.lit("").alias("request_id"),
        "input_tokens",
        cached.alias("cached_tokens"),
        ttft_ms=pl.col("ttft_s") * 1000.0,
        cached_share=pl.when(pl.col("input_tokens") > 0)
        .then(cached / pl.col("input_tokens"))
        .otherwise(0.0)
        .clip(0.0, 1.0),
    )
    chart: alt.Chart = (
        alt.Chart(data)
        .mark_circle(size=28, opacity=0.75)
        .encode(
            x=alt.X("input_tokens:Q", title="prompt tokens", axis=alt.Axis(tickCount=6)),
            y=alt.Y("ttft_ms:Q", title="TTFT (ms)"),
            color=cached_share_color(),
            tooltip=[
                alt.Tooltip("request_id:N", title="request"),
                alt.Tooltip("input_tokens:Q", title="prompt tokens", format=","),
                alt.Tooltip("cached_tokens:Q", title="cached tokens", format=","),
                alt.Tooltip("cached_share:Q", title="cached share", format=".0%"),
                alt.Tooltip("ttft_ms:Q", title="TTFT (ms)", format=",.2f"),
            ],
        )
    )
    subtitle = sample_note(shown.height, frame.height) or f"{frame.height:,} requests"
    return chart.properties(title=alt.Title(title, subtitle=subtitle))
