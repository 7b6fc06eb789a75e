"""StoreMetricExporter / StoreSpanExporter: SDK providers writing real lines into a RunStore."""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from sagellm_obs.store import RunStore, files_of, iter_jsonl
from sagellm_obs.store.exporters import StoreMetricExporter, StoreSpanExporter
from sagellm_obs.store.otlp_json import parse_metrics_line, parse_traces_line

BOUNDS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
LATENCIES = (0.001, 0.005, 0.0051, 0.01, 0.02, 0.05, 0.3, 0.3, 0.9, 1.0, 2.0, 7.5, 100.0)
TEMPORALITY_CUMULATIVE = 2  # AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def _expected_buckets(values: tuple[float, ...], bounds: tuple[float, ...]) -> list[int]:
    """OTel explicit buckets: bucket i holds bounds[i-1] < v <= bounds[i]."""
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[bisect.bisect_left(bounds, v)] += 1
    return counts


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    s = RunStore(tmp_path / "run")
    yield s
    s.close()


def _metric_lines(store: RunStore) -> list[dict[str, Any]]:
    return [obj for f in files_of(store.path, "metrics") for _, obj in iter_jsonl(f)]


def _metrics_by_name(line: dict[str, Any]) -> dict[str, Any]:
    msg = parse_metrics_line(line)
    return {m.name: m for rm in msg.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def test_metric_lines_parse_and_hold_the_recorded_histogram(store: RunStore) -> None:
    reader = PeriodicExportingMetricReader(
        StoreMetricExporter(store), export_interval_millis=3_600_000
    )
    provider = MeterProvider(
        resource=Resource.create({"service.name": "metric-lines"}),
        metric_readers=[reader],
        views=[
            View(
                instrument_name="lat",
                aggregation=ExplicitBucketHistogramAggregation(boundaries=list(BOUNDS)),
            )
        ],
    )
    meter = provider.get_meter("store.test", "9.9")
    hist = meter.create_histogram("lat", unit="s")
    counter = meter.create_counter("reqs")
    gauge = meter.create_gauge("kv")
    for v in LATENCIES:
        hist.record(v, {"model": "m"})
    counter.add(3, {"model": "m"})
    counter.add(4, {"model": "n"})
    gauge.set(0.25)

    assert provider.force_flush()
    lines = _metric_lines(store)
    assert len(lines) == 1
    metrics = _metrics_by_name(lines[0])
    assert set(metrics) == {"lat", "reqs", "kv"}

    (point,) = metrics["lat"].histogram.data_points
    assert list(point.explicit_bounds) == list(BOUNDS)
    assert list(point.bucket_counts) == _expected_buckets(LATENCIES, BOUNDS)
    assert point.count == len(LATENCIES)
    assert point.sum == pytest.approx(sum(LATENCIES))
    assert point.min == min(LATENCIES)
    assert point.max == max(LATENCIES)
    assert metrics["lat"].unit == "s"
    assert metrics["lat"].histogram.aggregation_temporality == TEMPORALITY_CUMULATIVE
    sums = {p.attributes[0].value.string_value: p.as_int for p in metrics["reqs"].sum.data_points}
    assert sums == {"m": 3, "n": 4}
    assert metrics["reqs"].sum.is_monotonic
    assert metrics["kv"].gauge.data_points[0].as_double == 0.25

    # Cumulative: a second collection carries the totals so far.
    for v in (0.2, 0.2):
        hist.record(v, {"model": "m"})
    assert provider.force_flush()
    lines = _metric_lines(store)
    assert len(lines) == 2
    (point,) = _metrics_by_name(lines[1])["lat"].histogram.data_points
    assert list(point.bucket_counts) == _expected_buckets((*LATENCIES, 0.2, 0.2), BOUNDS)
    provider.shutdown()


def test_exemplar_ids_are_hex_in_the_file(store: RunStore) -> None:
    reader = PeriodicExportingMetricReader(
        StoreMetricExporter(store), export_interval_millis=3_600_000
    )
    mp = MeterProvider(metric_readers=[reader])
    tp = TracerProvider()
    hist = mp.get_meter("m").create_histogram("lat")
    with tp.get_tracer("t").start_as_current_span("s") as span:
        hist.record(0.5)
        ctx = span.get_span_context()
    assert mp.force_flush()
    (line,) = _metric_lines(store)
    (exemplar,) = line["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["histogram"][
        "dataPoints"
    ][0]["exemplars"]
    assert exemplar["traceId"] == f"{ctx.trace_id:032x}"
    assert exemplar["spanId"] == f"{ctx.span_id:016x}"
    (point,) = _metrics_by_name(line)["lat"].histogram.data_points
    assert point.exemplars[0].trace_id == ctx.trace_id.to_bytes(16, "big")
    assert point.exemplars[0].span_id == ctx.span_id.to_bytes(8, "big")
    mp.shutdown()
    tp.shutdown()


def test_no_line_when_nothing_was_recorded(store: RunStore) -> None:
    reader = PeriodicExportingMetricReader(
        StoreMetricExporter(store), export_interval_millis=3_600_000
    )
    mp = MeterProvider(metric_readers=[reader])
    mp.get_meter("m").create_histogram("unused")
    assert mp.force_flush()
    assert _metric_lines(store) == []
    mp.shutdown()


def test_span_exporter_writes_one_parseable_line_per_batch(store: RunStore) -> None:
    exporter = StoreSpanExporter(store)
    tp = TracerProvider(resource=Resource.create({"service.name": "span-lines"}))
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tp.get_tracer("t")
    ids = []
    for i in range(3):
        with tracer.start_as_current_span(f"op {i}", attributes={"i": i}) as span:
            ids.append(span.get_span_context().span_id)
    tp.shutdown()
    lines = [obj for f in files_of(store.path, "traces") for _, obj in iter_jsonl(f)]
    assert len(lines) == 3
    got = []
    for line in lines:
        text = json.dumps(line)
        assert re.search(r'"spanId": "[0-9a-f]{16}"', text)
        msg = parse_traces_line(line)
        (span,) = msg.resource_spans[0].scope_spans[0].spans
        got.append(int.from_bytes(span.span_id, "big"))
    assert got == ids
    # After shutdown the exporter refuses, instead of writing to a closed store.
    assert exporter.export([]) is SpanExportResult.FAILURE


def test_exporters_report_failure_instead_of_raising(tmp_path: Path) -> None:
    class Broken(RunStore):
        def write(self, kind: str, objects: Any) -> int:
            raise OSError("disk full")

    broken = Broken(tmp_path)
    tp = TracerProvider()
    spans_exporter = StoreSpanExporter(broken)
    with tp.get_tracer("t").start_as_current_span("s") as span:
        pass
    assert spans_exporter.export([span]) is SpanExportResult.FAILURE  # type: ignore[list-item]

    metric_exporter = StoreMetricExporter(broken)
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    mp = MeterProvider(metric_readers=[reader])
    mp.get_meter("m").create_counter("c").add(1)
    results: list[MetricExportResult] = []
    original = metric_exporter.export

    def spy(*args: Any, **kwargs: Any) -> MetricExportResult:
        results.append(original(*args, **kwargs))
        return results[-1]

    metric_exporter.export = spy  # type: ignore[method-assign]
    mp.force_flush()
    assert results == [MetricExportResult.FAILURE]
    mp.shutdown()
    tp.shutdown()
    broken.close()
