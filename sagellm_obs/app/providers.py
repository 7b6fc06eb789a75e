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

import functools
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
            tel = self._telemetry()
            mode = tel.genai_semconv if tel is not None else _env_mode()
            found = ClientInstruments.create(provider.get_meter(sc.SCOPE_NAME), mode)
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


@functools.cache
def _env_mode() -> str:
    """The GenAI naming mode of the environment, read once (no telemetry configured)."""
    return sc.genai_semconv_mode()


class _Fanout:
    """Records one measurement into each of its histograms (one per naming mode emitted)."""

    __slots__ = ("targets",)

    def __init__(self, targets: list[metrics.Histogram]) -> None:
        self.targets = targets

    def record(self, value: float, attributes: dict[str, Any]) -> None:
        for target in self.targets:
            target.record(value, attributes)


@dataclass(frozen=True)
class ClientInstruments:
    """The GenAI client instruments (buckets given as advice, see :mod:`~sagellm_obs.semconv`).

    ``duration``, ``time_to_first_chunk`` and ``time_per_output_chunk`` record into the current
    ``gen_ai.client.inference.*`` histograms and/or the legacy ``gen_ai.client.operation.*`` ones;
    :meth:`record_usage` into the current token histograms and counters and/or the legacy
    ``gen_ai.client.token.usage``.
    """

    duration: _Fanout
    time_to_first_chunk: _Fanout
    time_per_output_chunk: _Fanout
    legacy_token_usage: metrics.Histogram | None
    usage: dict[str, Any]  # MetricSpec name -> instrument (latest mode)
    mode: str = sc.SEMCONV_LATEST

    @classmethod
    def create(cls, meter: metrics.Meter, mode: str = sc.SEMCONV_LATEST) -> ClientInstruments:
        """Create the instruments of ``mode`` on ``meter``."""

        def make(spec: MetricSpec) -> Any:
            if spec.kind == "counter":
                return meter.create_counter(spec.name, unit=spec.unit, description=spec.description)
            return meter.create_histogram(
                spec.name,
                unit=spec.unit,
                description=spec.description,
                explicit_bucket_boundaries_advisory=list(spec.buckets or ()),
            )

        latest, legacy = sc.emits_latest(mode), sc.emits_legacy(mode)

        def pair(new: MetricSpec, old: MetricSpec) -> _Fanout:
            return _Fanout([make(s) for s, on in ((new, latest), (old, legacy)) if on])

        usage_specs = (
            sc.M_CLIENT_OPERATION_INPUT_TOKENS,
            sc.M_CLIENT_OPERATION_OUTPUT_TOKENS,
            sc.M_CLIENT_USAGE_INPUT_TOKENS,
            sc.M_CLIENT_USAGE_OUTPUT_TOKENS,
            sc.M_CLIENT_USAGE_CACHE_READ_INPUT_TOKENS,
            sc.M_CLIENT_USAGE_CACHE_WRITE_INPUT_TOKENS,
            sc.M_CLIENT_USAGE_REASONING_OUTPUT_TOKENS,
        )
        return cls(
            duration=pair(sc.M_CLIENT_INFERENCE_DURATION, sc.M_CLIENT_OPERATION_DURATION),
            time_to_first_chunk=pair(
                sc.M_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK, sc.M_CLIENT_TIME_TO_FIRST_CHUNK
            ),
            time_per_output_chunk=pair(
                sc.M_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK, sc.M_CLIENT_TIME_PER_OUTPUT_CHUNK
            ),
            legacy_token_usage=make(sc.M_CLIENT_TOKEN_USAGE) if legacy else None,
            usage={spec.name: make(spec) for spec in usage_specs} if latest else {},
            mode=mode,
        )

    def record_usage(
        self,
        attrs: dict[str, Any],
        *,
        input_tokens: int | None,
        output_tokens: int | None,
        cached: int | None = None,
        cache_write: int | None = None,
        reasoning: int | None = None,
        modality: str = sc.TOKEN_MODALITY_UNKNOWN,
        failed: bool = False,
    ) -> None:
        """One operation's token usage. Latest names (gen-ai-token-metrics.md): the per-operation
        histograms for successful operations only; the counters for every operation, a failed one
        without usage adding 0 under the ``unknown`` modality. Legacy: the token.usage histogram."""
        if self.legacy_token_usage is not None:
            for kind, count in (
                (sc.TOKEN_TYPE_INPUT, input_tokens),
                (sc.TOKEN_TYPE_OUTPUT, output_tokens),
            ):
                if count is not None:
                    self.legacy_token_usage.record(count, {**attrs, sc.GEN_AI_TOKEN_TYPE: kind})
        if not self.usage:
            return
        if not failed:
            for spec, count in (
                (sc.M_CLIENT_OPERATION_INPUT_TOKENS, input_tokens),
                (sc.M_CLIENT_OPERATION_OUTPUT_TOKENS, output_tokens),
            ):
                if count is not None:
                    self.usage[spec.name].record(count, attrs)
        no_usage = input_tokens is None and output_tokens is None
        by_modality = {
            **attrs,
            sc.GEN_AI_TOKEN_MODALITY: sc.TOKEN_MODALITY_UNKNOWN if no_usage else modality,
        }
        for spec, count in (
            (sc.M_CLIENT_USAGE_INPUT_TOKENS, input_tokens if input_tokens is not None else 0),
            (sc.M_CLIENT_USAGE_OUTPUT_TOKENS, output_tokens if output_tokens is not None else 0),
            (sc.M_CLIENT_USAGE_CACHE_READ_INPUT_TOKENS, cached),
            (sc.M_CLIENT_USAGE_CACHE_WRITE_INPUT_TOKENS, cache_write),
            (sc.M_CLIENT_USAGE_REASONING_OUTPUT_TOKENS, reasoning),
        ):
            if count is not None:
                self.usage[spec.name].add(count, by_modality)
