"""OpenTelemetry instruments built from :mod:`sagellm_obs.semconv`, and Views that set buckets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from sagellm_obs import semconv as sc


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
    token_usage: Any
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

    @classmethod
    def create(cls, meter: Meter) -> Instruments:
        """Create every instrument on ``meter``."""
        return cls(
            ttft=_make(meter, sc.M_TTFT),
            tpot=_make(meter, sc.M_TPOT),
            duration=_make(meter, sc.M_REQUEST_DURATION),
            token_usage=_make(meter, sc.M_TOKEN_USAGE),
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
