"""Joined traces: the timeline of a call tree, and where each model call's time went.

:func:`trace_timeline` draws :func:`sagellm_obs.frames.call_tree` like a trace viewer: one row
per span, indented by depth, a bar from its start to its end (milliseconds from the start of its
trace), coloured by category. :func:`time_breakdown_chart` draws
:func:`sagellm_obs.frames.time_breakdown` as one stacked bar per model call: network, server,
engine frontend, queue, prefill, decode.
Colours are fixed (:data:`CATEGORY_COLORS`, :data:`PART_COLORS`); the engine phases have the same
colours as in every other chart.
"""

from __future__ import annotations

import warnings
from typing import Final

import altair as alt
import polars as pl
from altair.typing import ChartType

from sagellm_obs.charts._data import no_data
from sagellm_obs.charts.theme import FRONTEND_COLOR, PHASE_COLORS, PHASES
from sagellm_obs.frames.traces import (
    CATEGORY_APPLICATION,
    CATEGORY_ENGINE_REQUEST,
    CATEGORY_MODEL_CALL,
    CATEGORY_OTHER,
    CATEGORY_SERVER,
    CATEGORY_TOOL_CALL,
)

__all__ = [
    "CATEGORY_COLORS",
    "PARTS",
    "PART_COLORS",
    "breakdown_rows",
    "time_breakdown",
    "time_breakdown_chart",
    "timeline_rows",
    "trace_timeline",
]

CATEGORY_COLORS: Final = {
    CATEGORY_APPLICATION: "#54a24b",
    CATEGORY_MODEL_CALL: "#72b7b2",
    CATEGORY_TOOL_CALL: "#b279a2",
    CATEGORY_SERVER: "#9d755d",
    CATEGORY_ENGINE_REQUEST: FRONTEND_COLOR,
    **PHASE_COLORS,
    CATEGORY_OTHER: "#bab0ac",
}
"""Fixed colour of each span category (the engine phases keep their usual colours)."""

PARTS: Final = {
    "network_s": "network",
    "server_overhead_s": "server",
    "engine_other_s": "engine frontend",
    **{f"{p}_s": p for p in PHASES},
}
"""Columns of the time-breakdown frame stacked by :func:`time_breakdown_chart`, in path order."""

PART_COLORS: Final = {
    "network": "#e45756",
    "server": CATEGORY_COLORS[CATEGORY_SERVER],
    "engine frontend": CATEGORY_COLORS[CATEGORY_ENGINE_REQUEST],
    **PHASE_COLORS,
}
"""Fixed colour of each part of a model call's time."""

_ROW_DIGITS: Final = 6
_INDENT: Final = "\u00b7\u00a0\u00a0"  # a dot, then no-break spaces: every renderer keeps it
_LABEL_EXPR: Final = f"slice(datum.value, {_ROW_DIGITS + 1})"
"""Axis labels drop the ``000012|`` prefix that keeps rows unique and in order."""
_MIN_BAR: Final = 0.004
"""Bars are drawn at least this fraction of the longest trace wide (tiny spans stay visible)."""
_CHAR_PX: Final = 6.3  # about the width of a label character at the theme's 11 px
_INDENT_PX: Final = 3.1 * len(_INDENT)


def _row_key(number: pl.Expr, label: pl.Expr) -> pl.Expr:
    return pl.concat_str(
        [number.cast(pl.String).str.pad_start(_ROW_DIGITS, "0"), pl.lit("|"), label]
    )


def _scale(colors: dict[str, str]) -> alt.Scale:
    return alt.Scale(domain=list(colors), range=list(colors.values()))


def _optional(frame: pl.DataFrame, columns: dict[str, pl.DataType]) -> pl.DataFrame:
    missing = [pl.lit(None, d).alias(c) for c, d in columns.items() if c not in frame.columns]
    return frame.with_columns(missing) if missing else frame


_TIMELINE_OPTIONAL: Final[dict[str, pl.DataType]] = {
    "kind": pl.String(),
    "service_name": pl.String(),
    "self_s": pl.Float64(),
    "status_code": pl.String(),
    "error_type": pl.String(),
    "request_id": pl.String(),
    "model": pl.String(),
    "input_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
}


def timeline_rows(tree: pl.DataFrame, limit: int = 300) -> pl.DataFrame:
    """The timeline's data: the first ``limit`` spans of a call tree, in its order.

    Args:
        tree: A :func:`~sagellm_obs.frames.call_tree` frame (needs ``trace_id``, ``name``,
            ``depth``, ``category``, ``offset_s``, ``duration_s``).
        limit: Most spans kept.

    Returns:
        Columns ``row`` (a unique, ordered key whose text after ``|`` is the indented name),
        ``start_ms``/``end_ms`` (from the start of the trace), ``bar_end_ms`` (``end_ms``, or
        a little more so that the bar of a very short span stays visible), ``ms``, ``self_ms``
        and the columns shown in tooltips.
    """
    frame = _optional(tree.head(max(limit, 0)), _TIMELINE_OPTIONAL)
    indent = pl.lit(_INDENT).repeat_by(pl.col("depth").clip(0, 64)).list.join("")
    start = pl.col("offset_s").fill_nan(None).fill_null(0.0) * 1000.0
    ms = pl.col("duration_s").fill_nan(None).fill_null(0.0).clip(lower_bound=0.0) * 1000.0
    end = start + ms
    shortest = end.max() * _MIN_BAR
    return frame.select(
        _row_key(
            pl.int_range(pl.len()), pl.concat_str([indent, pl.col("name").fill_null("")])
        ).alias("row"),
        start.alias("start_ms"),
        end.alias("end_ms"),
        pl.max_horizontal(end, start + shortest).alias("bar_end_ms"),
        ms.alias("ms"),
        (pl.col("self_s") * 1000.0).alias("self_ms"),
        "name",
        "category",
        "depth",
        pl.col("trace_id"),
        *(pl.col(c) for c in _TIMELINE_OPTIONAL if c != "self_s"),
    )


def trace_timeline(tree: pl.DataFrame, *, limit: int = 300, width: int = 620) -> ChartType:
    """A Gantt-like timeline of a call tree: one row per span, indented by depth.

    Args:
        tree: A :func:`~sagellm_obs.frames.call_tree` frame, of one trace or of several (each
            trace's spans are placed from its own start).
        limit: Most spans drawn, first ones first (the spec grows with it, not with the run).
        width: Width of the plot in pixels.

    Returns:
        Bars from each span's start to its end in milliseconds from the start of its trace,
        coloured by category (:data:`CATEGORY_COLORS`), with the duration written after each
        bar and the span's details in the tooltip; or a "no data" chart. Spans shorter than
        0.4 % of the axis are drawn that wide (their label gives the real duration).
    """
    title = "Trace timeline"
    if tree.height == 0 or limit <= 0:
        return no_data(title)
    rows = timeline_rows(tree, limit)
    traces = tree["trace_id"].n_unique()
    what = "1 trace" if traces == 1 else f"{traces:,} traces"
    subtitle = f"{what}, {tree.height:,} spans"
    if rows.height < tree.height:
        subtitle = f"first {rows.height:,} of {tree.height:,} spans ({what})"
    # Left-aligned labels, so that the indentation shows: pad them by the longest one's width.
    widest = rows.select(
        (
            pl.col("name").fill_null("").str.len_chars() * _CHAR_PX
            + pl.col("depth").clip(0, 64) * _INDENT_PX
        ).max()
    ).item()
    pad = min(int(widest or 0) + 8, 420)
    y = alt.Y(
        "row:N",
        sort=None,
        title=None,
        axis=alt.Axis(
            labelExpr=_LABEL_EXPR,
            labelAlign="left",
            labelPadding=pad,
            labelLimit=pad,
            ticks=False,
            domain=False,
        ),
    )
    base = alt.Chart(rows, width=width, height=max(rows.height * 20, 40)).encode(y=y)
    bars = base.mark_bar(height={"band": 0.7}).encode(
        x=alt.X("start_ms:Q", title="ms from the start of the trace"),
        x2="bar_end_ms:Q",
        color=alt.Color("category:N", scale=_scale(CATEGORY_COLORS), title="span"),
        tooltip=[
            alt.Tooltip("name:N", title="span"),
            alt.Tooltip("category:N"),
            alt.Tooltip("kind:N"),
            alt.Tooltip("start_ms:Q", title="start (ms)", format=",.2f"),
            alt.Tooltip("ms:Q", title="duration (ms)", format=",.2f"),
            alt.Tooltip("self_ms:Q", title="self (ms)", format=",.2f"),
            alt.Tooltip("service_name:N", title="service"),
            alt.Tooltip("request_id:N", title="request"),
            alt.Tooltip("model:N"),
            alt.Tooltip("input_tokens:Q", title="prompt tokens", format=","),
            alt.Tooltip("output_tokens:Q", title="output tokens", format=","),
            alt.Tooltip("status_code:N", title="status"),
            alt.Tooltip("error_type:N", title="error"),
            alt.Tooltip("trace_id:N", title="trace"),
        ],
    )
    labels = (
        base.transform_calculate(label="format(datum.ms, ',.3~r') + ' ms'")
        .mark_text(align="left", dx=4, fontSize=10, color="#555")
        .encode(x="bar_end_ms:Q", text="label:N")
    )
    chart: ChartType = alt.layer(bars, labels).properties(title=alt.Title(title, subtitle=subtitle))
    return chart


def breakdown_rows(breakdown: pl.DataFrame, limit: int = 100) -> pl.DataFrame:
    """The stacked bars' data: one row per (model call, part) of the first ``limit`` calls.

    Args:
        breakdown: A :func:`~sagellm_obs.frames.time_breakdown` frame.
        limit: Most model calls kept, in the frame's order (by client start).

    Returns:
        Columns ``row`` (a unique, ordered key whose text after ``|`` is ``"1. chat model"``),
        ``part`` (see :data:`PARTS`), ``order`` (its place in the stack), ``ms`` (null and
        negative parts count 0), ``raw_ms`` (as measured) and the totals shown in tooltips.
    """
    picked = breakdown.head(max(limit, 0))
    stream = (
        pl.when(pl.col("stream").fill_null(False)).then(pl.lit(", streamed")).otherwise(pl.lit(""))
    )
    label = pl.format(
        "{}. {}{}", pl.int_range(1, pl.len() + 1), pl.col("client_name").fill_null("?"), stream
    )
    base = picked.select(
        _row_key(pl.int_range(pl.len()), label).alias("row"),
        "request_id",
        "trace_id",
        (pl.col("client_s") * 1000.0).alias("client_ms"),
        (pl.col("server_s") * 1000.0).alias("server_ms"),
        (pl.col("engine_s") * 1000.0).alias("engine_ms"),
        "output_tokens",
        *(pl.col(c) for c in PARTS),
    )
    keep = ["row", "request_id", "trace_id", "client_ms", "server_ms", "engine_ms", "output_tokens"]
    parts = [
        base.select(
            *keep,
            pl.lit(name).alias("part"),
            pl.lit(i, pl.Int64).alias("order"),
            (pl.col(col) * 1000.0).alias("raw_ms"),
        )
        for i, (col, name) in enumerate(PARTS.items())
    ]
    return (
        pl.concat(parts)
        .with_columns(ms=pl.col("raw_ms").fill_nan(None).fill_null(0.0).clip(lower_bound=0.0))
        .sort("row", "order")
    )


def time_breakdown_chart(
    breakdown: pl.DataFrame, *, limit: int = 100, width: int = 560
) -> ChartType:
    """Where each model call's time went: one stacked horizontal bar per call.

    Left to right, the parts follow the call's path: ``network`` (client - server: the wire,
    (de)serialisation, the client library), ``server`` (server - engine: HTTP handling, request
    and response building), ``engine frontend`` (tokenisation, hand-off, detokenisation), then the
    engine's ``queue``, ``prefill`` and ``decode``. The bar's length is the client's duration
    (parts that clocks made negative are drawn as 0; the tooltip shows them as measured).

    Args:
        breakdown: A :func:`~sagellm_obs.frames.time_breakdown` frame.
        limit: Most model calls drawn, first ones first.
        width: Width of the plot in pixels.

    Returns:
        A stacked bar chart with fixed part colours (:data:`PART_COLORS`), or a "no data" chart.
    """
    title = "Where the time went"
    if breakdown.height == 0 or limit <= 0:
        return no_data(title, message="no model call with a client span")
    rows = breakdown_rows(breakdown, limit)
    calls = breakdown.height
    shown = min(calls, limit)
    subtitle = (
        f"first {shown:,} of {calls:,} model calls"
        if shown < calls
        else ("1 model call" if calls == 1 else f"{calls:,} model calls")
    )
    chart: ChartType = (
        alt.Chart(rows, width=width, height=max(shown * 26, 40))
        .mark_bar(height={"band": 0.7})
        .encode(
            y=alt.Y(
                "row:N",
                sort=None,
                title=None,
                axis=alt.Axis(labelExpr=_LABEL_EXPR, labelLimit=300, ticks=False),
            ),
            x=alt.X("ms:Q", title="ms, as the client saw it", stack="zero"),
            color=alt.Color(
                "part:N", scale=_scale(PART_COLORS), sort=list(PART_COLORS), title="part"
            ),
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip("request_id:N", title="request"),
                alt.Tooltip("part:N"),
                alt.Tooltip("raw_ms:Q", title="part (ms)", format=",.2f"),
                alt.Tooltip("client_ms:Q", title="client (ms)", format=",.2f"),
                alt.Tooltip("server_ms:Q", title="server (ms)", format=",.2f"),
                alt.Tooltip("engine_ms:Q", title="engine (ms)", format=",.2f"),
                alt.Tooltip("output_tokens:Q", title="output tokens", format=","),
                alt.Tooltip("trace_id:N", title="trace"),
            ],
        )
        .properties(title=alt.Title(title, subtitle=subtitle))
    )
    return chart


def time_breakdown(breakdown: pl.DataFrame, *, limit: int = 100, width: int = 560) -> ChartType:
    """Deprecated name of :func:`time_breakdown_chart` (it clashed with the frame's function)."""
    warnings.warn(
        "charts.time_breakdown is renamed charts.time_breakdown_chart "
        "(frames.time_breakdown is the frame it draws)",
        DeprecationWarning,
        stacklevel=2,
    )
    return time_breakdown_chart(breakdown, limit=limit, width=width)
