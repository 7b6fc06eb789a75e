"""OpenTelemetry instruments built from :mod:`sagellm_obs.semconv`, and Views that set buckets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.trace import NonRecordingSpan, SpanContext

from sagellm_obs import semconv as sc
from sagellm_obs.telemetry.records import RequestRecord

_MAX_ATTRIBUTE_SETS = 4096


def views() -> list[View]:
    """One View per histogram, with the bucket boundaries declared in semconv."""
    return [
        View(
            instrument_name=spec.name,
            aggregation=ExplicitBucketHistogramAggregation(boundaries=list(spec.buckets)),
        )
        for spec in sc.METRICS
        if spec.kind == "histogram" and spec.buckets
    ]


def _make(meter: Meter, spec: sc.MetricSpec) -> Any:
    if spec.kind == "histogram":
        return meter.create_histogram(spec.name, unit=spec.unit, description=spec.description)
    if spec.kind == "counter":
        return meter.create_counter(spec.name, unit=spec.unit, description=spec.description)
    if spec.kind == "gauge":
        return meter.create_gauge(spec.name, unit=spec.unit, description=spec.description)
    return meter.create_up_down_counter(spec.name, unit=spec.unit, description=spec.description)


@dataclass
class Instruments:
    """The instruments the telemetry thread records into."""

    ttft: Any
    tpot: Any
    duration: Any
    token_usage: Any  # legacy gen_ai.server.token.usage, None in the latest mode
    input_tokens: Any  # sagellm.request.input_tokens, None in the legacy mode
    output_tokens: Any
    queue: Any
    prefill: Any
    decode: Any
    requests: Any
    kv_usage: Any
    running: Any
    waiting: Any
    prefix_queries: Any
    prefix_hits: Any
    prompt_tokens: Any
    generation_tokens: Any
    preemptions: Any
    dropped: Any
    # Attribute dicts per (operation, model, error type, finish reason, engine): built once,
    # shared by every measurement (the SDK copies what it keeps).
    _sets: dict[tuple[Any, ...], tuple[dict[str, Any], ...]] = field(
        default_factory=dict, repr=False
    )

    def record_request(self, r: RequestRecord, span: SpanContext | None) -> None:
        """A finished request's metric points through the SDK; ``span`` is its SERVER span.

        The slow way (~8 µs a point): the pipeline takes it only when the readers cannot take
        pre-aggregated points (see :mod:`sagellm_obs.telemetry.aggregate`).
        """
        context = trace.set_span_in_context(NonRecordingSpan(span)) if span is not None else None
        names = (r.operation, r.model, r.error_type or "", r.finish_reason, r.engine_id)
        cacheable = all(type(k) is str for k in names) and type(r.engine_idx) in (int, type(None))
        key = (*names, r.engine_idx)
        sets = self._sets.get(key) if cacheable else None
        if sets is None:
            sets = attribute_sets(r)
            if len(self._sets) >= _MAX_ATTRIBUTE_SETS:
                self._sets.clear()
            self._sets[key] = sets
        attrs, with_reason, tokens_in, tokens_out = sets
        self.requests.add(1, with_reason, context)
        self.duration.record(r.e2e, attrs, context)
        if r.error_type:
            return
        if r.first_token_ts:
            self.ttft.record(r.ttft, attrs, context)
            self.queue.record(r.queue, attrs, context)
            self.prefill.record(r.prefill, attrs, context)
        if r.output_tokens > 1:
            self.tpot.record(r.tpot, attrs, context)
            self.decode.record(r.decode, attrs, context)
        if self.token_usage is not None:
            self.token_usage.record(r.prompt_tokens, tokens_in, context)
            self.token_usage.record(r.output_tokens, tokens_out, context)
        if self.input_tokens is not None:
            self.input_tokens.record(r.prompt_tokens, attrs, context)
            self.output_tokens.record(r.output_tokens, attrs, context)

    @classmethod
    def create(cls, meter: Meter, semconv: str = sc.SEMCONV_LATEST) -> Instruments:
        """Create every instrument on ``meter``; ``semconv`` picks the GenAI names
        (:func:`~sagellm_obs.semconv.genai_semconv_mode`)."""
        latest, legacy = sc.emits_latest(semconv), sc.emits_legacy(semconv)
        return cls(
            ttft=_make(meter, sc.M_TTFT),
            tpot=_make(meter, sc.M_TPOT),
            duration=_make(meter, sc.M_REQUEST_DURATION),
            token_usage=_make(meter, sc.M_TOKEN_USAGE) if legacy else None,
            input_tokens=_make(meter, sc.M_REQUEST_INPUT_TOKENS) if latest else None,
            output_tokens=_make(meter, sc.M_REQUEST_OUTPUT_TOKENS) if latest else None,
            queue=_make(meter, sc.M_QUEUE),
            prefill=_make(meter, sc.M_PREFILL),
            decode=_make(meter, sc.M_DECODE),
            requests=_make(meter, sc.M_REQUESTS),
            kv_usage=_make(meter, sc.M_KV_USAGE),
            running=_make(meter, sc.M_RUNNING),
            waiting=_make(meter, sc.M_WAITING),
            prefix_queries=_make(meter, sc.M_PREFIX_QUERIES),
            prefix_hits=_make(meter, sc.M_PREFIX_HITS),
            prompt_tokens=_make(meter, sc.M_PROMPT_TOKENS),
            generation_tokens=_make(meter, sc.M_GENERATION_TOKENS),
            preemptions=_make(meter, sc.M_PREEMPTIONS),
            dropped=_make(meter, sc.M_TELEMETRY_DROPPED),
        )


def attribute_sets(r: RequestRecord) -> tuple[dict[str, Any], ...]:
    """A request's metric attributes: plain, with its finish reason, and the legacy token
    histogram's input and output sets. The engine id is on every set, so dashboards filter
    latency by engine as they filter the per-step metrics."""
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: r.operation,
        sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_NAME,
        sc.GEN_AI_REQUEST_MODEL: r.model,
        sc.SAGELLM_ENGINE_ID: r.engine_id,
    }
    if r.error_type:
        attrs[sc.ERROR_TYPE] = r.error_type
    if r.engine_idx is not None:
        attrs[sc.SAGELLM_ENGINE_IDX] = r.engine_idx
    return (
        attrs,
        {**attrs, sc.GEN_AI_RESPONSE_FINISH_REASONS: r.finish_reason},
        {**attrs, sc.GEN_AI_TOKEN_TYPE: "input"},
        {**attrs, sc.GEN_AI_TOKEN_TYPE: "output"},
    )
