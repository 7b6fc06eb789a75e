"""What :mod:`benchmarks.telemetry_cost` measures: its variants and one timed loop over each.

A variant has ``chunk`` (requests per drain), ``submit(record)``, ``settle()`` (drain after a
chunk), ``finish()``, ``spans()`` (how many it exported; ``None`` when it stores none) and
``close()``. :func:`variants` builds one of each, :func:`measure` times a loop of records through
one, :func:`metric_export_cost` times the store's periodic metric export.
"""

from __future__ import annotations

import gc
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from benchmarks._common import OthersMeter, median
from sagellm_obs.store.layout import COLUMNAR_DIR
from sagellm_obs.telemetry import AdvancedOptions, RequestRecord, Telemetry, configure

SPANS_PER_BATCH = 512  # the batch span processor's max_export_batch_size
METRIC_EXPORTS = 5
ASSUMED_RATE = 50.0  # requests/s for amortising the periodic metric export (engine benchmark)


# --- the vLLM-style path -------------------------------------------------------------------------


class ProtobufDropExporter(SpanExporter):
    """Encodes each batch as the OTLP exporters do (protobuf bytes), then drops it."""

    def __init__(self) -> None:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        self._encode = encode_spans
        self.spans = 0
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(self._encode(spans).SerializeToString())
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


_PROPAGATOR = TraceContextTextMapPropagator()


def _vllm_smart_context() -> Context | None:
    """``vllm.tracing.otel._get_smart_context`` (vLLM 0.32), copied to keep vllm unimported."""
    if get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    if tp := os.environ.get("traceparent", os.environ.get("TRACEPARENT")):  # noqa: SIM112
        carrier["traceparent"] = tp
    if ts := os.environ.get("tracestate", os.environ.get("TRACESTATE")):  # noqa: SIM112
        carrier["tracestate"] = ts
    if not carrier:
        carrier = dict(os.environ)
    return _PROPAGATOR.extract(carrier)


class VllmStyle:
    """vLLM 0.32's per-request span: ``OutputProcessor.do_tracing`` + ``manual_instrument_otel``."""

    chunk = SPANS_PER_BATCH  # one span per request

    def __init__(self, processor: SpanProcessor | None = None) -> None:
        resource = Resource.create(
            {
                "vllm.instrumenting_module_name": "vllm.llm_engine",
                "vllm.process_id": str(os.getpid()),
            }
        )
        self.provider = TracerProvider(resource=resource)
        self.exporter = ProtobufDropExporter()
        self.provider.add_span_processor(processor or BatchSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("vllm.tracing.otel")

    def submit(self, r: RequestRecord) -> None:
        # do_tracing: trace_headers is None for requests without a traceparent.
        attributes: dict[str, Any] = {
            "gen_ai.latency.time_to_first_token": r.ttft,
            "gen_ai.latency.e2e": r.e2e,
            "gen_ai.latency.time_in_queue": r.scheduled_ts - r.queued_ts,
            "gen_ai.usage.prompt_tokens": r.prompt_tokens,
            "gen_ai.usage.completion_tokens": r.output_tokens,
            "gen_ai.latency.time_in_model_prefill": r.first_token_ts - r.scheduled_ts,
            "gen_ai.latency.time_in_model_decode": r.last_token_ts - r.first_token_ts,
            "gen_ai.latency.time_in_model_inference": r.last_token_ts - r.scheduled_ts,
            "gen_ai.request.id": r.request_id,
        }
        if r.top_p:
            attributes["gen_ai.request.top_p"] = r.top_p
        if r.max_tokens:
            attributes["gen_ai.request.max_tokens"] = r.max_tokens
        if r.temperature:
            attributes["gen_ai.request.temperature"] = r.temperature
        attributes["gen_ai.request.n"] = 1
        # manual_instrument_otel(span_name="llm_request", start_time=arrival, kind=SERVER, ...)
        ctx = _vllm_smart_context()
        span = self.tracer.start_span(
            name="llm_request",
            context=ctx,
            start_time=int(r.arrival_time * 1e9),
            kind=SpanKind.SERVER,
        )
        span.set_attributes(attributes)
        span.end()

    def settle(self) -> None:
        self.provider.force_flush()

    def finish(self) -> None:
        self.provider.force_flush()

    def spans(self) -> int:
        return self.exporter.spans

    def close(self) -> None:
        self.provider.shutdown()


# --- our variants --------------------------------------------------------------------------------


def _no_metrics(record: RequestRecord, span: Any) -> None:
    return None


class Ours:
    """One ``configure(make_current=False)`` telemetry."""

    chunk = SPANS_PER_BATCH // 4  # four spans per request

    def __init__(
        self,
        run_dir: Path | None,
        *,
        metrics: bool = True,
        otlp: bool = False,
        user_processor: bool = False,
        sdk_metrics: bool = False,
        copies: bool = False,
    ) -> None:
        self.otlp = ProtobufDropExporter() if otlp else None
        self.tel: Telemetry = configure(
            run_dir=run_dir if run_dir is not None else False,
            otlp_endpoint=False,
            prometheus_port=False,
            engine_id="vllm-bench",
            service_name="sagellm-obs-bench",
            make_current=False,
            advanced=AdvancedOptions(
                span_exporters=[self.otlp] if self.otlp else [],
                sdk_request_metrics=sdk_metrics,
                columnar_copies=copies,
            ),
        )
        if not metrics:
            # Instance attribute shadows the method: the pipeline records no metric points.
            self.tel.pipeline._record_request_metrics = _no_metrics  # type: ignore[method-assign,assignment]
        if user_processor:
            self.tel.tracer_provider.add_span_processor(SpanProcessor())
        self.submitted = 0
        self.submit: Callable[[RequestRecord], None] = self._submit

    def _submit(self, record: RequestRecord) -> None:
        self.submitted += 1
        self.tel.submit_request(record)  # the port, as the engine submits

    def settle(self) -> None:
        # Wake the pipeline thread and wait until it has recorded everything submitted.
        # (Pipeline.flush() would also do, but waits for a second drain one interval later.)
        pipe = self.tel.pipeline
        wake, idle = getattr(pipe, "_wake", None), getattr(pipe, "_idle", None)
        if wake is None or idle is None:
            pipe.flush()
        else:
            with idle:
                wake.set()
                idle.wait_for(
                    lambda: pipe.requests_recorded + pipe.failures >= self.submitted, timeout=30
                )
        self.tel.tracer_provider.force_flush()

    def finish(self) -> None:
        self.tel.flush()

    def spans(self) -> int | None:
        run = self.tel.run_dir
        if run is None:
            return None
        stored = sum(p.read_bytes().count(b'"spanId":') for p in run.glob("traces-*.jsonl"))
        # With OTLP, a span missing on either side shows as a shortfall.
        return min(stored, self.otlp.spans) if self.otlp is not None else stored

    def close(self) -> None:
        self.tel.shutdown()


class Copies:
    """``full`` with the store's columnar copies on: a fresh run folder each repetition, closed
    at its end, so every repetition pays for sealing exactly its own files (the sealing thread
    and the pools it uses are in the process's CPU; ``copies - full`` is their cost, with one
    telemetry shutdown a repetition in it)."""

    chunk = Ours.chunk

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rep = 0
        self.stored_spans = 0
        self.current: Ours | None = None

    def prepare(self) -> None:
        """A new run folder (outside the timed window); the last one is counted and removed."""
        self._retire()
        self.rep += 1
        self.current = Ours(self.root / f"rep-{self.rep}", copies=True)
        self.submit = self.current.submit

    def settle(self) -> None:
        assert self.current is not None
        self.current.settle()

    def finish(self) -> None:
        assert self.current is not None
        self.current.close()  # flushes, then seals the run's files and waits for the copies

    def spans(self) -> int:
        """Spans in the columnar copies written (each repetition's spans copy, read back)."""
        self._retire()
        return self.stored_spans

    def close(self) -> None:
        self._retire()

    def _retire(self) -> None:
        if self.current is None:
            return
        run = self.current.tel.run_dir
        assert run is not None
        for copy in run.glob(f"{COLUMNAR_DIR}/traces-*.spans.parquet"):
            self.stored_spans += pl.scan_parquet(copy).select(pl.len()).collect().item()
        shutil.rmtree(run, ignore_errors=True)
        self.current = None


def _discard(record: RequestRecord) -> None:
    return None


class Off:
    """The loop with telemetry off."""

    chunk = SPANS_PER_BATCH // 4

    def __init__(self) -> None:
        self.submitted = 0
        self.submit: Callable[[RequestRecord], None] = self._submit

    def _submit(self, record: RequestRecord) -> None:
        self.submitted += 1
        _discard(record)

    def settle(self) -> None:
        return None

    def finish(self) -> None:
        return None

    def spans(self) -> int:
        return 0

    def close(self) -> None:
        return None


# --- the measurement ------------------------------------------------------------------------------


def variants(tmp: Path) -> dict[str, Any]:
    """One of each variant, by name; the stores go under ``tmp``."""
    return {
        "off": Off(),
        "full": Ours(tmp / "full"),
        "copies": Copies(tmp / "copies"),
        "store_off": Ours(None),
        "spans_only": Ours(tmp / "spans_only", metrics=False),
        "otlp": Ours(tmp / "otlp", otlp=True),
        "sdk_path": Ours(tmp / "sdk_path", user_processor=True),
        "sdk_metrics": Ours(tmp / "sdk_metrics", sdk_metrics=True),
        "vllm_style": VllmStyle(),
    }


def measure(variant: Any, records: list[RequestRecord]) -> dict[str, float]:
    """Whole-process CPU and wall over the loop; the submitting thread's CPU in the hot path."""
    if (prepare := getattr(variant, "prepare", None)) is not None:
        prepare()  # outside the timed window
    gc.collect()
    chunk = variant.chunk
    submit = variant.submit
    hot_cpu = hot_wall = 0.0
    with OthersMeter() as others:
        c0, w0 = time.process_time(), time.perf_counter()
        for k in range(0, len(records), chunk):
            part = records[k : k + chunk]
            t0, tw = time.thread_time(), time.perf_counter()
            for r in part:
                submit(r)
            hot_cpu += time.thread_time() - t0
            hot_wall += time.perf_counter() - tw
            variant.settle()
        variant.finish()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {
        "cpu": cpu,
        "wall": wall,
        "hot_cpu": hot_cpu,
        "hot_wall": hot_wall,
        "others_cores": others.cores,
    }


def metric_export_cost(variant: Ours) -> dict[str, float]:
    """CPU of one export of the store's periodic metric reader (after the runs: all series)."""
    reader = variant.tel._push_readers[0]
    costs = []
    for _ in range(METRIC_EXPORTS):
        c0 = time.process_time()
        reader.force_flush()
        costs.append(time.process_time() - c0)
    ms = median(costs) * 1000
    return {"ms_per_export": ms, "us_per_request_at_rate": ms * 1000 / (5.0 * ASSUMED_RATE)}
