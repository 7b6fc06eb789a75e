"""Run-scoped helpers over the frames: latency percentiles, goodput, hit rates, metric deltas.

Time windows are half-open ``[start, end)`` for steps and ``(start, end]`` for cumulative metric
points (a point reports everything up to its timestamp). ``start``/``end`` take a ``datetime``
(naive means UTC) or epoch seconds; None means unbounded.
"""

from __future__ import annotations

import json
import math
import operator
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import polars as pl

from sagellm_obs.frames.load import Frames

LATENCY_COLUMNS = ("ttft_s", "tpot_s", "e2e_s", "queue_s")
QUANTILES = (0.5, 0.9, 0.99)
"""The quantiles reported everywhere: summary, report, charts and :func:`percentiles`."""
TimeLike = datetime | float | int | None


def quantile_label(q: float) -> str:
    """Column name of quantile ``q``: 0.5 → ``p50``, 0.999 → ``p99.9``."""
    return f"p{q * 100:g}"


def percentiles(
    requests: pl.DataFrame,
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
    order = pl.DataFrame({"metric": list(cols), "_order": list(range(len(cols)))})
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


def goodput(requests: pl.DataFrame, slo: Mapping[str, float]) -> float:
    """Fraction of requests meeting every SLO (``column <= limit``), e.g. ``{"ttft_s": 0.5}``.

    The denominator is every request of the frame, failed and cancelled ones included; a request
    is good only when it finished: one with an ``error_type``, one ``cancelled`` (the client gave
    up, so its output was never delivered, however fast its first token was) or one with a null
    value for an SLO column does not meet the SLO. NaN when there are no requests. The run
    summary (``sagellm-obs run``, the report) uses this same rule.
    """
    if not slo:
        raise ValueError("goodput needs at least one SLO, e.g. {'ttft_s': 0.5}")
    _require(requests, list(slo))
    if requests.is_empty():
        return math.nan
    good = requests.select(good_requests(slo, requests.columns).sum()).item()
    return float(good) / requests.height


def prefix_hit_rate(
    steps: pl.DataFrame, start: TimeLike = None, end: TimeLike = None
) -> float | None:
    """Prefix-cache hit rate over ``[start, end)``: sum of hits / sum of queries of the steps.

    None when the window has no prefix-cache queries.
    """
    window = steps.filter(_window("time", start, end, closed="left"))
    queries, hits = window.select(pl.col("prefix_queries").sum(), pl.col("prefix_hits").sum()).row(
        0
    )
    return float(hits) / queries if queries else None


def rolling_hit_rate(
    steps: pl.DataFrame,
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
        steps.sort("time")
        .group_by_dynamic("time", every=every, period=period, group_by=by)
        .agg(
            pl.col("prefix_queries").sum().alias("queries"),
            pl.col("prefix_hits").sum().alias("hits"),
        )
    )
    return agg.with_columns(
        pl.when(pl.col("queries") > 0).then(pl.col("hits") / pl.col("queries")).alias("hit_rate")
    )


def throughput(requests: pl.DataFrame) -> dict[str, float]:
    """Requests and tokens per second over the run span (first arrival to last finish).

    Returns:
        ``requests``, ``duration_s``, ``requests_per_s``, ``output_tokens_per_s`` and
        ``input_tokens_per_s`` (rates NaN when the span is empty).
    """
    n = requests.height
    if n == 0:
        return {
            "requests": 0.0,
            "duration_s": 0.0,
            "requests_per_s": math.nan,
            "output_tokens_per_s": math.nan,
            "input_tokens_per_s": math.nan,
        }
    finish = pl.col("arrival") + pl.duration(microseconds=pl.col("e2e_s").fill_null(0) * 1e6)
    first, last, out_tokens, in_tokens = requests.select(
        pl.col("arrival").min().alias("first"),
        finish.max().alias("last"),
        pl.col("output_tokens").sum(),
        pl.col("input_tokens").sum(),
    ).row(0)
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
    a: Frames | pl.DataFrame,
    b: Frames | pl.DataFrame,
    cols: Sequence[str] = LATENCY_COLUMNS,
    qs: Sequence[float] = QUANTILES,
    *,
    names: tuple[str, str] = ("a", "b"),
) -> pl.DataFrame:
    """Percentiles of two runs side by side, with ``delta = b - a`` and ``ratio = b / a``.

    Args:
        a: Baseline run (its :class:`Frames` or its ``requests`` frame).
        b: Other run.
        cols: Columns to compare.
        qs: Quantiles.
        names: Column names for the two runs' values.

    Returns:
        ``metric, stat, <a>, <b>, delta, ratio``; ``stat`` is ``count``, ``mean`` or a quantile
        label. ``ratio`` is null when the baseline is 0 or null.
    """
    name_a, name_b = names

    def long(frames: Frames | pl.DataFrame, name: str) -> pl.DataFrame:
        requests = frames.requests if isinstance(frames, Frames) else frames
        p = percentiles(requests, cols, qs).with_columns(pl.col("count").cast(pl.Float64))
        return p.unpivot(index="metric", variable_name="stat", value_name=name)

    joined = long(a, name_a).join(long(b, name_b), on=["metric", "stat"], how="full", coalesce=True)
    va, vb = pl.col(name_a), pl.col(name_b)
    return joined.with_columns(
        (vb - va).alias("delta"),
        pl.when(va != 0).then(vb / va).alias("ratio"),
    )


# --- metrics ------------------------------------------------------------------------------------

_SERIES = ("service_name", "engine_id", "run_id", "attributes")


def counter_delta(
    metrics: pl.DataFrame,
    name: str,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    where: Mapping[str, Any] | None = None,
) -> float:
    """Increase of a counter over ``(start, end]``, summed over its series.

    Cumulative points: per series (resource + attributes), the value at the last point at or
    before ``end`` minus the value at the last point at or before ``start``; a drop in value or a
    new ``start_time`` is a restart, after which the new value counts in full. Without a point
    before ``start``, a series that began inside the window counts from zero. Delta points are
    summed. ``where`` keeps only series whose attributes have these values.

    Raises:
        ValueError: ``name`` is not a counter/updowncounter in ``metrics``.
    """
    points = _series_points(metrics, name, ("counter", "updowncounter"), where)
    total = 0.0
    for series in points.partition_by(list(_SERIES), maintain_order=True):
        rows = series.select("time", "start_time", "value", "temporality", "kind").rows()
        monotonic = rows[0][4] == "counter"
        ops = _Ops[float](
            zero=0.0,
            add=operator.add,
            sub=operator.sub,
            is_reset=operator.lt if monotonic else (lambda cur, prev: False),
        )
        total += _delta(
            [(t, st, float(v)) for t, st, v, _, _ in rows if v is not None],
            _ns(start),
            _ns(end),
            delta_temporality=rows[0][3] == "delta",
            ops=ops,
        )
    return total


@dataclass(frozen=True)
class HistogramDelta:
    """Bucket counts of a histogram accumulated over a window (see :func:`histogram_delta`)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    sum: float

    def quantile(self, q: float) -> float:
        """Quantile ``q`` by :func:`histogram_quantile`."""
        return histogram_quantile(self.bounds, self.counts, q)

    @property
    def mean(self) -> float:
        """Mean of the observations (NaN when there are none)."""
        return self.sum / self.count if self.count else math.nan


def histogram_delta(
    metrics: pl.DataFrame,
    name: str,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    where: Mapping[str, Any] | None = None,
) -> HistogramDelta:
    """Observations a histogram gained over ``(start, end]``, summed over its series.

    Same window and restart rules as :func:`counter_delta`, applied to the bucket counts,
    count and sum.

    Raises:
        ValueError: ``name`` is not a histogram, or its series have different bucket bounds.
    """
    points = _series_points(metrics, name, ("histogram",), where)
    bounds: tuple[float, ...] | None = None
    acc: _Hist | None = None
    for series in points.partition_by(list(_SERIES), maintain_order=True):
        rows = series.select(
            "time", "start_time", "count", "sum", "bucket_counts", "explicit_bounds", "temporality"
        ).rows()
        for row in rows:
            b = tuple(row[5] or ())
            if bounds is None:
                bounds = b
            elif b != bounds:
                raise ValueError(f"{name}: series have different bucket bounds ({bounds} vs {b})")
        assert bounds is not None
        zero = _Hist(0, 0.0, (0,) * (len(bounds) + 1))
        values = []
        for t, st, c, x, bc, _, _ in rows:
            buckets = tuple(int(n or 0) for n in bc or ())
            if len(buckets) != len(bounds) + 1:
                raise ValueError(
                    f"{name}: a point has {len(buckets)} bucket counts for {len(bounds)} bounds"
                )
            values.append((t, st, _Hist(int(c or 0), float(x or 0.0), buckets)))
        ops = _Ops[_Hist](
            zero=zero,
            add=_Hist.plus,
            sub=_Hist.minus,
            is_reset=lambda cur, prev: cur.count < prev.count,
        )
        d = _delta(values, _ns(start), _ns(end), delta_temporality=rows[0][6] == "delta", ops=ops)
        acc = d if acc is None else acc.plus(d)
    if acc is None or bounds is None:
        return HistogramDelta((), (), 0, 0.0)
    return HistogramDelta(bounds, acc.buckets, acc.count, acc.sum)


def histogram_quantile(bounds: Sequence[float], counts: Sequence[float], q: float) -> float:
    """Quantile ``q`` of a histogram, as Prometheus' ``histogram_quantile`` computes it.

    ``bounds`` are the explicit upper bounds (ascending); ``counts`` the per-bucket (not
    cumulative) counts, one more than ``bounds``, the last for ``(bounds[-1], +Inf)``. The rank
    ``q * total`` is located in the cumulative counts and interpolated linearly within its bucket;
    the first bucket starts at 0 (unless its upper bound is ≤ 0: then that bound is returned); a
    rank in the +Inf bucket returns the highest finite bound. ``q < 0`` gives -Inf, ``q > 1``
    +Inf, no observations NaN.

    Raises:
        ValueError: ``counts`` is not one longer than ``bounds``.
    """
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"need len(bounds) + 1 counts, got {len(counts)} for {len(bounds)} bounds")
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    upper = [*map(float, bounds), math.inf]
    cumulative: list[float] = []
    running = 0.0
    for c in counts:
        running += c
        cumulative.append(running)
    total = cumulative[-1]
    if len(upper) < 2 or total <= 0:
        return math.nan
    rank = q * total
    b = bisect_left(cumulative, rank, hi=len(upper) - 1)
    if b == len(upper) - 1:
        return upper[-2]
    if b == 0 and upper[0] <= 0:
        return upper[0]
    start, end, count = 0.0, upper[b], cumulative[b]
    if b > 0:
        start = upper[b - 1]
        count -= cumulative[b - 1]
        rank -= cumulative[b - 1]
    if count <= 0:
        return start
    return start + (end - start) * (rank / count)


@dataclass(frozen=True)
class _Hist:
    count: int
    sum: float
    buckets: tuple[int, ...]

    def minus(self, other: _Hist) -> _Hist:
        return _Hist(
            self.count - other.count,
            self.sum - other.sum,
            tuple(a - b for a, b in zip(self.buckets, other.buckets, strict=True)),
        )

    def plus(self, other: _Hist) -> _Hist:
        return _Hist(
            self.count + other.count,
            self.sum + other.sum,
            tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)),
        )


V = TypeVar("V")


def _delta(
    points: list[tuple[Any, Any, V]],
    start: int | None,
    end: int | None,
    *,
    delta_temporality: bool,
    ops: _Ops[V],
) -> V:
    """Increase over ``(start, end]`` of one series' ``(time, start_time, value)`` points."""
    pts: list[tuple[int, int | None, V]] = []
    for t, st, v in points:
        t_ns = _ns(t)
        if t_ns is not None:
            pts.append((t_ns, _ns(st), v))
    pts.sort(key=lambda p: p[0])
    inside = [p for p in pts if (start is None or p[0] > start) and (end is None or p[0] <= end)]
    total = ops.zero
    if delta_temporality:
        for _, _, v in inside:
            total = ops.add(total, v)
        return total
    if not inside:
        return total
    before = [p for p in pts if start is not None and p[0] <= start]
    began = inside[0][1]
    prev: tuple[int, int | None, V]
    if before:
        prev = before[-1]
    elif start is None or (began is not None and began >= start):
        prev = (0, began, ops.zero)  # the series began inside the window
    else:
        prev, inside = inside[0], inside[1:]  # began before the window, unseen: count from here
    for cur in inside:
        restarted = cur[1] != prev[1] or ops.is_reset(cur[2], prev[2])
        total = ops.add(total, cur[2] if restarted else ops.sub(cur[2], prev[2]))
        prev = cur
    return total


@dataclass(frozen=True)
class _Ops(Generic[V]):
    zero: V
    add: Callable[[V, V], V]
    sub: Callable[[V, V], V]
    is_reset: Callable[[V, V], bool]


def _series_points(
    metrics: pl.DataFrame, name: str, kinds: tuple[str, ...], where: Mapping[str, Any] | None
) -> pl.DataFrame:
    points = metrics.filter(pl.col("name") == name)
    if points.is_empty():
        return points
    found = set(points["kind"].unique().to_list())
    if not found <= set(kinds):
        raise ValueError(f"{name} is a {', '.join(sorted(found))}, not a {' or '.join(kinds)}")
    if where:
        wanted = dict(where)
        keep = [
            a
            for a in points["attributes"].unique().to_list()
            if all(json.loads(a).get(k) == v for k, v in wanted.items())
        ]
        points = points.filter(pl.col("attributes").is_in(keep))
    return points


def _ns(t: Any) -> int | None:
    """A time as epoch nanoseconds: datetime (naive = UTC), epoch seconds, or None."""
    if t is None:
        return None
    if isinstance(t, datetime):
        aware: datetime = t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)
        delta = aware - datetime(1970, 1, 1, tzinfo=timezone.utc)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    ns: int = round(float(t) * 1e9)
    return ns


def _window(col: str, start: TimeLike, end: TimeLike, *, closed: str) -> pl.Expr:
    t = pl.col(col).dt.epoch("ns")
    cond = pl.lit(True)
    s, e = _ns(start), _ns(end)
    if s is not None:
        cond = cond & (t >= s if closed == "left" else t > s)
    if e is not None:
        cond = cond & (t < e if closed == "left" else t <= e)
    return cond


def _require(df: pl.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"missing column(s): {', '.join(missing)}")
