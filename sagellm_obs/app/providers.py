"""Where application-side spans and metrics go: explicit providers, sagellm_obs, or global OTel.

Every instrument in :mod:`sagellm_obs.app` resolves its tracer and meter *when it records*, not
when it is set up, in this order:

1. the ``tracer`` / ``tracer_provider`` / ``meter_provider`` (or ``telemetry``) passed explicitly;
2. the current sagellm_obs telemetry (:func:`sagellm_obs.telemetry.current`, set by
   ``configure()``), so re-configuring in a notebook redirects already-instrumented code;
3. the global OpenTelemetry providers (``opentelemetry.trace.get_tracer_provider()``; a no-op
   until an SDK provider is installed).

Content capture follows the same order: an explicit ``capture_content`` wins, else the current
telemetry's setting (``SAGELLM_OBS_CAPTURE_CONTENT``), else off.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace

from sagellm_obs import semconv as sc
from sagellm_obs.semconv import MetricSpec
from sagellm_obs.telemetry import Telemetry, current

_instruments: weakref.WeakKeyDictionary[Any, ClientInstruments] = weakref.WeakKeyDictionary()
_global_instruments: dict[int, ClientInstruments] = {}


@dataclass(frozen=True)
class Providers:
    """An explicit choice of providers; unset fields fall back as the module describes.

    Attributes:
        tracer: A tracer to use as is.
        tracer_provider: A provider to get the tracer from.
        meter_provider: A provider to get the meter from.
        telemetry: A sagellm_obs telemetry (its tracer and meter provider).
        capture_content: Put prompt/completion content on spans; None follows the telemetry.
    """

    tracer: trace.Tracer | None = None
    tracer_provider: trace.TracerProvider | None = None
    meter_provider: metrics.MeterProvider | None = None
    telemetry: Telemetry | None = None
    capture_content: bool | None = None

    def _telemetry(self) -> Telemetry | None:
        return self.telemetry if self.telemetry is not None else current()

    def get_tracer(self) -> trace.Tracer:
        """The tracer to record into now."""
        if self.tracer is not None:
            return self.tracer
        if self.tracer_provider is not None:
            return self.tracer_provider.get_tracer(sc.SCOPE_NAME)
        tel = self._telemetry()
        if tel is not None:
            return tel.tracer
        return trace.get_tracer(sc.SCOPE_NAME)

    def get_meter_provider(self) -> metrics.MeterProvider:
        """The meter provider to record into now."""
        if self.meter_provider is not None:
            return self.meter_provider
        tel = self._telemetry()
        if tel is not None:
            return tel.meter_provider
        return metrics.get_meter_provider()

    def instruments(self) -> ClientInstruments:
        """The GenAI client instruments of the current meter provider (made once per provider)."""
        provider = self.get_meter_provider()
        try:
            found = _instruments.get(provider)
        except TypeError:  # not weak-referenceable
            found = _global_instruments.get(id(provider))
        if found is None:
            found = ClientInstruments.create(provider.get_meter(sc.SCOPE_NAME))
            try:
                _instruments[provider] = found
            except TypeError:
                _global_instruments[id(provider)] = found
        return found

    def capture(self) -> bool:
        """Whether to record content now."""
        if self.capture_content is not None:
            return self.capture_content
        tel = self._telemetry()
        return bool(tel.capture_content) if tel is not None else False


@dataclass(frozen=True)
class ClientInstruments:
    """The GenAI client histograms (buckets given as advice, see :mod:`~sagellm_obs.semconv`)."""

    duration: metrics.Histogram
    time_to_first_chunk: metrics.Histogram
    time_per_output_chunk: metrics.Histogram
    token_usage: metrics.Histogram

    @classmethod
    def create(cls, meter: metrics.Meter) -> ClientInstruments:
        """Create the instruments on ``meter``."""

        def make(spec: MetricSpec) -> metrics.Histogram:
            return meter.create_histogram(
                spec.name,
                unit=spec.unit,
                description=spec.description,
                explicit_bucket_boundaries_advisory=list(spec.buckets or ()),
            )

        return cls(
            duration=make(sc.M_CLIENT_OPERATION_DURATION),
            time_to_first_chunk=make(sc.M_CLIENT_TIME_TO_FIRST_CHUNK),
            time_per_output_chunk=make(sc.M_CLIENT_TIME_PER_OUTPUT_CHUNK),
            token_usage=make(sc.M_CLIENT_TOKEN_USAGE),
        )
