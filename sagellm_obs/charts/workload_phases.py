"""The acts of a phased workload as shaded bands behind a timeline.

A run of the ``phases`` workload (warm, pressure, recover) tells its story only when the reader
sees where each act begins: :func:`workload_phases` finds the acts' time spans from the requests
frame's ``workload_phase`` column, and :func:`with_workload_phases` lays them behind any chart
whose x axis is ``time`` in epoch milliseconds (the KV-usage, hit-rate and concurrency charts).
"""

from __future__ import annotations

import altair as alt
import polars as pl
from altair.typing import ChartType

from sagellm_obs.charts._data import epoch_ms, time_x

__all__ = ["with_workload_phases", "workload_phases"]

PHASE_SPANS = pl.Schema(
    {"workload_phase": pl.String, "start": pl.Float64, "end": pl.Float64, "requests": pl.UInt32}
)
"""Columns of :func:`workload_phases`: the act, its start and end (epoch ms), its requests."""

_BAND_COLORS = ("#000000", "#ffffff")  # alternate dark and clear so neighbouring acts differ


def workload_phases(requests: pl.DataFrame) -> pl.DataFrame:
    """The time span of each act of a phased workload, in the order the acts began.

    An act starts at its first request's arrival and ends where the next act starts (requests of
    two acts overlap in flight at the boundary); the last ends when its last request finishes.

    Args:
        requests: The requests frame (``arrival``, ``e2e_s``, ``workload_phase``).

    Returns:
        :data:`PHASE_SPANS` rows; none when the run was not a phased workload.
    """
    if "workload_phase" not in requests.columns or requests.height == 0:
        return pl.DataFrame(schema=PHASE_SPANS)
    acts = (
        requests.filter(pl.col("workload_phase").is_not_null() & pl.col("arrival").is_not_null())
        .with_columns(
            start=epoch_ms("arrival"),
            finish=epoch_ms("arrival") + pl.col("e2e_s").fill_null(0.0) * 1000.0,
        )
        .group_by("workload_phase")
        .agg(pl.col("start").min(), pl.col("finish").max(), pl.len().alias("requests"))
        .sort("start")
    )
    if acts.height == 0:
        return pl.DataFrame(schema=PHASE_SPANS)
    return acts.with_columns(
        end=pl.col("start").shift(-1).fill_null(pl.col("finish").max()),
    ).select(PHASE_SPANS.names())


def with_workload_phases(chart: ChartType, spans: pl.DataFrame | None) -> ChartType:
    """``chart`` with the acts of :func:`workload_phases` shaded behind it and named on top.

    Args:
        chart: A chart whose x channel is ``time`` (epoch ms), e.g.
            :func:`~sagellm_obs.charts.kv_usage`.
        spans: :func:`workload_phases` rows; None or empty leaves ``chart`` as it is.

    Returns:
        A layered chart carrying ``chart``'s title, or ``chart`` itself.
    """
    if spans is None or spans.height == 0:
        return chart
    data = spans.with_row_index("order").with_columns(
        shade=pl.when(pl.col("order") % 2 == 0)
        .then(pl.lit(_BAND_COLORS[0]))
        .otherwise(pl.lit(_BAND_COLORS[1]))
    )
    # The same axis as the chart beneath (tick count and all): layers that disagree on axis
    # properties let Vega-Lite pick one, which left a single tick label on some timelines.
    base = alt.Chart(data).encode(x=time_x("start"), x2="end:T")
    bands = base.mark_rect(opacity=0.06).encode(
        color=alt.Color("shade:N", scale=None),
        tooltip=[
            alt.Tooltip("workload_phase:N", title="workload phase"),
            alt.Tooltip("requests:Q", format=","),
        ],
    )
    labels = (
        alt.Chart(data)
        .mark_text(align="left", baseline="top", dx=3, dy=3, fontSize=10, color="#555555")
        .encode(x=time_x("start"), y=alt.value(0), text="workload_phase:N")
    )
    # One title, on the outer layer, above the bands' labels.
    inner = chart.copy(deep=False)
    title = getattr(inner, "title", alt.Undefined)
    inner.title = alt.Undefined
    layered = alt.layer(bands, labels, inner)
    return layered if title is alt.Undefined else layered.properties(title=title)
