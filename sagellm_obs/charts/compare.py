"""Comparison of runs: one latency's distributions overlaid, and its quantiles side by side.

Each run is reduced in Polars to at most 500 ECDF points and a few quantiles, so comparing runs
of millions of requests still gives a small spec.
"""

from __future__ import annotations

from collections.abc import Mapping

import altair as alt
import polars as pl
from altair.typing import ChartType

from sagellm_obs.charts._data import ecdf, metric_label, no_data, quantile_values
from sagellm_obs.charts.latency import latency_values_ms
from sagellm_obs.charts.theme import CATEGORY
from sagellm_obs.frames.analysis import QUANTILES

__all__ = ["compare_quantiles", "compare_runs"]


def compare_quantiles(
    runs: Mapping[str, pl.DataFrame],
    metric: str = "ttft_s",
    quantiles: tuple[float, ...] = QUANTILES,
) -> pl.DataFrame:
    """Quantiles of ``metric`` (ms) per run: columns ``run``, ``quantile``, ``value``, ``label``."""
    parts = [
        quantile_values(latency_values_ms(frame, metric), quantiles).with_columns(run=pl.lit(name))
        for name, frame in runs.items()
    ]
    schema = {"quantile": pl.String, "value": pl.Float64, "label": pl.String, "run": pl.String}
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def compare_runs(
    runs: Mapping[str, pl.DataFrame],
    metric: str = "ttft_s",
    *,
    quantiles: tuple[float, ...] = QUANTILES,
    points: int = 500,
) -> ChartType:
    """Side by side: the runs' ECDFs of one latency overlaid, and bars of their quantiles.

    Args:
        runs: Requests frames by run name, in legend order (``{"A": req_a, "B": req_b}``).
        metric: A latency column in seconds.
        quantiles: Quantiles compared in the bar chart.
        points: Most ECDF points per run.

    Returns:
        A horizontal concatenation, or a "no data" chart when no run has the metric.
    """
    label = metric_label(metric)
    title = f"{label}: " + " vs ".join(runs) if runs else f"{label} comparison"
    names = list(runs)
    curves, counts = [], {}
    for name, frame in runs.items():
        values = latency_values_ms(frame, metric)
        counts[name] = values.len()
        curves.append(ecdf(values, points).with_columns(run=pl.lit(name)))
    if not any(counts.values()):
        return no_data(title)
    color = alt.Color(
        "run:N",
        title="run",
        scale=alt.Scale(
            domain=names, range=[CATEGORY[i % len(CATEGORY)] for i in range(len(names))]
        ),
    )
    x_title = f"{label} (ms)"
    dist = (
        alt.Chart(pl.concat(curves))
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("value:Q", title=x_title),
            y=alt.Y("fraction:Q", title="share of requests", axis=alt.Axis(format="%")),
            color=color,
            tooltip=[
                alt.Tooltip("run:N"),
                alt.Tooltip("value:Q", title="ms", format=",.2f"),
                alt.Tooltip("fraction:Q", title="share", format=".1%"),
            ],
        )
        .properties(title=alt.Title(f"{label} ECDF"), width=360)
    )
    qs = compare_quantiles(runs, metric, quantiles)
    order = qs["quantile"].unique(maintain_order=True).to_list()
    base = alt.Chart(qs).encode(
        x=alt.X("quantile:N", title=None, sort=order),
        xOffset=alt.XOffset("run:N", sort=names),
        y=alt.Y("value:Q", title=x_title),
    )
    bars = base.mark_bar().encode(
        color=color,
        tooltip=[
            alt.Tooltip("run:N"),
            alt.Tooltip("quantile:N"),
            alt.Tooltip("value:Q", title="ms", format=",.2f"),
        ],
    )
    text = base.mark_text(dy=-6, fontSize=10).encode(text=alt.Text("value:Q", format=",.3~r"))
    pct = alt.layer(bars, text).properties(title=alt.Title(f"{label} quantiles"), width=300)
    subtitle = ", ".join(f"{n}: {c:,} requests" for n, c in counts.items())
    return alt.hconcat(dist, pct).properties(title=alt.Title(title, subtitle=subtitle))
