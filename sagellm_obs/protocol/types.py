"""Core wire types of the sageLLM protocol v0.1: requests, responses, metrics and stream events.

Field names, types, defaults and numeric constraints match the published ``isagellm-protocol``
0.5.4.16, so payloads written by either side parse on the other. Conventions:

* Default pydantic config: unknown fields are silently dropped, nothing is frozen or strict.
* ``model_dump_json()`` writes every field, defaults included ("every field present, 0 when no
  data").
* Durations are milliseconds (``*_ms``), throughput tokens/s (``*_tps``), memory MB
  (``peak_mem_mb``, an ``int``) or bytes (``*_bytes``), rates fractions in [0, 1], and the
  ``Timestamps`` fields Unix epoch seconds as ``float`` (wall clock).
* There are no cross-field validators: order of timestamps and "prompt or messages" are checked by
  consumers (see :func:`sagellm_obs.protocol.timing.check_timestamps`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from sagellm_obs.protocol.errors import Error, validate
from sagellm_obs.protocol.openai_types import ChatMessage
from sagellm_obs.protocol.sampling import SamplingParams

__all__ = [
    "STREAM_EVENT_ADAPTER",
    "DeltaEvent",
    "EndEvent",
    "FinishReason",
    "Metrics",
    "Request",
    "Response",
    "StartEvent",
    "StreamEvent",
    "StreamEventDelta",
    "StreamEventEnd",
    "StreamEventStart",
    "Timestamps",
    "parse_stream_event",
]

FinishReason = Literal["stop", "length", "error"]
"""Why generation ended (internal protocol; the OpenAI types also allow others)."""


class Timestamps(BaseModel):
    """The four observation timestamps of a request (protocol §7).

    All values are Unix epoch seconds as ``float`` from the wall clock (``time.time()``), never
    monotonic readings and never nanoseconds. Any floats are accepted: order and sign are not
    checked here (use :func:`~sagellm_obs.protocol.timing.check_timestamps`).

    The protocol defines ``ttft_ms = (executed_at - scheduled_at) * 1000`` and
    ``total_time_ms = (completed_at - queued_at) * 1000``; see
    :mod:`sagellm_obs.protocol.timing` for both TTFT conventions.

    Attributes:
        queued_at: The request entered the queue.
        scheduled_at: Compute and resources were allocated.
        executed_at: The first output token was produced.
        completed_at: Generation finished.
    """

    queued_at: float
    scheduled_at: float
    executed_at: float
    completed_at: float


class Metrics(BaseModel):
    """Per-request performance metrics (protocol §5); every field is present, 0 when no data.

    Attributes:
        ttft_ms: Time to first token, ms.
        tbt_ms: Time between tokens, ms (0 = no data).
        tpot_ms: Time per output token, ms (0 = no data).
        throughput_tps: Output tokens per second.
        peak_mem_mb: Peak memory, MB (an integer).
        error_rate: Error rate in [0, 1].
        kv_used_tokens: KV-cache tokens used.
        kv_used_bytes: KV-cache bytes used.
        prefix_hit_rate: Prefix-cache hit rate in [0, 1].
        evict_count: Number of KV evictions.
        evict_ms: Time spent evicting, ms.
        spec_accept_rate: Speculative-decoding acceptance rate in [0, 1].
        prefill_ms: Prefill phase time, ms (0 when prefill/decode are not separated).
        decode_ms: Decode phase time, ms.
        kv_transfer_count: Number of KV migrations.
        kv_transfer_bytes: Bytes of KV migrated.
        kv_transfer_ms: Total KV transfer time, ms.
        comm_overhead_ms: Communication overhead, ms.
        allreduce_count: Number of AllReduce calls.
        allgather_count: Number of AllGather calls.
        itl_list: Inter-token latencies, ms (in streaming mode, the interval of each delta).
        timestamps: The four observation timestamps, if known.
        component_trace: Components the request went through, e.g.
            ``["sagellm-gateway", "sagellm-core", "sagellm-backend:HFCudaEngine"]``.
    """

    ttft_ms: float = Field(ge=0)
    tbt_ms: float = Field(default=0.0, ge=0)
    tpot_ms: float = Field(default=0.0, ge=0)
    throughput_tps: float = Field(ge=0)
    peak_mem_mb: int = Field(ge=0)
    error_rate: float = Field(ge=0, le=1)
    kv_used_tokens: int = Field(default=0, ge=0)
    kv_used_bytes: int = Field(default=0, ge=0)
    prefix_hit_rate: float = Field(default=0.0, ge=0, le=1)
    evict_count: int = Field(default=0, ge=0)
    evict_ms: float = Field(default=0.0, ge=0)
    spec_accept_rate: float = Field(default=0.0, ge=0, le=1)
    prefill_ms: float = Field(default=0.0, ge=0)
    decode_ms: float = Field(default=0.0, ge=0)
    kv_transfer_count: int = Field(default=0, ge=0)
    kv_transfer_bytes: int = Field(default=0, ge=0)
    kv_transfer_ms: float = Field(default=0.0, ge=0)
    comm_overhead_ms: float = Field(default=0.0, ge=0)
    allreduce_count: int = Field(default=0, ge=0)
    allgather_count: int = Field(default=0, ge=0)
    itl_list: list[float] = Field(default_factory=list)
    timestamps: Timestamps | None = None
    component_trace: list[str] | None = None


class Request(BaseModel):
    """An inference request (protocol §3.1).

    Give either ``prompt`` or ``messages`` (``prompt`` wins if both); this is enforced by the
    engine, not here. ``trace_id`` is an opaque string (not necessarily W3C hex); W3C trace context
    travels in ``metadata["traceparent"]`` (see :mod:`sagellm_obs.protocol.tracecontext`).

    Attributes:
        request_id: Request identifier.
        trace_id: Trace identifier, free-form.
        model: Model name.
        prompt: Prompt text.
        messages: Chat messages; the engine applies the chat template.
        max_tokens: Maximum number of output tokens (> 0).
        stream: Whether to stream the output.
        sampling_params: Decoding parameters; win over ``temperature``/``top_p`` when given.
        temperature: Sampling temperature in [0, 2].
        top_p: Nucleus-sampling mass in (0, 1].
        kv_budget_tokens: KV-cache budget in tokens (> 0).
        metadata: Pass-through bag for engines and adapters.
        phase: Prefill/decode phase for disaggregated serving.
        rank: Distributed rank (>= 0).
        world_size: Distributed world size (> 0).
        group_id: Communication group.
        tp_rank: Tensor-parallel rank (>= 0).
        pp_rank: Pipeline-parallel rank (>= 0).
        tp_size: Tensor-parallel size (> 0).
        pp_size: Pipeline-parallel size (> 0).
    """

    request_id: str
    trace_id: str
    model: str = ""
    prompt: str = ""
    messages: list[ChatMessage] | None = None
    max_tokens: int = Field(gt=0)
    stream: bool = False
    sampling_params: SamplingParams | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    kv_budget_tokens: int | None = Field(default=None, gt=0)
    metadata: dict[str, Any] | None = None
    phase: Literal["prefill", "decode"] | None = None
    rank: int | None = Field(default=None, ge=0)
    world_size: int | None = Field(default=None, gt=0)
    group_id: str | None = None
    tp_rank: int | None = Field(default=None, ge=0)
    pp_rank: int | None = Field(default=None, ge=0)
    tp_size: int | None = Field(default=None, gt=0)
    pp_size: int | None = Field(default=None, gt=0)


class Response(BaseModel):
    """A non-streamed inference result (protocol §3.2).

    Attributes:
        request_id: Request identifier.
        trace_id: Trace identifier.
        output_text: Generated text.
        output_tokens: Generated token ids.
        prompt_tokens: Number of prompt tokens, if known.
        finish_reason: Why generation ended.
        metrics: Performance metrics.
        error: Error, when ``finish_reason == "error"``.
    """

    request_id: str
    trace_id: str
    output_text: str
    output_tokens: list[int]
    prompt_tokens: int | None = None
    finish_reason: FinishReason
    metrics: Metrics
    error: Error | None = None


class StreamEventStart(BaseModel):
    """First event of a stream.

    Attributes:
        event: Discriminator, always ``"start"``.
        request_id: Request identifier.
        trace_id: Trace identifier.
        engine_id: Engine instance identifier (observability).
        prompt_tokens: Number of prompt tokens, if known.
    """

    event: Literal["start"] = "start"
    request_id: str
    trace_id: str
    engine_id: str
    prompt_tokens: int | None = None


class StreamEventDelta(BaseModel):
    """Incremental output (``content``/``content_tokens``; 0.4 used ``chunk``/``chunk_tokens``).

    Attributes:
        event: Discriminator, always ``"delta"``.
        request_id: Request identifier.
        trace_id: Trace identifier.
        engine_id: Engine instance identifier.
        content: Incremental text.
        content_tokens: Incremental token ids.
    """

    event: Literal["delta"] = "delta"
    request_id: str
    trace_id: str
    engine_id: str
    content: str
    content_tokens: list[int]


class StreamEventEnd(BaseModel):
    """Last event of a stream; carries the **full** output and the metrics.

    Attributes:
        event: Discriminator, always ``"end"``.
        request_id: Request identifier.
        trace_id: Trace identifier.
        engine_id: Engine instance identifier.
        prompt_tokens: Number of prompt tokens, if known.
        content: The full generated text.
        output_tokens: All generated token ids.
        finish_reason: Why generation ended.
        metrics: Performance metrics.
        error: Error, when ``finish_reason == "error"``.
    """

    event: Literal["end"] = "end"
    request_id: str
    trace_id: str
    engine_id: str
    prompt_tokens: int | None = None
    content: str
    output_tokens: list[int]
    finish_reason: FinishReason
    metrics: Metrics
    error: Error | None = None


StreamEvent = Annotated[
    StreamEventStart | StreamEventDelta | StreamEventEnd, Field(discriminator="event")
]
"""Any stream event, discriminated by its ``event`` field (``"start"``, ``"delta"``, ``"end"``)."""

StartEvent = StreamEventStart
DeltaEvent = StreamEventDelta
EndEvent = StreamEventEnd

STREAM_EVENT_ADAPTER: TypeAdapter[StreamEventStart | StreamEventDelta | StreamEventEnd] = (
    TypeAdapter(StreamEvent)
)
"""``TypeAdapter`` for :data:`StreamEvent` (validation and JSON schema)."""


def parse_stream_event(
    data: Any,
) -> StreamEventStart | StreamEventDelta | StreamEventEnd:
    """Parses one stream event from a dict or a JSON document.

    Args:
        data: A ``dict`` or JSON ``str``/``bytes``.

    Returns:
        The event, as the class its ``event`` field selects.

    Raises:
        ProtocolValidationError: Unknown ``event`` or invalid fields.
    """
    result: StreamEventStart | StreamEventDelta | StreamEventEnd = validate(
        STREAM_EVENT_ADAPTER, data, name="StreamEvent"
    )
    return result
