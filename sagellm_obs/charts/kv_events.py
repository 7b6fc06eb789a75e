"""KV block charts from vLLM's KV cache events: block lifetime against reuse, evictions per step.

Inputs are the frames of :mod:`sagellm_obs.frames.kv_events`: :func:`block_lifetimes` rows and
:func:`kv_events_per_step` rows. Both charts reduce in Polars first (a fixed-seed sample of
blocks, time buckets of steps).
"""

from __future__ import annotations

import altair as alt
import polars as pl
from altair.typing import ChartType

from sagellm_obs.charts._data import (
    auto_every,
    epoch_ms,
    no_data,
    parse_every,
    resample,
    sample,
    sample_note,
    time_x,
)
from sagellm_obs.charts.theme import SERIES_COLORS

__all__ = ["block_lifetime_reuse", "evictions_vs_kv_usage"]

_STATUS = ("evicted", "not evicted")  # the latter: still cached at the end, or reset
_STATUS_COLORS = ("#d62728", "#1f77b4")
_KINDS = ("stored", "reused", "removed")
_KIND_COLORS = ("#1f77b4", "#2ca02c", "#d62728")


def block_lifetime_reuse(lifetimes: pl.DataFrame, *, points: int = 5000) -> ChartType:
    """Each block residency as a dot: how long it stayed cached against how often it was reused.

    A block still cached when the events end (or when the cache was reset) has no removal: its
    lifetime is counted to the last event and it is drawn in its own colour (a lower bound).

    Args:
        lifetimes: :func:`~sagellm_obs.frames.block_lifetimes` rows.
        points: Most dots (a fixed-seed sample beyond).

    Returns:
        A scatter chart, or a "no data" chart.
    """
    title = "KV block lifetime and reuse"
    frame = lifetimes.filter(pl.col("stored").is_not_null())
    if frame.height == 0:
        return no_data(title)
    end = frame.select(pl.max_horizontal(pl.col("stored").max(), pl.col("removed").max())).item()
    data = frame.with_columns(
        pl.coalesce(
            pl.col("lifetime_s"),
            (pl.lit(end) - pl.col("stored")).dt.total_nanoseconds() / 1e9,
        ).alias("lifetime_s"),
        pl.when(pl.col("evicted"))
        .then(pl.lit(_STATUS[0]))
        .otherwise(pl.lit(_STATUS[1]))
        .alias("status"),
        epoch_ms("stored").alias("stored"),
    ).select("block_hash", "prefix_hash", "stored_by", "stored", "lifetime_s", "reuses", "status")
    shown = sample(data, points)
    chart: alt.Chart = (
        alt.Chart(shown)
        .mark_circle(opacity=0.6, size=40)
        .encode(
            x=alt.X("lifetime_s:Q", title="lifetime (s)"),
            y=alt.Y("reuses:Q", title="prefix-cache hits on the block"),
            color=alt.Color(
                "status:N",
                title="block",
                scale=alt.Scale(domain=list(_STATUS), range=list(_STATUS_COLORS)),
            ),
            tooltip=[
                alt.Tooltip("block_hash:N", title="vLLM block hash"),
                alt.Tooltip("prefix_hash:N", title="prefix hash"),
                alt.Tooltip("stored_by:N", title="stored by"),
                alt.Tooltip("stored:T", title="stored", format="%H:%M:%S.%L"),
                alt.Tooltip("lifetime_s:Q", title="lifetime (s)", format=".3f"),
                alt.Tooltip("reuses:Q", title="hits"),
            ],
        )
        .properties(title=alt.Title(title, subtitle=sample_note(shown.height, data.height)))
    )
    return chart


def evictions_vs_kv_usage(per_step: pl.DataFrame, *, every: str | None = None) -> ChartType:
    """KV-cache usage over time above the blocks stored, reused and evicted in the same buckets.

    Args:
        per_step: :func:`~sagellm_obs.frames.kv_events_per_step` rows (``time``,
            ``kv_cache_usage``, ``stored``, ``reused``, ``removed``).
        every: Bucket width (Polars duration); by default at most about 300 buckets.

    Returns:
        Two charts stacked on a shared time axis, or a "no data" chart.
    """
    title = "KV usage and block events"
    frame = per_step.filter(pl.col("time").is_not_null())
    if frame.height == 0:
        return no_data(title)
    every = every or auto_every(frame, "time", per_bucket=2)
    parse_every(every)
    data = resample(
        frame,
        every,
        [
            pl.col("kv_cache_usage").max().alias("usage"),
            *(pl.col(k).sum().alias(k) for k in _KINDS),
        ],
    ).with_columns(time=epoch_ms("time"))
    usage = (
        alt.Chart(data)
        .mark_line(interpolate="step-after", color=SERIES_COLORS["KV usage"])
        .encode(
            x=time_x(title=None),
            y=alt.Y(
                "usage:Q",
                title="KV-cache usage (peak)",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            tooltip=[
                alt.Tooltip("time:T", format="%H:%M:%S.%L"),
                alt.Tooltip("usage:Q", format=".1%"),
            ],
        )
        .properties(height=120)
    )
    events = (
        alt.Chart(data)
        .transform_fold(list(_KINDS), as_=["kind", "blocks"])
        .mark_bar()
        .encode(
            x=time_x(),
            y=alt.Y("blocks:Q", title="blocks", stack=None),
            color=alt.Color(
                "kind:N",
                title="event",
                scale=alt.Scale(domain=list(_KINDS), range=list(_KIND_COLORS)),
            ),
            opacity=alt.value(0.7),
            tooltip=[
                alt.Tooltip("time:T", format="%H:%M:%S.%L"),
                alt.Tooltip("kind:N"),
                alt.Tooltip("blocks:Q"),
            ],
        )
        .properties(height=120)
    )
    both: alt.VConcatChart = (
        alt.vconcat(usage, events)
        .resolve_scale(x="shared")
        .properties(
            title=alt.Title(title, subtitle=f"per {every}; removed = evicted from the prefix cache")
        )
    )
    return both
