"""The request waterfall: one row per request, frontend, queue, prefill and decode on a time axis.

Like a trace viewer's timeline: each request's bars start at its arrival and follow one another,
so overlaps show concurrency and long grey bars show queueing. The first bar is the engine
frontend's share of TTFT (``requests.frontend_s``: arrival until EngineCore queues the request,
tokenisation and hand-off, and the first token's way back), so the first token comes where
frontend + queue + prefill ends: at arrival + TTFT. Only ``limit`` requests are drawn.
"""

from __future__ import annotations

from typing import Literal

import altair as alt
import polars as pl
from altair.typing import ChartType

from sagellm_obs.charts._data import SEED, epoch_ms, no_data, sample, time_x
from sagellm_obs.charts.theme import WATERFALL_PARTS, waterfall_scale

__all__ = ["request_waterfall", "waterfall_rows"]

Select = Literal["first", "slowest", "sample"]

_OPTIONAL = {
    "request_id": pl.String,
    "trace_id": pl.String,
    "model": pl.String,
    "finish_reason": pl.String,
    "error_type": pl.String,
    "input_tokens": pl.Int64,
    "output_tokens": pl.Int64,
    "cached_tokens": pl.Int64,
    "ttft_s": pl.Float64,
    "e2e_s": pl.Float64,
}


def _pick(requests: pl.DataFrame, limit: int, select: Select) -> pl.DataFrame:
    frame = requests.filter(pl.col("arrival").is_not_null())
    if select == "first":
        return frame.sort("arrival").head(limit)
    if select == "slowest":
        key = "e2e_s" if "e2e_s" in frame.columns else "decode_s"
        return frame.sort(key, descending=True, nulls_last=True).head(limit).sort("arrival")
    if select == "sample":
        return sample(frame, limit, seed=SEED).sort("arrival")
    raise ValueError(f"select must be 'first', 'slowest' or 'sample', got {select!r}")


def waterfall_rows(
    requests: pl.DataFrame, limit: int = 200, select: Select = "first"
) -> pl.DataFrame:
    """The waterfall's data: four rows (frontend, queue, prefill, decode) per chosen request.

    Args:
        requests: The requests frame (needs ``arrival`` and the phase columns; ``frontend_s``
            missing counts 0).
        limit: Most requests kept.
        select: Which requests: the ``"first"`` to arrive, the ``"slowest"`` (by E2E) or a
            fixed-seed ``"sample"`` spread over the run.

    Returns:
        Columns ``row`` (rank by arrival), ``time`` (arrival, epoch ms), ``phase``, ``start``,
        ``end`` (epoch ms), ``ms`` (phase duration) and the ids, tokens and latencies shown in
        tooltips. Negative or missing durations are drawn as 0.
    """
    picked = _pick(requests, max(limit, 0), select)
    missing = [
        pl.lit(None, dtype).alias(c) for c, dtype in _OPTIONAL.items() if c not in picked.columns
    ]
    phases_s = [
        pl.col(f"{p}_s").fill_null(0.0).fill_nan(0.0).clip(lower_bound=0.0)
        if f"{p}_s" in picked.columns
        else pl.lit(0.0)
        for p in WATERFALL_PARTS
    ]
    base = picked.with_columns(*missing).select(
        pl.int_range(pl.len()).alias("row"),
        epoch_ms("arrival").alias("time"),
        *((s * 1000.0).alias(f"{p}_ms") for p, s in zip(WATERFALL_PARTS, phases_s, strict=True)),
        *(pl.col(c) for c in _OPTIONAL),
    )
    base = base.with_columns(
        ttft_ms=pl.col("ttft_s") * 1000.0, e2e_ms=pl.col("e2e_s") * 1000.0
    ).drop("ttft_s", "e2e_s")
    keep = [c for c in base.columns if not c.endswith("_ms") or c in ("ttft_ms", "e2e_ms")]
    parts = []
    offset = pl.lit(0.0)
    for p in WATERFALL_PARTS:
        parts.append(
            base.select(
                *keep,
                phase=pl.lit(p),
                start=pl.col("time") + offset,
                end=pl.col("time") + offset + pl.col(f"{p}_ms"),
                ms=pl.col(f"{p}_ms"),
            )
        )
        offset = offset + pl.col(f"{p}_ms")
    return pl.concat(parts).sort("row", "start")


def waterfall_chart(
    rows: pl.DataFrame, *, width: int = 760, height: int | None = None
) -> alt.Chart:
    """The bars of :func:`waterfall_rows` (used as is by the dashboard, which filters them)."""
    n = rows["row"].n_unique() if rows.height else 0
    height = height or min(max(n * 10, 120), 420)
    chart: alt.Chart = (
        alt.Chart(rows, width=width, height=height)
        .mark_bar(height={"band": 0.8})
        .encode(
            x=time_x("start", ticks=max(width // 120, 2), full=True),
            x2="end:T",
            y=alt.Y(
                "row:O",
                title="requests (by arrival)",
                axis=alt.Axis(labels=False, ticks=False, domain=False),
            ),
            color=alt.Color("phase:N", scale=waterfall_scale(), title="part"),
            order=alt.Order("start:Q"),
            tooltip=[
                alt.Tooltip("request_id:N", title="request"),
                alt.Tooltip("trace_id:N", title="trace"),
                alt.Tooltip("phase:N"),
                alt.Tooltip("ms:Q", title="phase (ms)", format=",.2f"),
                alt.Tooltip("ttft_ms:Q", title="TTFT (ms)", format=",.2f"),
                alt.Tooltip("e2e_ms:Q", title="E2E (ms)", format=",.2f"),
                alt.Tooltip("input_tokens:Q", title="prompt tokens", format=","),
                alt.Tooltip("cached_tokens:Q", title="cached tokens", format=","),
                alt.Tooltip("output_tokens:Q", title="output tokens", format=","),
                alt.Tooltip("finish_reason:N", title="finish"),
                alt.Tooltip("error_type:N", title="error"),
            ],
        )
    )
    return chart


def request_waterfall(
    requests: pl.DataFrame, limit: int = 200, *, select: Select = "first"
) -> ChartType:
    """Horizontal stacked bars per request: frontend, queue, prefill, decode, from its arrival.

    Args:
        requests: The requests frame.
        limit: Most requests drawn (the spec grows with it, not with the run).
        select: ``"first"`` to arrive, ``"slowest"`` by E2E, or a fixed-seed ``"sample"``.

    Returns:
        A bar chart with time on x and one row per request, or a "no data" chart.
    """
    title = "Request waterfall"
    if requests.height == 0 or "arrival" not in requests.columns:
        return no_data(title)
    rows = waterfall_rows(requests, limit, select)
    if rows.height == 0:
        return no_data(title)
    total = requests.height
    shown = rows["row"].n_unique()
    what = {"first": "first", "slowest": "slowest", "sample": "sampled"}[select]
    subtitle = f"{what} {shown:,} of {total:,} requests" if shown < total else f"{total:,} requests"
    return waterfall_chart(rows).properties(title=alt.Title(title, subtitle=subtitle))
