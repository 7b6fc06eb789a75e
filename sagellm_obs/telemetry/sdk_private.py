"""Every use of the OpenTelemetry SDK's private attributes, each with its fallback.

Two fast paths lean on SDK internals: the direct spans (:mod:`~sagellm_obs.telemetry.direct_spans`,
:mod:`~sagellm_obs.telemetry.trace_sampling`: ~6x cheaper than ``Tracer.start_span``) and the
pre-aggregated request metrics (:mod:`~sagellm_obs.telemetry.aggregate`: ~25x cheaper than the
SDK's instruments). Nothing else of ours touches a private attribute of the SDK; each hook below
reads (or, for the reader's collect callback, replaces) one, and when the SDK no longer has it
returns the value that sends the caller back to the SDK's public way: correct, only slower.

A fallback that engages is logged once and listed by :func:`engaged_fallbacks`, so an SDK upgrade
cannot slow us down silently: ``tests/telemetry/test_telemetry_sdk_private.py`` fails when any
engages with the installed SDK, and ``make sdk-check`` runs it against the newest SDK.

Hooks (private attribute -> fallback):

* ``span_processors``: ``TracerProvider._active_span_processor._span_processors`` -> Tracer
* ``instrumentation_scope``: ``Tracer._instrumentation_scope`` -> Tracer
* ``tracer_enabled``: ``Tracer._is_enabled()`` -> Tracer
* ``tracer_metrics_off``: ``Tracer._tracer_metrics``, module ``sdk.trace._tracer_metrics`` -> Tracer
* ``span_limits``: ``Tracer._span_limits`` -> Tracer
* ``parent_based_parts``: ``ParentBased._root`` and its four ``_*_parent_*`` delegates -> Tracer
* ``reader_temporality``: ``MetricReader._instrument_class_temporality`` -> SDK metrics
* ``reader_cardinality``: ``MetricReader._instrument_class_cardinality_limit`` -> SDK metrics
* ``wrap_reader_collect``: ``MetricReader._collect`` (read, then replaced) -> SDK metrics
* ``exporter_endpoint``: ``OTLP*Exporter._endpoint`` -> no endpoint in the manifest

"Tracer": the telemetry thread builds request spans through ``Tracer.start_span``. "SDK metrics":
finished requests are recorded through the SDK's instruments. "None": the run manifest names no
endpoint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics.export import MetricReader, MetricsData
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

try:  # the SDK's own span metrics (OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED); a private module
    from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
except ImportError:  # pragma: no cover - another SDK layout: tracer_metrics_off() falls back
    NoOpTracerMetrics = None  # type: ignore[assignment,misc]

_log = logging.getLogger(__name__)

#: Every hook of this module (the names :func:`engaged_fallbacks` reports).
HOOKS = (
    "span_processors",
    "instrumentation_scope",
    "tracer_enabled",
    "tracer_metrics_off",
    "span_limits",
    "parent_based_parts",
    "reader_temporality",
    "reader_cardinality",
    "wrap_reader_collect",
    "exporter_endpoint",
)
_PARENT_DELEGATES = (
    "_remote_parent_sampled",
    "_remote_parent_not_sampled",
    "_local_parent_sampled",
    "_local_parent_not_sampled",
)
_engaged: dict[str, str] = {}
_lock = threading.Lock()
_MISSING = object()

Collect = Callable[..., "MetricsData | None"]


def engaged_fallbacks() -> dict[str, str]:
    """The hooks whose fallback engaged in this process, with what was missing."""
    with _lock:
        return dict(_engaged)


def _fallback(hook: str, what: str) -> None:
    with _lock:
        first = hook not in _engaged
        _engaged.setdefault(hook, what)
    if first:
        _log.info(
            "sagellm-obs: this OpenTelemetry SDK has no %s; %s takes the SDK's public way "
            "(slower, same result)",
            what,
            hook,
        )


# --- tracer provider and tracer (direct spans) ---------------------------------------------------
def span_processors(provider: Any) -> tuple[SpanProcessor, ...] | None:
    """The provider's span processors, in order; None: unknown (take the Tracer).

    The SDK replaces the tuple on ``add_span_processor``, so its identity tells a change.
    """
    active = getattr(provider, "_active_span_processor", None)
    procs = getattr(active, "_span_processors", None)
    if not isinstance(procs, tuple):
        _fallback("span_processors", "TracerProvider._active_span_processor._span_processors")
        return None
    return procs


def instrumentation_scope(tracer: Any) -> InstrumentationScope | None:
    """The tracer's instrumentation scope; None: unknown (take the Tracer)."""
    scope = getattr(tracer, "_instrumentation_scope", None)
    if not isinstance(scope, InstrumentationScope):
        _fallback("instrumentation_scope", "Tracer._instrumentation_scope")
        return None
    return scope


def tracer_enabled(tracer: Any) -> bool:
    """Whether the SDK tracer is enabled (False also when the SDK cannot tell us)."""
    enabled = getattr(tracer, "_is_enabled", None)
    if not callable(enabled):
        _fallback("tracer_enabled", "Tracer._is_enabled()")
        return False
    return bool(enabled())


def tracer_metrics_off(tracer: Any) -> bool:
    """Whether the SDK's own span metrics are off for this tracer (they count started spans)."""
    metrics = getattr(tracer, "_tracer_metrics", _MISSING)
    if NoOpTracerMetrics is None or metrics is _MISSING:
        _fallback("tracer_metrics_off", "Tracer._tracer_metrics (sdk.trace._tracer_metrics)")
        return False
    return isinstance(metrics, NoOpTracerMetrics)


def span_limits(tracer: Any) -> SpanLimits | None:
    """The tracer's span limits; None: unknown (take the Tracer)."""
    limits = getattr(tracer, "_span_limits", None)
    if not isinstance(limits, SpanLimits):
        _fallback("span_limits", "Tracer._span_limits")
        return None
    return limits


# --- sampling ------------------------------------------------------------------------------------
def parent_based_parts(
    sampler: ParentBased,
) -> tuple[Sampler, Sampler, Sampler, Sampler, Sampler] | None:
    """``(root, remote sampled, remote not sampled, local sampled, local not sampled)``.

    None: the SDK's ``ParentBased`` keeps them elsewhere (take the Tracer).
    """
    parts = [getattr(sampler, name, None) for name in ("_root", *_PARENT_DELEGATES)]
    if not all(isinstance(p, Sampler) for p in parts):
        _fallback("parent_based_parts", "ParentBased._root and its parent delegates")
        return None
    root, rs, rns, ls, lns = parts
    return root, rs, rns, ls, lns  # type: ignore[return-value]


# --- metric readers (pre-aggregated request metrics) ---------------------------------------------
def reader_temporality(reader: MetricReader) -> dict[type, Any] | None:
    """The reader's temporality per instrument class; None: unknown (the SDK's instruments)."""
    table = getattr(reader, "_instrument_class_temporality", None)
    if not isinstance(table, dict):
        _fallback("reader_temporality", "MetricReader._instrument_class_temporality")
        return None
    return table


def reader_cardinality(reader: MetricReader) -> dict[type, Any] | None:
    """The reader's own cardinality limits per instrument class ({}: none; None: unknown)."""
    limits = getattr(reader, "_instrument_class_cardinality_limit", _MISSING)
    if limits is _MISSING or not isinstance(limits, dict | None):
        _fallback("reader_cardinality", "MetricReader._instrument_class_cardinality_limit")
        return None
    return limits or {}


def reader_collect(reader: MetricReader) -> Collect | None:
    """The collect callback the ``MeterProvider`` installed; None: unknown."""
    collect = getattr(reader, "_collect", None)
    if not callable(collect):
        _fallback("wrap_reader_collect", "MetricReader._collect")
        return None
    return collect  # type: ignore[no-any-return]


def wrap_reader_collect(reader: MetricReader, wrapped: Collect) -> None:
    """Replace the reader's collect callback (from :func:`reader_collect`) with ``wrapped``.

    ``wrapped(reader, timeout_millis=...)`` is called as the SDK calls its own callback.
    """
    # The SDK's annotation of the attribute is narrower than its use.
    reader._collect = wrapped  # type: ignore[assignment]


# --- exporters -----------------------------------------------------------------------------------
def exporter_endpoint(exporter: Any) -> str | None:
    """The endpoint an OTLP exporter sends to (for the run manifest); None: unknown."""
    endpoint = getattr(exporter, "_endpoint", None)
    if endpoint is None:
        _fallback("exporter_endpoint", f"{type(exporter).__name__}._endpoint")
        return None
    return str(endpoint)
