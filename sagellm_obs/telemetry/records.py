"""Compact records the engine hands to telemetry: plain data, no OpenTelemetry objects.

The engine's path only fills one of these per finished request (and one dict per engine step);
building spans, metric points and store lines happens later in the telemetry thread.

Clocks: ``arrival_time`` is the frontend's wall clock (``time.time()``, epoch seconds);
``queued_ts``/``scheduled_ts``/``first_token_ts``/``last_token_ts`` are vLLM EngineCore's monotonic
clock (``time.monotonic()``, seconds); converting them to epoch happens once, through a
:class:`~sagellm_obs.protocol.timing.ClockAnchor`. Durations are seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestRecord:
    """Everything telemetry needs about one finished request."""

    request_id: str
    trace_id: str  # the protocol's free-form trace id, as given
    engine_id: str
    model: str
    operation: str
    # vLLM's engine_idx (data-parallel rank) that ran the request; None when unknown (rejected).
    engine_idx: int | None = None
    # W3C parent (from traceparent); 0 when the request starts a trace.
    otel_trace_id: int = 0
    parent_span_id: int = 0
    parent_sampled: bool = True
    tracestate: str | None = None
    # Our SERVER span's id when it had to be known at arrival (vLLM's tracing parents its
    # llm_request span on it); 0: drawn when the span is built.
    span_id: int = 0
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    # Timing (see the module docstring for the clocks).
    arrival_time: float = 0.0
    queued_ts: float = 0.0
    scheduled_ts: float = 0.0
    first_token_ts: float = 0.0
    last_token_ts: float = 0.0
    ttft: float = 0.0
    e2e: float = 0.0
    queue: float = 0.0
    prefill: float = 0.0
    decode: float = 0.0
    inference: float = 0.0
    tpot: float = 0.0
    # Usage.
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    preemptions: int = 0
    kv_tokens: int = 0
    kv_bytes: int = 0
    finish_reason: str = "stop"
    error_type: str | None = None
    error_code: str | None = None
    cancelled: bool = False
    clock_issues: list[str] = field(default_factory=list)
    # Token ids of the prompt, only used to hash prefix blocks (never exported as such).
    prompt_token_ids: Sequence[int] | None = None
    # Opt-in content (None unless capture_content is on).
    input_messages: str | None = None
    output_messages: str | None = None
