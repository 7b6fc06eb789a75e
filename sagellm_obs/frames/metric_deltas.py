"""Increases of OTel metric points over a window: counters, histograms and their quantiles.

Cumulative points report everything up to their timestamp, so windows are ``(start, end]``.
``start``/``end`` take a ``datetime`` (naive means UTC) or epoch seconds; None means unbounded.
Every function takes the ``metrics`` frame eager or lazy and collects the points of one metric
once.
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

__all__ = ["HistogramDelta", "TimeLike", "counter_delta", "histogram_delta", "histogram_quantile"]

TimeLike = datetime | float | int | None

_SERIES = ("service_name", "engine_id", "run_id", "attributes")


def counter_delta(
    metrics: pl.DataFrame | pl.LazyFrame,
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
    metrics: pl.DataFrame | pl.LazyFrame,
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
    metrics: pl.DataFrame | pl.LazyFrame,
    name: str,
    kinds: tuple[str, ...],
    where: Mapping[str, Any] | None,
) -> pl.DataFrame:
    # one collect: the points of this metric (few) are then walked in Python
    points = metrics.lazy().filter(pl.col("name") == name).collect()
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
