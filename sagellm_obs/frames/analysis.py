"""Run-scoped statistics over the frames: latency percentiles, goodput, hit rates, throughput.

The one home of the statistics the summary, the report and the charts show (:data:`QUANTILES`,
:func:`goodput`'s rule). Every helper takes its frame eager or lazy (``frames.scan``), builds the
whole query lazily and collects once. Step windows are half-open ``[start, end)``; ``start``/``end``
take a ``datetime`` (naive means UTC) or epoch seconds; None means unbounded. Metric-point deltas
live in :mod:`sagellm_obs.frames.metric_deltas` (re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import polars as pl

from sagellm_obs.frames.loaded import Frames
from sagellm_obs.frames.metric_deltas import (
    HistogramDelta,
    TimeLike,
    _ns,
    counter_delta,
    histogram_delta,
    histogram_quantile,
)

__all__ = [
    "LATENCY_COLUMNS",
    "MEDIAN_AND_TAIL",
    "QUANTILES",
    "HistogramDelta",
    "TimeLike",
    "compare",
    "counter_delta",
    "good_requests",
    "goodput",
    "histogram_delta",
    "histogram_quantile",
    "percentiles",
    "prefix_hit_rate",
    "quantile_label",
    "rolling_hit_rate",
    "throughput",
]

Frame = pl.DataFrame | pl.LazyFrame
"""Every helper takes its frame eager or lazy, builds one lazy query and collects it once."""

LATENCY_COLUMNS = ("ttft_s", "tpot_s", "e2e_s", "queue_s")
QUANTILES = (0.5, 0.9, 0.99)
"""The quantiles reported everywhere: summary, report, charts and :func:`percentiles`."""
MEDIAN_AND_TAIL = (0.5, 0.99)
"""The two of them where a view has room for two: the fleet charts, the benchmarks' tables."""


def quantile_label(q: float) -> str:
    """Column name of quantile ``q``: 0.5 → ``p50``, 0.999 → ``p99.9``."""
    return f"p{q * 100:g}"


def percentiles(
    requests: Frame,
    cols: Sequence[str] = LATENCY_COLUMNS,
    qs: Sequence[float] = QUANTILES,
    *,
    by: str | Sequence[str] | None = None,
) -> pl.DataFrame:
    """Count, mean and quantiles (linear interpolation) of each column, nulls and NaNs ignored.

    Args:
        requests: The ``requests`` frame (any frame with ``cols``).
        cols: Columns to summarise, one output row each (per group).
        qs: Quantiles in ``[0, 1]``, one output column each, named by :func:`quantile_label`.
        by: Optional grouping column(s), e.g. ``"model"``.

    Returns:
        Columns ``[*by, "metric", "count", "mean", "p50", ...]``; without ``by``, one row per
        column of ``cols`` in that order (count 0 and null statistics when it has no values).
    """
    return _percentiles(requests.lazy(), cols, qs, by=by).collect()


def _percentiles(
    requests: pl.LazyFrame,
    cols: Sequence[str],
    qs: Sequence[float],
    *,
    by: str | Sequence[str] | None = None,
) -> pl.LazyFrame:
    keys = [by] if isinstance(by, str) else list(by or ())
    _require(requests, [*keys, *cols])
    for q in qs:
        if not 0 <= q <= 1:
            raise ValueError(f"quantile {q} is not in [0, 1]")
    long = (
        requests.select(*keys, *(pl.col(c).cast(pl.Float64) for c in cols))
        .unpivot(on=list(cols), index=keys, variable_name="metric", value_name="value")
        .filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan())
    )
    stats = [
        pl.len().cast(pl.Int64).alias("count"),
        pl.col("value").mean().alias("mean"),
        *(pl.col("value").quantile(q, "linear").alias(quantile_label(q)) for q in qs),
    ]
    order = pl.LazyFrame({"metric": list(cols), "_order": list(range(len(cols)))})
    if keys:
        out = long.group_by([*keys, "metric"]).agg(stats).join(order, on="metric")
        return out.sort([*keys, "_order"]).drop("_order")
    out = long.group_by("metric").agg(stats)
    return (
        order.join(out, on="metric", how="left")
        .with_columns(pl.col("count").fill_null(0))
        .sort("_order")
        .drop("_order")
    )


def good_requests(slo: Mapping[str, float], columns: Sequence[str]) -> pl.Expr:
    """True for the requests that count as good under ``slo`` (see :func:`goodput`)."""
    ok = pl.all_horizontal([(pl.col(c) <= limit).fill_null(False) for c, limit in slo.items()])
    if "error_type" in columns:
        ok = ok & pl.col("error_type").is_null()
    if "cancelled" in columns:
        ok = ok & ~pl.col("cancelled").fill_null(False)
    return ok


def goodput(requests: Frame, slo: Mapping[str, float]) -> float:
    """Fraction of requests meeting every SLO (``column <= limit``), e.g. ``{"ttft_s": 0.5}``.

    The denominator is every request of the frame, failed and cancelled ones included; a request
    is good only when it finished: one with an ``error_type``, one ``cancelled`` (the client gave
    up, so its output was never delivered, however fast its first token was) or one with a null
    value for an SLO column does not meet the SLO. NaN when there are no requests. The run
    summary (``sagellm-obs run``, the report) uses this same rule.
    """
    if not slo:
        raise ValueError("goodput needs at least one SLO, e.g. {'ttft_s': 0.5}")
    lazy = requests.lazy()
    columns = _require(lazy, list(slo))
    good, n = lazy.select(good_requests(slo, columns).sum(), pl.len()).collect().row(0)
    return float(good) / n if n else math.nan


def prefix_hit_rate(steps: Frame, start: TimeLike = None, end: TimeLike = None) -> float | None:
    """Prefix-cache hit rate over ``[start, end)``: sum of hits / sum of queries of the steps.

    None when the window has no prefix-cache queries.
    """
    window = steps.lazy().filter(_window("time", start, end, closed="left"))
    queries, hits = (
        window.select(pl.col("prefix_queries").sum(), pl.col("prefix_hits").sum()).collect().row(0)
    )
    return float(hits) / queries if queries else None


def rolling_hit_rate(
    steps: Frame,
    every: str = "1s",
    *,
    period: str | None = None,
    by: str | None = None,
) -> pl.DataFrame:
    """Prefix-cache hit rate per time window of the steps.

    Args:
        steps: The ``steps`` frame.
        every: Window start interval (a polars duration: ``"1s"``, ``"500ms"``, ``"1m"``).
        period: Window length; ``every`` by default (tumbling), longer for a rolling view.
        by: Optional grouping column, e.g. ``"engine_id"``.

    Returns:
        ``[by,] time, queries, hits, hit_rate`` (hit_rate null when a window has no queries).
    """
    agg = (
        steps.lazy()
        .sort("time")
        .group_by_dynamic("time", every=every, period=period, group_by=by)
        .agg(
            pl.col("prefix_queries").sum().alias("queries"),
            pl.col("prefix_hits").sum().alias("hits"),
        )
    )
    return agg.with_columns(
        pl.when(pl.col("queries") > 0).then(pl.col("hits") / pl.col("queries")).alias("hit_rate")
    ).collect()


def throughput(requests: Frame) -> dict[str, float]:
    """Requests and tokens per second over the run span (first arrival to last finish).

    Returns:
        ``requests``, ``duration_s``, ``requests_per_s``, ``output_tokens_per_s`` and
        ``input_tokens_per_s`` (rates NaN when the span is empty).
    """
    finish = pl.col("arrival") + pl.duration(microseconds=pl.col("e2e_s").fill_null(0) * 1e6)
    n, first, last, out_tokens, in_tokens = (
        requests.lazy()
        .select(
            pl.len(),
            pl.col("arrival").min().alias("first"),
            finish.max().alias("last"),
            pl.col("output_tokens").sum(),
            pl.col("input_tokens").sum(),
        )
        .collect()
        .row(0)
    )
    if n == 0:
        return {
            "requests": 0.0,
            "duration_s": 0.0,
            "requests_per_s": math.nan,
            "output_tokens_per_s": math.nan,
            "input_tokens_per_s": math.nan,
        }
    duration = (last - first).total_seconds() if first is not None and last is not None else 0.0

    def rate(x: float) -> float:
        return x / duration if duration > 0 else math.nan

    return {
        "requests": float(n),
        "duration_s": duration,
        "requests_per_s": rate(n),
        "output_tokens_per_s": rate(out_tokens or 0),
        "input_tokens_per_s": rate(in_tokens or 0),
    }


def compare(
    a: Frames | Frame,
    b: Frames | Frame,
    cols: Sequence[str] = LATENCY_COLUMNS,
    qs: Sequence[float] = QUANTILES,
    *,
    names: tuple[str, str] = ("a", "b"),
) -> pl.DataFrame:
    """Percentiles of two runs side by side, with ``delta = b - a`` and ``ratio = b / a``.

    Args:
        a: Baseline run (its :class:`Frames` or its ``requests`` frame, eager or lazy).
        b: Other run.
        cols: Columns to compare.
        qs: Quantiles.
        names: Column names for the two runs' values.

    Returns:
        ``metric, stat, <a>, <b>, delta, ratio``; ``stat`` is ``count``, ``mean`` or a quantile
        label. ``ratio`` is null when the baseline is 0 or null.
    """
    name_a, name_b = names

    def long(frames: Frames | Frame, name: str) -> pl.LazyFrame:
        requests = frames.requests if isinstance(frames, Frames) else frames
        p = _percentiles(requests.lazy(), cols, qs).with_columns(pl.col("count").cast(pl.Float64))
        return p.unpivot(index="metric", variable_name="stat", value_name=name)

    # the baseline's row order (metric, then count, mean, quantiles), whatever the engine runs
    joined = long(a, name_a).join(
        long(b, name_b), on=["metric", "stat"], how="full", coalesce=True, maintain_order="left"
    )
    va, vb = pl.col(name_a), pl.col(name_b)
    return joined.with_columns(
        (vb - va).alias("delta"),
        pl.when(va != 0).then(vb / va).alias("ratio"),
    ).collect()


def _window(col: str, start: TimeLike, end: TimeLike, *, closed: str) -> pl.Expr:
    t = pl.col(col).dt.epoch("ns")
    cond = pl.lit(True)
    s, e = _ns(start), _ns(end)
    if s is not None:
        cond = cond & (t >= s if closed == "left" else t > s)
    if e is not None:
        cond = cond & (t < e if closed == "left" else t <= e)
    return cond


def _require(frame: pl.LazyFrame, cols: Sequence[str]) -> list[str]:
    """The frame's columns (from its schema: nothing is computed), checked to hold ``cols``."""
    columns = frame.collect_schema().names()
    missing = [c for c in cols if c not in columns]
    if missing:
        raise ValueError(f"missing column(s): {', '.join(missing)}")
    return columns
