"""OpenTelemetry SDK exporters that write into a :class:`~sagellm_obs.store.run.RunStore`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sagellm_obs.store.otlp_json import encode_metrics, encode_spans
from sagellm_obs.store.run import RunStore

_log = logging.getLogger(__name__)


class StoreSpanExporter(SpanExporter):
    """Writes each exported batch of spans as one OTLP/JSON line of ``traces-*.jsonl``."""

    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._closed:
            return SpanExportResult.FAILURE
        try:
            self._store.write("traces", [encode_spans(spans)])
        except Exception:  # the store must never take the engine down
            _log.exception("sagellm-obs: writing %d spans to the local store failed", len(spans))
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._closed = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class StoreMetricExporter(MetricExporter):
    """Writes each metrics collection as one OTLP/JSON line of ``metrics-*.jsonl``.

    Cumulative temporality, as Prometheus and most backends expect; loaders take deltas.
    """

    def __init__(self, store: RunStore) -> None:
        super().__init__(preferred_temporality=dict.fromkeys(_ALL_INSTRUMENTS, _CUMULATIVE))
        self._store = store

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            if any(sm.metrics for rm in metrics_data.resource_metrics for sm in rm.scope_metrics):
                self._store.write("metrics", [encode_metrics(metrics_data)])
        except Exception:
            _log.exception("sagellm-obs: writing metrics to the local store failed")
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def _instrument_types() -> tuple[type, ...]:
    from opentelemetry.sdk.metrics import (
        Counter,
        Histogram,
        ObservableCounter,
        ObservableGauge,
        ObservableUpDownCounter,
        UpDownCounter,
        _Gauge,
    )

    return (
        Counter, Histogram, ObservableCounter, ObservableGauge, ObservableUpDownCounter,
        UpDownCounter, _Gauge,
    )  # fmt: skip


_ALL_INSTRUMENTS = _instrument_types()
_CUMULATIVE = AggregationTemporality.CUMULATIVE
