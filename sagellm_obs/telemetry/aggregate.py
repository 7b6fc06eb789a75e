"""Request metrics aggregated in the telemetry thread and handed to the SDK's readers as points.

Why not the SDK's instruments: a synchronous instrument costs ~8 µs per point (a ``Measurement``,
its attributes cleaned and hashed, locks, an exemplar offer, all again for every reader) and a
finished request makes 9 points. Here one dict lookup finds the request's series and a point is a
bisect and a few additions. At collection every reader gets ``Metric`` objects shaped exactly as
the SDK would make them (explicit-bucket histograms, a monotonic sum, exemplars chosen as the SDK's
default reservoirs and ``OTEL_METRICS_EXEMPLAR_FILTER`` choose them, the reader's temporality,
the SDK's cardinality limit), merged into what the SDK collected for it.

This relies on private attributes of the SDK's ``MetricReader`` (the collect callback the
``MeterProvider`` installs, the reader's temporality and cardinality tables), read and replaced
through :mod:`~sagellm_obs.telemetry.sdk_private` only. :meth:`RequestMetrics.attach` returns
False if they are missing; the pipeline then records through the
instruments (:meth:`Instruments.record_request`), which stays the reference this module is tested
against (``tests/telemetry/test_telemetry_aggregate.py``).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence
from random import random
from time import time_ns
from typing import Any

from opentelemetry.sdk.metrics import Counter, Exemplar, Histogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics.export import (
    Histogram as HistogramData,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

from sagellm_obs import semconv as sc
from sagellm_obs.telemetry import sdk_private
from sagellm_obs.telemetry.instruments import attribute_sets
from sagellm_obs.telemetry.records import RequestRecord

_log = logging.getLogger(__name__)

#: The SDK's default limit of attribute sets per metric; later sets share one overflow point.
CARDINALITY_LIMIT = 2000
_OVERFLOW_ATTRS: dict[str, Any] = {"otel.metric.overflow": True}
_OVERFLOW_KEY = tuple(_OVERFLOW_ATTRS.items())
# Series (request keys) remembered for the fast lookup; past this, keys are looked up afresh.
_MAX_SERIES = 4 * CARDINALITY_LIMIT
_PRIMITIVE = (str, bool, int, float)
_DELTA, _CUMULATIVE = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE

# Histograms in the order of ``_Series.hists`` (the request-level ones share their attributes).
_HISTOGRAMS = (
    sc.M_REQUEST_DURATION,
    sc.M_TTFT,
    sc.M_QUEUE,
    sc.M_PREFILL,
    sc.M_TPOT,
    sc.M_DECODE,
    sc.M_TOKEN_USAGE,
    sc.M_REQUEST_INPUT_TOKENS,
    sc.M_REQUEST_OUTPUT_TOKENS,
)
_DURATION, _TTFT, _QUEUE, _PREFILL, _TPOT, _DECODE, _TOKENS, _INPUT, _OUTPUT = range(
    len(_HISTOGRAMS)
)
# An exemplar as stored: (sequence number, value, time, span id, trace id, filtered attributes:
# those of the measurement that its point lacks, only ever non-empty on an overflow point).
_Ex = tuple[int, float, int, "int | None", "int | None", "dict[str, Any]"]
_NONE: dict[str, Any] = {}


def exemplar_filter() -> str:
    """``OTEL_METRICS_EXEMPLAR_FILTER`` as the SDK reads it (``trace_based`` by default)."""
    name = os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "trace_based")
    if name not in ("trace_based", "always_on", "always_off"):
        raise ValueError(f"Unknown exemplar filter '{name}'.")
    return name


class _Hist:
    """One explicit-bucket histogram point: cumulative state plus one window per delta reader."""

    __slots__ = (
        "attrs", "bounds", "counts", "exemplars", "max", "min", "start_ns", "sum", "windows",
    )  # fmt: skip

    def __init__(self, attrs: dict[str, Any], bounds: tuple[float, ...], n_windows: int) -> None:
        self.attrs = attrs
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum: float = 0
        self.min = math.inf
        self.max = -math.inf
        # Per delta reader: [sum, min, max] since its last collection.
        self.windows = [[0, math.inf, -math.inf] for _ in range(n_windows)]
        self.exemplars: list[_Ex | None] = [None] * (len(bounds) + 1)
        self.start_ns = time_ns()

    def add(
        self,
        value: float,
        ex: tuple[int, int, int | None, int | None] | None,
        filtered: dict[str, Any] = _NONE,
    ) -> None:
        i = bisect_left(self.bounds, value)
        self.counts[i] += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        for w in self.windows:
            w[0] += value
            if value < w[1]:
                w[1] = value
            if value > w[2]:
                w[2] = value
        if ex is not None:
            # The SDK's aligned-bucket reservoir: the last measurement of each bucket.
            self.exemplars[i] = (ex[0], value, ex[1], ex[2], ex[3], filtered)


class _Overflow:
    """A series' view of an overflow point: exemplars keep the attributes the point lacks."""

    __slots__ = ("filtered", "hist")

    def __init__(self, hist: _Hist, filtered: dict[str, Any]) -> None:
        self.hist = hist
        self.filtered = filtered

    def add(self, value: float, ex: tuple[int, int, int | None, int | None] | None) -> None:
        self.hist.add(value, ex, self.filtered)


class _Sum:
    """One monotonic sum point."""

    __slots__ = ("attrs", "reservoirs", "start_ns", "value")

    def __init__(self, attrs: dict[str, Any], n_readers: int) -> None:
        self.attrs = attrs
        self.value = 0
        # Per reader, the SDK's SimpleFixedSizeExemplarReservoir of size 1: [seen, exemplar], a
        # uniformly random one of the measurements offered since that reader's last collection.
        self.reservoirs: list[list[Any]] = [[0, None] for _ in range(n_readers)]
        self.start_ns = time_ns()


class _Series:
    """The points one request key (operation, model, error type, finish reason, engine) updates."""

    __slots__ = ("filtered", "hists", "requests", "tokens")

    def __init__(
        self,
        hists: list[_Hist | _Overflow],
        tokens: list[tuple[_Hist | _Overflow, bool]],
        requests: _Sum,
        filtered: dict[str, Any],
    ) -> None:
        self.hists = hists
        # (histogram, True for output tokens): the legacy and/or the latest token histograms.
        self.tokens = tokens
        self.requests = requests
        # The requests counter's measurement attributes, for its exemplars on an overflow point.
        self.filtered = filtered


class _ReaderState:
    """What one reader has seen: its temporalities, delta window, last collection."""

    __slots__ = ("hist_delta", "index", "last_ns", "prev", "seq", "sum_delta", "window")

    def __init__(self, index: int, hist_delta: bool, sum_delta: bool, window: int) -> None:
        self.index = index  # into _Sum.reservoirs
        self.hist_delta = hist_delta
        self.sum_delta = sum_delta
        self.window = window  # index into _Hist.windows, or -1
        self.seq = 0  # exemplars newer than this are new to the reader
        self.last_ns = 0
        # Delta readers: what each point had at the last collection.
        self.prev: dict[object, Any] = {}


def _histogram_point(
    h: _Hist,
    start: int,
    now: int,
    counts: list[int],
    total: float,
    low: float,
    high: float,
    exemplars: list[Exemplar],
) -> HistogramDataPoint:
    return HistogramDataPoint(
        attributes=h.attrs,
        start_time_unix_nano=start,
        time_unix_nano=now,
        count=sum(counts),
        sum=total,
        bucket_counts=tuple(counts),
        explicit_bounds=h.bounds,
        min=low,
        max=high,
        exemplars=exemplars,
    )


def _collection_time(data: MetricsData | None) -> int | None:
    """The time the SDK stamped on the points of this collection, if it collected any."""
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    return int(point.time_unix_nano)
    return None


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    """Drop what the SDK would drop (None, non-primitive values) from an attribute set."""
    return {k: v for k, v in attrs.items() if isinstance(v, _PRIMITIVE)}


def _by_class(table: dict[type, Any], kind: type) -> Any:
    """A reader's setting for an instrument kind (its tables are keyed by the SDK's classes)."""
    for cls, value in table.items():
        if issubclass(cls, kind):
            return value
    raise KeyError(kind.__name__)


class RequestMetrics:
    """Aggregates finished requests' metric points; see the module docstring."""

    def __init__(
        self,
        resource: Resource,
        scope_name: str = sc.SCOPE_NAME,
        semconv: str = sc.SEMCONV_LATEST,
    ) -> None:
        self._resource = resource
        self._latest, self._legacy = sc.emits_latest(semconv), sc.emits_legacy(semconv)
        self._scope = InstrumentationScope(scope_name)
        self._filter = exemplar_filter()
        self._lock = threading.Lock()
        self._series: dict[tuple[Any, ...], _Series] = {}
        self._hists: list[dict[tuple[Any, ...], _Hist]] = [{} for _ in _HISTOGRAMS]
        self._sums: dict[tuple[Any, ...], _Sum] = {}
        self._seq = 0
        self._n_windows = 0
        self._n_readers = 0

    # --- wiring ---------------------------------------------------------------------------------
    def attach(self, readers: Sequence[MetricReader]) -> bool:
        """Merge our points into every reader's collections; False if a reader cannot take them.

        Call after the ``MeterProvider`` was built on ``readers``. All or none: on False nothing
        was changed.
        """
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return False
        plans: list[tuple[MetricReader, Callable[..., Any], _ReaderState]] = []
        windows = 0
        for reader in readers:
            collect = sdk_private.reader_collect(reader)
            table = sdk_private.reader_temporality(reader)
            # A reader with cardinality limits of its own gets the SDK's points (rare).
            limits = sdk_private.reader_cardinality(reader)
            if collect is None or table is None or limits is None:
                return False
            try:
                hist = _by_class(table, Histogram)
                total = _by_class(table, Counter)
                if limits and any(
                    _by_class(limits, k) != CARDINALITY_LIMIT for k in (Histogram, Counter)
                ):
                    return False
            except KeyError:
                return False
            hist_delta = hist is AggregationTemporality.DELTA
            state = _ReaderState(len(plans), hist_delta, total is _DELTA, -1)
            if hist_delta:
                state.window = windows
                windows += 1
            plans.append((reader, collect, state))
        self._n_windows = windows
        self._n_readers = len(plans)
        for reader, collect, state in plans:
            sdk_private.wrap_reader_collect(reader, self._collector(collect, state))
        return True

    def _collector(
        self, sdk_collect: Callable[..., MetricsData | None], state: _ReaderState
    ) -> Callable[..., MetricsData | None]:
        def collect(reader: MetricReader, timeout_millis: float = 10_000) -> MetricsData | None:
            data = sdk_collect(reader, timeout_millis=timeout_millis)
            try:
                # One collection, one time: ours take the SDK's so deltas between collections
                # line up (frames.counter_delta and friends).
                ours = self.metrics(state, _collection_time(data))
            except Exception:  # telemetry must not break the reader's export
                _log.exception("sagellm-obs: collecting the request metrics failed")
                return data
            return self._merge(data, ours)

        return collect

    def _merge(self, data: MetricsData | None, ours: list[Metric]) -> MetricsData | None:
        if not ours:
            return data
        if data is None or not data.resource_metrics:
            scope = ScopeMetrics(self._scope, ours, self._scope.schema_url or "")
            resource = ResourceMetrics(self._resource, [scope], self._resource.schema_url)
            return MetricsData([resource])
        first, *rest = data.resource_metrics
        scopes = list(first.scope_metrics)
        for i, scope in enumerate(scopes):
            if scope.scope == self._scope:
                scopes[i] = ScopeMetrics(scope.scope, [*scope.metrics, *ours], scope.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(self._scope, ours, self._scope.schema_url or ""))
        return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url), *rest])

    # --- recording (the telemetry thread) -------------------------------------------------------
    def record(self, r: RequestRecord, span: SpanContext | None) -> None:
        """A finished request's points; ``span`` is its SERVER span (for exemplars)."""
        key = (r.operation, r.model, r.error_type or "", r.finish_reason, r.engine_id, r.engine_idx)
        with self._lock:
            s = self._series.get(key)
            if s is None:
                s = self._new_series(r, key)
            ex: tuple[int, int, int | None, int | None] | None = None
            mode = self._filter
            if mode != "always_off":
                valid = span is not None and span.is_valid
                if mode == "always_on" or (valid and span.trace_flags.sampled):  # type: ignore[union-attr]
                    self._seq += 1
                    if valid:
                        ex = (self._seq, time_ns(), span.span_id, span.trace_id)  # type: ignore[union-attr]
                    else:
                        ex = (self._seq, time_ns(), None, None)
            req = s.requests
            req.value += 1
            if ex is not None:
                for reservoir in req.reservoirs:
                    seen = reservoir[0] = reservoir[0] + 1
                    if seen == 1 or random() * seen < 1:
                        reservoir[1] = (ex[0], 1, ex[1], ex[2], ex[3], s.filtered)
            hists = s.hists
            hists[_DURATION].add(r.e2e, ex)
            if r.error_type:
                return
            if r.first_token_ts:
                hists[_TTFT].add(r.ttft, ex)
                hists[_QUEUE].add(r.queue, ex)
                hists[_PREFILL].add(r.prefill, ex)
            if r.output_tokens > 1:
                hists[_TPOT].add(r.tpot, ex)
                hists[_DECODE].add(r.decode, ex)
            for hist, output in s.tokens:
                hist.add(r.output_tokens if output else r.prompt_tokens, ex)

    def _new_series(self, r: RequestRecord, key: tuple[Any, ...]) -> _Series:
        attrs, with_reason, tokens_in, tokens_out = (_clean(a) for a in attribute_sets(r))
        requests = self._sum(with_reason)
        tokens: list[tuple[_Hist | _Overflow, bool]] = []
        if self._legacy:
            tokens += [
                (self._hist(_TOKENS, tokens_in), False),
                (self._hist(_TOKENS, tokens_out), True),
            ]
        if self._latest:
            tokens += [(self._hist(_INPUT, attrs), False), (self._hist(_OUTPUT, attrs), True)]
        series = _Series(
            [self._hist(i, attrs) for i in range(_TOKENS)],
            tokens,
            requests,
            with_reason if requests.attrs is _OVERFLOW_ATTRS else _NONE,
        )
        if len(self._series) < _MAX_SERIES:
            self._series[key] = series
        return series

    def _hist(self, index: int, attrs: dict[str, Any]) -> _Hist | _Overflow:
        points = self._hists[index]
        key = tuple(sorted(attrs.items()))
        if key not in points and len(points) >= CARDINALITY_LIMIT:
            return _Overflow(self._hist_at(index, _OVERFLOW_KEY, _OVERFLOW_ATTRS), attrs)
        return self._hist_at(index, key, attrs)

    def _hist_at(self, index: int, key: tuple[Any, ...], attrs: dict[str, Any]) -> _Hist:
        points = self._hists[index]
        found = points.get(key)
        if found is None:
            bounds = tuple(_HISTOGRAMS[index].buckets or ())
            found = points[key] = _Hist(attrs, bounds, self._n_windows)
        return found

    def _sum(self, attrs: dict[str, Any]) -> _Sum:
        key = tuple(sorted(attrs.items()))
        found = self._sums.get(key)
        if found is None:
            if len(self._sums) >= CARDINALITY_LIMIT:
                key, attrs = _OVERFLOW_KEY, _OVERFLOW_ATTRS
                found = self._sums.get(key)
            if found is None:
                found = self._sums[key] = _Sum(attrs, self._n_readers)
        return found

    # --- collection (a reader's thread) ---------------------------------------------------------
    def metrics(self, state: _ReaderState, now: int | None = None) -> list[Metric]:
        """The points a reader gets now, in its temporality (and updates what it has seen).

        ``now`` is the collection's time (the SDK's points carry it); default: the clock.
        """
        now = now or time_ns()
        with self._lock:
            since, state.seq = state.seq, self._seq
            last, state.last_ns = state.last_ns, now
            out: list[Metric] = []
            hist_temporality = _DELTA if state.hist_delta else _CUMULATIVE
            for spec, points in zip(_HISTOGRAMS, self._hists, strict=True):
                data = [self._hist_point(h, state, since, last, now) for h in points.values()]
                kept = [p for p in data if p is not None]
                if kept:
                    histogram = HistogramData(kept, hist_temporality)
                    out.append(Metric(spec.name, spec.description, spec.unit, histogram))
            sums = [self._sum_point(p, state, since, last, now) for p in self._sums.values()]
            kept_sums = [p for p in sums if p is not None]
            if kept_sums:
                spec = sc.M_REQUESTS
                sum_temporality = _DELTA if state.sum_delta else _CUMULATIVE
                total = Sum(kept_sums, sum_temporality, is_monotonic=True)
                out.append(Metric(spec.name, spec.description, spec.unit, total))
            return out

    @staticmethod
    def _exemplars(stored: Sequence[_Ex | None], since: int) -> list[Exemplar]:
        return [
            Exemplar(dict(e[5]), e[1], e[2], e[3], e[4])
            for e in stored
            if e is not None and e[0] > since
        ]

    def _hist_point(
        self, h: _Hist, state: _ReaderState, since: int, last: int, now: int
    ) -> HistogramDataPoint | None:
        exemplars = self._exemplars(h.exemplars, since)
        if not state.hist_delta:
            if h.max == -math.inf:  # created with its series but never recorded into
                return None
            return _histogram_point(h, h.start_ns, now, h.counts, h.sum, h.min, h.max, exemplars)
        prev = state.prev.get(h)
        counts = h.counts if prev is None else [a - b for a, b in zip(h.counts, prev, strict=True)]
        state.prev[h] = list(h.counts)
        window = h.windows[state.window]
        total, low, high = window
        window[:] = [0, math.inf, -math.inf]
        if not any(counts):
            return None
        return _histogram_point(h, last or h.start_ns, now, counts, total, low, high, exemplars)

    def _sum_point(
        self, p: _Sum, state: _ReaderState, since: int, last: int, now: int
    ) -> NumberDataPoint | None:
        reservoir = p.reservoirs[state.index]
        exemplars = self._exemplars([reservoir[1]], since)
        reservoir[:] = [0, None]
        if not state.sum_delta:
            return NumberDataPoint(p.attrs, p.start_ns, now, p.value, exemplars=exemplars)
        prev = state.prev.get(p, 0)
        state.prev[p] = p.value
        if p.value == prev:
            return None
        return NumberDataPoint(
            p.attrs, last or p.start_ns, now, p.value - prev, exemplars=exemplars
        )
