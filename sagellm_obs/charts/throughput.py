"""Throughput and concurrency over time, from the steps frame.

Steps are summed (tokens) or averaged (queue lengths) per time bucket in Polars, then summed over
engines, so the charts show the whole deployment and stay small for long runs.
"""

from __future__ import annotations

import altair as alt
import polars as pl
from altair.typing import ChartType

from sagellm_obs.charts._data import (
    auto_every,
    engine_column,
    epoch_ms,
    finite,
    no_data,
    parse_every,
    resample,
    time_x,
)
from sagellm_obs.charts.theme import SERIES_COLORS, series_scale

__all__ = ["concurrency", "concurrency_rows", "throughput", "throughput_rows"]

_TIME_TOOLTIP = alt.Tooltip("time:T", title="bucket", format="%H:%M:%S.%L")


def _bucketed(
    steps: pl.DataFrame, columns: tuple[str, ...], every: str | None, per_bucket: int
) -> tuple[pl.DataFrame, str, float] | None:
    """Steps with ``columns`` present, and the bucket width (string, seconds); None if empty.

    By default buckets hold about ``per_bucket`` steps of each engine (at most 300 buckets).
    """
    frame = engine_column(finite(steps, "time", *columns))
    if frame.height == 0:
        return None
    groups = frame["engine_id"].n_unique()
    every = every or auto_every(frame, "time", per_bucket=per_bucket, groups=groups)
    return frame, every, parse_every(every)


def _tokens_per_second(frame: pl.DataFrame, every: str, seconds: float) -> pl.DataFrame:
    return (
        resample(frame, every, [pl.col("generation_tokens").sum().alias("tokens")])
        .select(time=epoch_ms("time"), tokens_s=pl.col("tokens").cast(pl.Float64) / seconds)
        .sort("time")
    )


def throughput_rows(steps: pl.DataFrame, *, every: str | None = None) -> pl.DataFrame:
    """Output tokens per second per bucket (all engines): columns ``time`` (epoch ms), ``tokens_s``.

    Empty when the frame has no step with ``generation_tokens``.
    """
    got = _bucketed(steps, ("generation_tokens",), every, 5)
    if got is None:
        return pl.DataFrame(schema={"time": pl.Float64, "tokens_s": pl.Float64})
    return _tokens_per_second(*got)


def throughput(steps: pl.DataFrame, *, every: str | None = None) -> ChartType:
    """Output tokens per second over time (sum of the steps' generated tokens per bucket).

    Args:
        steps: The steps frame (``time``, ``generation_tokens``).
        every: Bucket width (Polars duration); by default at most about 300 buckets.

    Returns:
        An area chart, or a "no data" chart.
    """
    title = "Output token throughput"
    got = _bucketed(steps, ("generation_tokens",), every, 5)
    if got is None:
        return no_data(title)
    data = _tokens_per_second(*got)
    width = got[1]
    color = SERIES_COLORS["output tokens/s"]
    chart: alt.Chart = (
        alt.Chart(data)
        .mark_area(
            interpolate="step-after",
            line={"color": color},
            color=color,
            opacity=0.35,
        )
        .encode(
            x=time_x(),
            y=alt.Y("tokens_s:Q", title="output tokens/s"),
            tooltip=[_TIME_TOOLTIP, alt.Tooltip("tokens_s:Q", title="tokens/s", format=",.1f")],
        )
    )
    return chart.properties(title=alt.Title(title, subtitle=f"per {width} bucket"))


def concurrency_rows(steps: pl.DataFrame, *, every: str | None = None) -> pl.DataFrame:
    """Mean running and waiting requests per bucket, summed over engines (long format).

    Returns:
        Columns ``time`` (epoch ms), ``series`` (``"running"``/``"waiting"``) and ``requests``.
    """
    got = _bucketed(steps, ("running", "waiting"), every, 2)
    if got is None:
        return pl.DataFrame(
            schema={"time": pl.Float64, "series": pl.String, "requests": pl.Float64}
        )
    frame, every, _ = got
    per_engine = resample(
        frame,
        every,
        [pl.col("running").mean(), pl.col("waiting").mean()],
        group_by="engine_id",
    )
    return (
        per_engine.group_by("time")
        .agg(pl.col("running").sum(), pl.col("waiting").sum())
        .sort("time")
        .select(time=epoch_ms("time"), running="running", waiting="waiting")
        .unpivot(index="time", variable_name="series", value_name="requests")
        .with_columns(pl.col("requests").cast(pl.Float64))
    )


def concurrency(steps: pl.DataFrame, *, every: str | None = None) -> ChartType:
    """Running and waiting requests over time (bucket means, summed over engines).

    Args:
        steps: The steps frame (``time``, ``running``, ``waiting``, ``engine_id``).
        every: Bucket width (Polars duration); by default at most about 300 buckets.

    Returns:
        A line chart, or a "no data" chart.
    """
    title = "Concurrency"
    data = concurrency_rows(steps, every=every)
    if data.height == 0:
        return no_data(title)
    names = ["running", "waiting"]
    chart: alt.Chart = (
        alt.Chart(data)
        .mark_line(interpolate="step-after")
        .encode(
            x=time_x(),
            y=alt.Y("requests:Q", title="requests"),
            color=alt.Color("series:N", scale=series_scale(names), title=None),
            tooltip=[
                _TIME_TOOLTIP,
                alt.Tooltip("series:N"),
                alt.Tooltip("requests:Q", format=",.1f"),
            ],
        )
    )
    return chart.properties(title=alt.Title(title, subtitle="mean per bucket, all engines"))
