"""The SDK's private attributes we use are all there: no fallback engages with the installed SDK.

If one of these fails after an OpenTelemetry upgrade, the telemetry still works, but slower (it
went back to ``Tracer.start_span`` or the SDK's instruments). ``make sdk-check`` runs this file
against the newest opentelemetry-sdk the package index serves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from sagellm_obs.telemetry import AdvancedOptions, RequestRecord, configure, sdk_private
from sagellm_obs.telemetry.exporting import CountingSpanExporter
from sagellm_obs.telemetry.trace_sampling import SamplingPlan


@pytest.fixture(autouse=True)
def _fresh_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the fallbacks engaged while it ran (other tests engage some)."""
    monkeypatch.setattr(sdk_private, "_engaged", {})


def _no_fallback() -> None:
    assert sdk_private.engaged_fallbacks() == {}, "the SDK lacks a private attribute we use"


def test_tracer_hooks() -> None:
    provider = TracerProvider()
    processor = SimpleSpanProcessor(InMemorySpanExporter())
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("scope-a")
    procs = sdk_private.span_processors(provider)
    assert procs == (processor,)
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    assert sdk_private.span_processors(provider) is not procs  # identity tells a change
    scope = sdk_private.instrumentation_scope(tracer)
    assert isinstance(scope, InstrumentationScope) and scope.name == "scope-a"
    assert sdk_private.tracer_enabled(tracer) is True
    assert sdk_private.tracer_metrics_off(tracer) is True
    assert isinstance(sdk_private.span_limits(tracer), SpanLimits)
    _no_fallback()


@pytest.mark.parametrize(
    "sampler",
    [DEFAULT_ON, ParentBasedTraceIdRatio(0.5), ParentBased(ALWAYS_OFF)],
    # stable ids: the samplers' str() holds memory addresses
    ids=["default_on", "parent_based_ratio_0.5", "parent_based_always_off"],
)
def test_sampler_hooks(sampler: ParentBased) -> None:
    parts = sdk_private.parent_based_parts(sampler)
    assert parts is not None
    remote = parts[1:3]
    assert remote == (ALWAYS_ON, ALWAYS_OFF)
    assert SamplingPlan.of(sampler) is not None
    _no_fallback()


def _wrap(reader: MetricReader, seen: list[MetricReader]) -> None:
    collect = sdk_private.reader_collect(reader)
    assert collect is not None

    def wrapped(r: MetricReader, timeout_millis: float = 10_000) -> Any:
        seen.append(r)
        return collect(r, timeout_millis=timeout_millis)

    sdk_private.wrap_reader_collect(reader, wrapped)


def test_reader_hooks() -> None:
    memory = InMemoryMetricReader()
    readers = [memory, PeriodicExportingMetricReader(OTLPMetricExporter())]
    provider = MeterProvider(metric_readers=readers)
    seen: list[MetricReader] = []
    try:
        for reader in readers:
            table = sdk_private.reader_temporality(reader)
            assert table is not None
            for kind in (Histogram, Counter):  # keyed by the SDK's subclasses
                assert any(issubclass(cls, kind) for cls in table)
            assert sdk_private.reader_cardinality(reader) is not None
            _wrap(reader, seen)
        memory.get_metrics_data()
        assert seen == [memory]  # the SDK calls the replaced callback
    finally:
        provider.shutdown()
    _no_fallback()


def test_exporter_hook() -> None:
    http = CountingSpanExporter(HttpSpans(endpoint="http://127.0.0.1:9/v1/traces"))
    grpc = CountingSpanExporter(GrpcSpans(endpoint="127.0.0.1:9", insecure=True))
    try:
        assert http.describe()["endpoint"] == "http://127.0.0.1:9/v1/traces"
        assert grpc.describe()["endpoint"] == "127.0.0.1:9"
    finally:
        http.shutdown()
        grpc.shutdown()
    _no_fallback()


def test_a_configured_telemetry_takes_both_fast_ways(
    tmp_path: Path, records: Callable[..., RequestRecord]
) -> None:
    reader = InMemoryMetricReader()
    tel = configure(
        run_dir=tmp_path / "run",
        make_current=False,
        advanced=AdvancedOptions(
            span_exporters=[InMemorySpanExporter()],
            metric_readers=[reader],
            simple_processors=True,
            pipeline_interval=0.02,
        ),
    )
    try:
        for i in range(3):
            tel.submit_request(records(tel.anchor, i))
        assert tel.flush(timeout=10)
        assert reader.get_metrics_data() is not None
        assert tel.pipeline.spans.direct, "request spans went through Tracer.start_span"
        assert tel.pipeline._aggregated is not None, "request metrics went through instruments"
    finally:
        tel.shutdown()
    _no_fallback()


def test_a_missing_attribute_engages_its_fallback_and_is_reported() -> None:
    odd = object()
    assert sdk_private.span_processors(odd) is None
    assert sdk_private.instrumentation_scope(odd) is None
    assert sdk_private.tracer_enabled(odd) is False
    assert sdk_private.tracer_metrics_off(odd) is False
    assert sdk_private.span_limits(odd) is None
    assert sdk_private.parent_based_parts(odd) is None  # type: ignore[arg-type]
    assert sdk_private.reader_temporality(odd) is None  # type: ignore[arg-type]
    assert sdk_private.reader_cardinality(odd) is None  # type: ignore[arg-type]
    assert sdk_private.reader_collect(odd) is None  # type: ignore[arg-type]
    assert sdk_private.exporter_endpoint(odd) is None
    assert set(sdk_private.engaged_fallbacks()) == set(sdk_private.HOOKS)
