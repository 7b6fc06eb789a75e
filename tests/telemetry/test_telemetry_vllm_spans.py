"""The receiver of vLLM's spans, fed by the OTLP/HTTP exporter vLLM itself uses (no vLLM here:
tests/engine checks the real thing). What arrives must reach the right telemetry unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sagellm_obs import AdvancedOptions, Telemetry, configure
from sagellm_obs import semconv as sc
from sagellm_obs.telemetry import RequestRecord


@pytest.fixture
def tel(tmp_path: Path) -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    mem = InMemorySpanExporter()
    t = configure(
        run_dir=tmp_path / "run",
        otlp_endpoint=False,
        vllm_tracing=True,
        make_current=False,
        advanced=AdvancedOptions(span_exporters=[mem], simple_processors=True),
    )
    receiver = t.vllm_spans
    assert receiver is not None
    default = receiver._default  # the process's receiver: an engine of another test may use it
    yield t, mem
    receiver.set_default(default)
    t.shutdown()


def _vllm_like_provider(endpoint: str, gzip: bool = False) -> TracerProvider:
    """A tracer provider as vLLM's ``init_otel_tracer`` makes it (HTTP protocol)."""
    provider = TracerProvider(
        resource=Resource.create({"vllm.instrumenting_module_name": "vllm.llm_engine"})
    )
    exporter = OTLPSpanExporter(
        endpoint=endpoint, compression=Compression.Gzip if gzip else Compression.NoCompression
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _record(request_id: str, **kw: object) -> RequestRecord:
    return RequestRecord(
        request_id=request_id,
        trace_id=request_id,
        engine_id="e",
        model="m",
        operation="text_completion",
        otel_trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        **kw,  # type: ignore[arg-type]
    )


def _llm_request(provider: TracerProvider, headers: dict[str, str], request_id: str) -> None:
    """What vLLM's ``do_tracing`` does: a SERVER span parented on the request's trace headers."""
    ctx = TraceContextTextMapPropagator().extract(headers)
    span = provider.get_tracer("vllm.tracing.otel").start_span(
        "llm_request", context=ctx, kind=SpanKind.SERVER, start_time=1_000
    )
    span.set_attributes({sc.GEN_AI_REQUEST_ID: request_id, sc.GEN_AI_LATENCY_E2E: 0.5})
    span.end(end_time=2_000)


@pytest.mark.parametrize("gzip", [False, True])
def test_spans_arrive_as_children_of_the_reserved_span(
    tel: tuple[Telemetry, InMemorySpanExporter], gzip: bool
) -> None:
    t, mem = tel
    assert t.vllm_spans is not None
    rec = _record("r1")
    headers = t.vllm_trace_headers(rec)
    assert rec.span_id
    assert headers == {"traceparent": f"00-{rec.otel_trace_id:032x}-{rec.span_id:016x}-01"}
    provider = _vllm_like_provider(t.vllm_spans.endpoint, gzip)
    _llm_request(provider, headers, "r1")
    provider.shutdown()
    (got,) = [s for s in mem.get_finished_spans() if s.name == "llm_request"]
    assert got.context.trace_id == rec.otel_trace_id
    assert got.parent is not None and got.parent.span_id == rec.span_id
    assert got.parent.is_remote
    assert got.kind == SpanKind.SERVER
    assert (got.start_time, got.end_time) == (1_000, 2_000)
    assert got.instrumentation_scope is not None
    assert got.instrumentation_scope.name == "vllm.tracing.otel"
    assert dict(got.attributes or {}) == {sc.GEN_AI_REQUEST_ID: "r1", sc.GEN_AI_LATENCY_E2E: 0.5}
    res = got.resource.attributes
    assert res["vllm.instrumenting_module_name"] == "vllm.llm_engine"
    assert res[sc.RESOURCE_ENGINE_ID] == t.engine_id
    assert t.store is not None and res[sc.RESOURCE_RUN_ID] == t.store.run_id
    # ... and in the run folder.
    assert t.flush()
    assert t.run_dir is not None
    lines = [
        json.loads(x) for p in t.run_dir.glob("traces-*.jsonl") for x in p.read_text().splitlines()
    ]
    names = [s["name"] for x in lines for rs in x["resourceSpans"] for ss in rs["scopeSpans"]
             for s in ss["spans"]]  # fmt: skip
    assert names == ["llm_request"]


def test_a_request_in_a_callers_trace_keeps_its_flags_and_tracestate(
    tel: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    t, _ = tel
    rec = _record("r2", parent_span_id=0x00F067AA0BA902B7, parent_sampled=False, tracestate="k=v")
    headers = t.vllm_trace_headers(rec)
    assert headers["traceparent"].endswith("-00")  # the caller did not sample: neither does vLLM
    assert headers["tracestate"] == "k=v"
    assert headers["traceparent"].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_each_span_goes_to_the_telemetry_that_expects_it(
    tel: tuple[Telemetry, InMemorySpanExporter], tmp_path: Path
) -> None:
    first, first_mem = tel
    other_mem = InMemorySpanExporter()
    other = configure(
        run_dir=False,
        otlp_endpoint=False,
        vllm_tracing=True,
        make_current=False,
        advanced=AdvancedOptions(span_exporters=[other_mem], simple_processors=True),
    )
    try:
        assert other.vllm_spans is first.vllm_spans  # one receiver per process
        receiver = first.vllm_spans
        assert receiver is not None
        receiver.set_default(first.take_spans)
        a, b = _record("a"), _record("b")
        provider = _vllm_like_provider(receiver.endpoint)
        _llm_request(provider, first.vllm_trace_headers(a), "a")
        _llm_request(provider, other.vllm_trace_headers(b), "b")
        orphan = _record("orphan", span_id=0x1234)  # a parent nobody announced: the default
        _llm_request(provider, {"traceparent": f"00-{'ab' * 16}-{orphan.span_id:016x}-01"}, "x")
        provider.shutdown()

        def ids(mem: InMemorySpanExporter) -> list[object]:
            return sorted(str(s.attributes[sc.GEN_AI_REQUEST_ID]) for s in mem.get_finished_spans())

        assert ids(first_mem) == ["a", "x"]
        assert ids(other_mem) == ["b"]
    finally:
        other.shutdown()


def test_an_aborted_request_is_forgotten(tel: tuple[Telemetry, InMemorySpanExporter]) -> None:
    t, mem = tel
    receiver = t.vllm_spans
    assert receiver is not None
    receiver.set_default(None)
    rec = _record("gone")
    headers = t.vllm_trace_headers(rec)
    t.forget_vllm_span(rec)
    provider = _vllm_like_provider(receiver.endpoint)
    _llm_request(provider, headers, "gone")  # a late span: nowhere to go now
    provider.shutdown()
    assert mem.get_finished_spans() == ()
