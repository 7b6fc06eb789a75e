"""OTLP exporters chosen from arguments and the standard ``OTEL_EXPORTER_OTLP_*`` variables."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sagellm_obs.telemetry import sdk_private

_log = logging.getLogger(__name__)


class CountingSpanExporter(SpanExporter):
    """Wraps an exporter: counts exported and failed spans, logs failures at most every 30 s.

    The wrapped exporter runs in the batch processor's thread, so a slow or dead collector never
    blocks the engine; this only makes its failures visible (``Telemetry.stats()``).
    """

    def __init__(self, inner: SpanExporter, name: str = "otlp") -> None:
        self.inner = inner
        self.name = name
        self.exported = 0
        self.failed = 0
        self._last_log = 0.0

    def describe(self) -> dict[str, Any]:
        """A short description for the run manifest (no headers: they may hold secrets)."""
        endpoint = sdk_private.exporter_endpoint(self.inner)
        return {"exporter": type(self.inner).__name__, "endpoint": str(endpoint)}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # exporters should not raise, but a broken one must not matter
            result = SpanExportResult.FAILURE
            self._log_failure(len(spans), repr(exc))
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failed += len(spans)
            self._log_failure(len(spans), "export failed")
        return result

    def _log_failure(self, n: int, why: str) -> None:
        now = time.monotonic()
        if now - self._last_log > 30:
            self._last_log = now
            _log.warning(
                "sagellm-obs: %s dropped %d spans (%s); %d dropped so far. The local store still "
                "has them.",
                self.name,
                n,
                why,
                self.failed,
            )

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def otlp_exporters(
    endpoint: str | Literal[False] | None,
    protocol: str | None,
    headers: Mapping[str, str] | None,
) -> tuple[list[SpanExporter], list[MetricExporter]]:
    """The OTLP span and metric exporters to use, or none.

    With ``endpoint=None`` OTLP is on only where the environment names an endpoint; the SDK
    exporters then read every ``OTEL_EXPORTER_OTLP_*`` variable themselves.
    """
    if endpoint is False:
        return [], []
    traces_env = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    metrics_env = _env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint is None and not traces_env and not metrics_env:
        return [], []
    proto = (
        protocol
        or _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    kwargs: dict[str, Any] = {}
    if headers:
        kwargs["headers"] = dict(headers)
    spans: list[SpanExporter] = []
    metrics: list[MetricExporter] = []
    if proto == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetrics,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpans,
        )

        if endpoint:
            kwargs["endpoint"] = endpoint
            # http:// means plaintext; https:// and a bare host:port are left to the exporter,
            # which honours OTEL_EXPORTER_OTLP_INSECURE for them.
            if endpoint.startswith("http://"):
                kwargs["insecure"] = True
        if endpoint or traces_env:
            spans.append(GrpcSpans(**kwargs))
        if endpoint or metrics_env:
            metrics.append(GrpcMetrics(**kwargs))
    elif proto in ("http/protobuf", "http"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetrics,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpans,
        )

        base = endpoint.rstrip("/") if endpoint else None
        if base or traces_env:
            spans.append(HttpSpans(endpoint=f"{base}/v1/traces" if base else None, **kwargs))
        if base or metrics_env:
            metrics.append(HttpMetrics(endpoint=f"{base}/v1/metrics" if base else None, **kwargs))
    else:
        raise ValueError(f"unsupported OTLP protocol {proto!r}: use 'grpc' or 'http/protobuf'")
    return spans, metrics
