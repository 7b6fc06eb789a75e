"""``Telemetry``: what :func:`~sagellm_obs.telemetry.configure` set up, and the producers' port.

Producers (the engine, its stat logger, the server) use only its
:class:`~sagellm_obs.telemetry.port.TelemetryPort` members; the rest (providers, the pipeline, the
store) is for users and for tests of the telemetry itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from sagellm_obs import semconv as sc
from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.store import layout
from sagellm_obs.store.run import RunStore
from sagellm_obs.telemetry.exporting import CountingSpanExporter
from sagellm_obs.telemetry.ids import TraceIdOverride
from sagellm_obs.telemetry.pipeline import Pipeline
from sagellm_obs.telemetry.records import RequestRecord
from sagellm_obs.telemetry.sdk_private import engaged_fallbacks, span_processors
from sagellm_obs.telemetry.vllm_spans import VllmSpanReceiver, running, with_resource


@dataclass
class Telemetry:
    """What :func:`configure` set up. Pass it to the engine; ``shutdown()`` flushes everything.

    Producers (the engine, its stat logger, the server) use only its
    :class:`~sagellm_obs.telemetry.port.TelemetryPort` members; ``pipeline`` is the machinery
    behind them, public for tests of the telemetry itself.
    """

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    tracer: trace.Tracer
    pipeline: Pipeline
    store: RunStore | None
    capture_content: bool
    service_name: str
    engine_id: str
    otlp: list[CountingSpanExporter] = field(default_factory=list)
    prometheus_port: int | None = None
    #: Which GenAI names this telemetry emits: ``latest``, ``legacy`` or ``dup`` (both), read
    #: once by ``configure()`` (see :func:`sagellm_obs.semconv.genai_semconv_mode`).
    genai_semconv: str = "latest"
    #: The ``prometheus_client`` registry behind ``/metrics`` (ours + vLLM's), when enabled.
    prometheus_registry: Any = None
    _prometheus_server: Any = None
    # Push readers only: flushing Prometheus' pull reader would queue a duplicate of every
    # metric for the next scrape.
    _push_readers: list[MetricReader] = field(default_factory=list)
    #: The provider's id generator; :meth:`trace_id_hint` sets its next trace id.
    _ids: TraceIdOverride | None = None
    #: The receiver of vLLM's own spans (``configure(vllm_tracing=True)``), else None.
    vllm_spans: VllmSpanReceiver | None = None
    _closed: bool = False

    # --- the producers' port (telemetry/port.py) -------------------------------------------------
    @property
    def anchor(self) -> ClockAnchor:
        """Converts vLLM's monotonic stamps to epoch time (the spans use the same anchor)."""
        return self.pipeline.anchor

    def submit_request(self, record: RequestRecord) -> None:
        """Queue a finished request's record: O(1), never raises (the engine's hot path)."""
        self.pipeline.submit_request(record)

    def submit_step(self, step: dict[str, Any]) -> None:
        """Queue one engine step's record (keys from ``semconv.STEP_*``)."""
        self.pipeline.submit_step(step)

    def write_kv_events(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append KV cache event records to the run folder (nothing when the store is off).

        Called on the KV event consumer's thread; the store's writes are thread-safe.
        """
        if self.store is not None:
            self.store.write(layout.KV_EVENTS, records)

    @contextlib.contextmanager
    def trace_id_hint(self, trace_id: int) -> Iterator[None]:
        """Within the block, the next root span this thread starts gets ``trace_id`` (not 0).

        The server uses it so that its HTTP span lands in the trace the engine alone would
        derive from the protocol ``trace_id``.
        """
        ids = self._ids
        if ids is None or not trace_id:
            yield
            return
        ids.next_trace_id = trace_id
        try:
            yield
        finally:
            ids.next_trace_id = 0

    def vllm_trace_headers(self, record: RequestRecord) -> dict[str, str]:
        """The W3C ``traceparent`` (and ``tracestate``) to hand vLLM for this request.

        Reserves the id of the request's SERVER span now (``record.span_id``), so that vLLM's
        ``llm_request`` span, emitted when the request finishes, is its child in the same trace;
        the receiver routes that span back here. vLLM's span follows the sampled flag of the
        request's parent (sampled when the request starts the trace).
        """
        if not record.span_id:
            ids = self._ids
            record.span_id = ids.generate_span_id() if ids is not None else _random_span_id()
        trace_id = record.otel_trace_id
        if not trace_id:  # never happens for engine records (a protocol trace id names one)
            record.otel_trace_id = trace_id = _random_span_id() << 64 | _random_span_id()
        sampled = record.parent_sampled if record.parent_span_id else True
        headers = {"traceparent": f"00-{trace_id:032x}-{record.span_id:016x}-0{int(sampled)}"}
        if record.tracestate:
            headers["tracestate"] = record.tracestate
        # The process's receiver even when this telemetry did not ask for vLLM's tracing: an
        # engine started under an earlier configure(vllm_tracing=True) still sends it there.
        receiver = self.vllm_spans or running()
        if receiver is not None:
            receiver.expect(record.span_id, self.take_spans)
        return headers

    def forget_vllm_span(self, record: RequestRecord) -> None:
        """vLLM will not trace this request (it was aborted): stop waiting for its span."""
        receiver = self.vllm_spans or running()
        if receiver is not None and record.span_id:
            receiver.forget(record.span_id)

    def take_spans(self, spans: Sequence[ReadableSpan]) -> None:
        """Spans ended elsewhere (vLLM's), handed to every span processor as if ended here.

        Their resource gains our engine and run ids; nothing else changes. The local store writes
        them to the run folder, OTLP forwards them to the collector.
        """
        if self._closed:
            return
        extra: dict[str, Any] = {sc.RESOURCE_ENGINE_ID: self.engine_id}
        if self.store is not None:
            extra[sc.RESOURCE_RUN_ID] = self.store.run_id
        spans = with_resource(spans, extra)
        procs = span_processors(self.tracer_provider)
        if procs is None:
            active: Any = getattr(self.tracer_provider, "_active_span_processor", None)
            procs = (active,) if active is not None else ()
        for span in spans:
            for proc in procs:
                proc.on_end(span)

    def peak_mem_mb(self, *, sample: bool = False) -> int:
        """Peak RSS of the engine's processes seen so far, in MB; ``sample`` reads it now,
        listing the child processes anew (call it when an engine has started)."""
        if sample:
            return self.pipeline.memory.sample(rescan=True)
        return self.pipeline.peak_mem_mb

    def annotate_run(self, **fields: Any) -> None:
        """Add fields to the run's manifest (nothing when the local store is off)."""
        if self.store is not None:
            self.store.update_manifest(**fields)

    @property
    def run_dir(self) -> Path | None:
        """The run folder of the local store, if the store is on."""
        return self.store.path if self.store else None

    @property
    def run_id(self) -> str | None:
        """The run id of the local store (the resource's ``sagellm.run_id``), if the store is on."""
        return self.store.run_id if self.store else None

    def flush(self, timeout: float = 10.0) -> bool:
        """Build pending spans and metrics and push them through every exporter.

        With vLLM's tracing on, vLLM's own spans are flushed first: they reach the receiver, and
        from it this telemetry's processors, before those are flushed.
        """
        ok = self._flush_vllm_spans(timeout)
        ok = self.pipeline.flush(timeout) and ok
        ok = self.tracer_provider.force_flush(int(timeout * 1000)) and ok
        for reader in self._push_readers:
            ok = reader.force_flush(timeout * 1000) and ok
        return ok

    def _flush_vllm_spans(self, timeout: float) -> bool:
        if self.vllm_spans is None:
            return True
        provider: Any = trace.get_tracer_provider()  # vLLM's: its init_tracer installs it
        if provider is self.tracer_provider or not hasattr(provider, "force_flush"):
            return True
        try:
            return bool(provider.force_flush(int(timeout * 1000)))
        except Exception:
            return False

    def stats(self) -> dict[str, int]:
        """Counters of the telemetry itself: recorded, dropped and failed records, export errors.

        ``sdk_fallbacks`` counts the SDK hooks that fell back to the SDK's slower public way in
        this process (:func:`sagellm_obs.telemetry.engaged_fallbacks` names them);
        ``clock_steps`` the wall-clock steps the clock anchor followed.
        """
        return {
            "requests_recorded": self.pipeline.requests_recorded,
            "steps_recorded": self.pipeline.steps_recorded,
            "records_dropped": self.pipeline.dropped,
            "record_failures": self.pipeline.failures,
            "otlp_spans_exported": sum(e.exported for e in self.otlp),
            "otlp_spans_failed": sum(e.failed for e in self.otlp),
            "sdk_fallbacks": len(engaged_fallbacks()),
            "clock_steps": self.pipeline.clock_steps,
        }

    def shutdown(self) -> None:
        """Flush and stop everything; safe to call twice."""
        if self._closed:
            return
        self._flush_vllm_spans(5.0)
        self._closed = True
        try:
            self.pipeline.shutdown()
            self.tracer_provider.shutdown()
            self.meter_provider.shutdown()
        finally:
            if self._prometheus_server is not None:
                self._prometheus_server.shutdown()
            if self.store is not None:
                self.store.close()


def _random_span_id() -> int:
    import random

    return random.getrandbits(64) or 1
