"""KV-cache and prefix-cache charts: KV usage over time, prefix hit rate per step and per request.

Step series are resampled into time buckets in Polars (at most about 300 per engine), so a long
run with millions of steps still gives a small spec.
"""

from __future__ import annotations

import altair as alt
import polars as pl
from altair.typing import ChartType

from sagellm_obs.charts._data import (
    auto_every,
    count_y,
    engine_column,
    epoch_ms,
    finite,
    histogram,
    no_data,
    parse_every,
    resample,
    sample,
    sample_note,
    time_x,
)
from sagellm_obs.charts.theme import SERIES_COLORS, series_scale

__all__ = ["cached_share_by_request", "kv_usage", "prefix_hit_by_request", "prefix_hit_rate"]

_PERCENT = alt.Axis(format="%")


def kv_usage(steps: pl.DataFrame, *, every: str | None = None) -> ChartType:
    """KV-cache usage over time: mean per bucket as a line, the bucket's peak as a band.

    Args:
        steps: The steps frame (``time``, ``kv_cache_usage`` in 0..1, ``engine_id``).
        every: Bucket width (Polars duration); by default at most about 300 buckets.

    Returns:
        A layered chart, one colour per engine when there are several, or a "no data" chart.
    """
    title = "KV-cache usage"
    frame = engine_column(finite(steps, "time", "kv_cache_usage"))
    if frame.height == 0:
        return no_data(title)
    engines = frame["engine_id"].n_unique()
    every = every or auto_every(frame, "time", per_bucket=2, groups=engines)
    parse_every(every)
    data = resample(
        frame,
        every,
        [
            pl.col("kv_cache_usage").mean().alias("mean"),
            pl.col("kv_cache_usage").max().alias("peak"),
            pl.len().alias("steps"),
        ],
        group_by="engine_id",
    ).with_columns(time=epoch_ms("time"))
    color: alt.Color | alt.ColorValue = (
        alt.Color("engine_id:N", title="engine")
        if engines > 1
        else alt.ColorValue(SERIES_COLORS["KV usage"])
    )
    base = alt.Chart(data).encode(x=time_x(), color=color)
    band = base.mark_area(opacity=0.2, interpolate="step-after").encode(
        y=alt.Y("peak:Q", title="KV-cache usage", axis=_PERCENT, scale=alt.Scale(domain=[0, 1])),
    )
    line = base.mark_line(interpolate="step-after").encode(
        y=alt.Y("mean:Q"),
        tooltip=[
            alt.Tooltip("time:T", title="bucket", format="%H:%M:%S.%L"),
            alt.Tooltip("engine_id:N", title="engine"),
            alt.Tooltip("mean:Q", format=".1%"),
            alt.Tooltip("peak:Q", format=".1%"),
            alt.Tooltip("steps:Q", format=","),
        ],
    )
    subtitle = f"mean (line) and peak (band) per {every}"
    return alt.layer(band, line).properties(title=alt.Title(title, subtitle=subtitle))


def prefix_hit_rate(
    steps: pl.DataFrame,
    window: str = "1s",
    *,
    every: str | None = None,
    points: int = 2000,
) -> ChartType:
    """Prefix-cache hit rate (hit tokens / queried tokens) per step and over a rolling window.

    The rolling rate is ``sum(hits) / sum(queries)`` over the trailing ``window`` of steps (all
    engines together), thinned to one value per bucket; the per-step rates are dots (a fixed-seed
    sample of at most ``points`` steps).

    Args:
        steps: The steps frame (``time``, ``prefix_queries``, ``prefix_hits``).
        window: Rolling window (Polars duration).
        every: Bucket width for the rolling line; by default at most about 300 buckets.
        points: Most per-step dots.

    Returns:
        A layered chart, or a "no data" chart when no step queried the prefix cache.
    """
    title = "Prefix-cache hit rate"
    frame = finite(steps, "time", "prefix_queries", "prefix_hits").filter(
        pl.col("prefix_queries") > 0
    )
    if frame.height == 0:
        return no_data(title)
    parse_every(window)
    every = every or auto_every(frame, "time", per_bucket=2)
    parse_every(every)
    frame = frame.sort("time").with_columns(
        rate=(pl.col("prefix_hits") / pl.col("prefix_queries")).clip(0.0, 1.0),
        rolling=(
            pl.col("prefix_hits").rolling_sum_by("time", window)
            / pl.col("prefix_queries").rolling_sum_by("time", window)
        ).clip(0.0, 1.0),
    )
    rolling = resample(
        frame, every, [pl.col("rolling").last(), pl.col("time").last().alias("at")]
    ).select(time=epoch_ms("at"), rate="rolling", series=pl.lit("rolling"))
    dots = sample(frame, points).select(
        time=epoch_ms("time"), rate="rate", series=pl.lit("per step")
    )
    names = ["per step", "rolling"]
    y = alt.Y("rate:Q", title="hit rate", axis=_PERCENT, scale=alt.Scale(domain=[0, 1]))
    color = alt.Color("series:N", scale=series_scale(names), title=None)
    tooltip = [
        alt.Tooltip("time:T", format="%H:%M:%S.%L"),
        alt.Tooltip("series:N"),
        alt.Tooltip("rate:Q", title="hit rate", format=".1%"),
    ]
    points_layer = (
        alt.Chart(dots)
        .mark_circle(size=16, opacity=0.5)
        .encode(x=time_x(), y=y, color=color, tooltip=tooltip)
    )
    line = alt.Chart(rolling).mark_line().encode(x=time_x(), y=y, color=color, tooltip=tooltip)
    note = sample_note(dots.height, frame.height)
    subtitle = f"rolling {window} window (line); per step (dots{', ' + note if note else ''})"
    return alt.layer(points_layer, line).properties(title=alt.Title(title, subtitle=subtitle))


def cached_share_by_request(requests: pl.DataFrame, *, bins: int = 20) -> ChartType:
    """How many requests found which share of their prompt in the prefix cache.

    A request's cached share is its cached prompt tokens over its prompt tokens; its mean is not
    the prefix-cache hit rate (hits over queries of the engine's steps, :func:`prefix_hit_rate`):
    a request whose prompt is mostly cached weighs one request, however long its prompt.

    Args:
        requests: The requests frame (``cached_prompt_share`` in 0..1 per request).
        bins: About how many bins over 0..100%.

    Returns:
        A histogram with a rule at the mean, or a "no data" chart.
    """
    title = "Cached share of each request's prompt"
    frame = finite(requests, "cached_prompt_share")
    if frame.height == 0:
        return no_data(title)
    values = frame["cached_prompt_share"].clip(0.0, 1.0)
    data = histogram(values, bins, extent=(0.0, 1.0))
    mean = float(values.mean() or 0.0)  # type: ignore[arg-type]
    bars = (
        alt.Chart(data)
        .mark_bar(color="#54a24b", opacity=0.85)
        .encode(
            x=alt.X(
                "bin_start:Q",
                bin="binned",
                title="prompt share from cache",
                axis=_PERCENT,
                scale=alt.Scale(domain=[0, 1]),
            ),
            x2="bin_end:Q",
            y=count_y(),
            tooltip=[
                alt.Tooltip("bin_start:Q", title="from", format=".0%"),
                alt.Tooltip("bin_end:Q", title="to", format=".0%"),
                alt.Tooltip("count:Q", title="requests", format=","),
            ],
        )
    )
    rule_data = pl.DataFrame({"mean": [mean], "label": [f"mean {mean:.1%}"]})
    rule = alt.Chart(rule_data).mark_rule(strokeDash=[5, 3], color="#333").encode(x="mean:Q")
    label = (
        alt.Chart(rule_data)
        .mark_text(align="left", dx=4, baseline="top", fontWeight=600)
        .encode(x="mean:Q", y=alt.value(4), text="label:N")
    )
    subtitle = f"{frame.height:,} requests"
    return alt.layer(bars, rule, label).properties(title=alt.Title(title, subtitle=subtitle))


def prefix_hit_by_request(requests: pl.DataFrame, *, bins: int = 20) -> ChartType:
    """Deprecated name of :func:`cached_share_by_request` (a request's cached share of its
    prompt is not a hit rate)."""
    import warnings

    warnings.warn(
        "prefix_hit_by_request is renamed cached_share_by_request",
        DeprecationWarning,
        stacklevel=2,
    )
    return cached_share_by_request(requests, bins=bins)
