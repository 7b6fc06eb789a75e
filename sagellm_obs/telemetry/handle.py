"""``Telemetry``: what :func:`~sagellm_obs.telemetry.configure` set up, and the producers' port.

Producers (the engine, its stat logger, the server) use only its
:class:`~sagellm_obs.telemetry.port.TelemetryPort` members; the rest (providers, the pipeline, the
store) is for users and for tests of the telemetry itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import TracerProvider

from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.store.run import RunStore
from sagellm_obs.telemetry.exporting import CountingSpanExporter
from sagellm_obs.telemetry.ids import TraceIdOverride
from sagellm_obs.telemetry.pipeline import Pipeline
from sagellm_obs.telemetry.records import RequestRecord
from sagellm_obs.telemetry.sdk_private import engaged_fallbacks


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
    #: The ``prometheus_client`` registry behind ``/metrics`` (ours + vLLM's), when enabled.
    prometheus_registry: Any = None
    _prometheus_server: Any = None
    # Push readers only: flushing Prometheus' pull reader would queue a duplicate of every
    # metric for the next scrape.
    _push_readers: list[MetricReader] = field(default_factory=list)
    #: The provider's id generator; :meth:`trace_id_hint` sets its next trace id.
    _ids: TraceIdOverride | None = None
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

    def peak_mem_mb(self, *, sample: bool = False) -> int:
        """Peak RSS of the engine's processes seen so far, in MB; ``sample`` reads it now."""
        if sample:
            return self.pipeline.memory.sample()
        return self.pipeline.peak_mem_mb

    def annotate_run(self, **fields: Any) -> None:
        """Add fields to the run's manifest (nothing when the local store is off)."""
        if self.store is not None:
            self.store.update_manifest(**fields)

    @property
    def run_dir(self) -> Path | None:
        """The run folder of the local store, if the store is on."""
        return self.store.path if self.store else None

    def flush(self, timeout: float = 10.0) -> bool:
        """Build pending spans and metrics and push them through every exporter."""
        ok = self.pipeline.flush(timeout)
        ok = self.tracer_provider.force_flush(int(timeout * 1000)) and ok
        for reader in self._push_readers:
            ok = reader.force_flush(timeout * 1000) and ok
        return ok

    def stats(self) -> dict[str, int]:
        """Counters of the telemetry itself: recorded, dropped and failed records, export errors.

        ``sdk_fallbacks`` counts the SDK hooks that fell back to the SDK's slower public way in
        this process (:func:`sagellm_obs.telemetry.engaged_fallbacks` names them).
        """
        return {
            "requests_recorded": self.pipeline.requests_recorded,
            "steps_recorded": self.pipeline.steps_recorded,
            "records_dropped": self.pipeline.dropped,
            "record_failures": self.pipeline.failures,
            "otlp_spans_exported": sum(e.exported for e in self.otlp),
            "otlp_spans_failed": sum(e.failed for e in self.otlp),
            "sdk_fallbacks": len(engaged_fallbacks()),
        }

    def shutdown(self) -> None:
        """Flush and stop everything; safe to call twice."""
        if self._closed:
            return
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
