"""Protocol <-> vLLM conversions, and protocol Metrics/Timestamps from one request's numbers.

One clock story (see docs/architecture.md): vLLM's ``arrival_time`` and ``first_token_latency``
are frontend wall-clock; its ``*_ts`` are EngineCore monotonic and are converted to epoch once,
through the telemetry's :class:`ClockAnchor`. Protocol ``Timestamps`` are epoch seconds:

- ``queued_at``    = arrival at the engine frontend (wall clock)
- ``scheduled_at`` = first scheduling (EngineCore monotonic, converted)
- ``executed_at``  = first token as the frontend saw it = arrival + TTFT
- ``completed_at`` = final output = arrival + E2E

so ``(executed_at - queued_at)`` is exactly ``Metrics.ttft_ms``, which (like vLLM's TTFT histogram
and the GenAI ``gen_ai.server.time_to_first_token``) includes queueing. The protocol docstring's
schedule-based TTFT is ``executed_at - scheduled_at``.
"""

from __future__ import annotations

from typing import Any

from sagellm_obs.protocol import (
    DecodingStrategy,
    Error,
    ErrorCode,
    FinishReason,
    Metrics,
    ProtocolValidationError,
    Request,
    Timestamps,
)
from sagellm_obs.protocol.timing import ClockAnchor, check_timestamps
from sagellm_obs.telemetry.records import RequestRecord

# vLLM finish reasons -> protocol FinishReason (stop | length | error)
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "abort": "error",
    "error": "error",
}


def protocol_finish_reason(vllm_reason: str | None) -> FinishReason:
    """Map vLLM's finish reason to the protocol's three values.

    The protocol has no ``abort``: an aborted request ends as ``error`` (with
    :func:`aborted_error`), never as a normal ``stop``.
    """
    return _FINISH.get(vllm_reason or "stop", "stop")


def aborted_error() -> Error:
    """The protocol error of a request vLLM aborted before it finished."""
    return Error(
        code=ErrorCode.UNAVAILABLE,
        message="aborted: the request was aborted before it finished (vLLM finish_reason 'abort')",
        retryable=True,
    )


def invalid(field: str, message: str) -> ProtocolValidationError:
    """A validation error for one field, with ``ErrorCode.INVALID_ARGUMENT``."""
    return ProtocolValidationError("Request", [{"field": field, "message": message}])


def sampling_kwargs(request: Request) -> dict[str, Any]:
    """vLLM ``SamplingParams`` keyword arguments for a protocol request.

    ``Request.sampling_params`` wins over ``temperature``/``top_p`` (protocol rule).
    ``metadata["ignore_eos"]`` (our extension) gives fixed-length outputs for benchmarks;
    ``metadata["structured_output"]`` (our extension) is a vLLM structured-output constraint such
    as ``{"json": schema}`` (the server uses it to force tool calls).
    """
    kw: dict[str, Any] = {"max_tokens": request.max_tokens}
    sp = request.sampling_params
    if sp is not None:
        if sp.strategy in (DecodingStrategy.BEAM_SEARCH, DecodingStrategy.CONTRASTIVE):
            raise invalid("sampling_params.strategy", f"{sp.strategy.value} is not supported")
        greedy = sp.strategy == DecodingStrategy.GREEDY
        kw["temperature"] = 0.0 if greedy else sp.temperature
        kw["top_p"] = sp.top_p
        if sp.top_k > 0:
            kw["top_k"] = sp.top_k
        kw["repetition_penalty"] = sp.repetition_penalty
        kw["presence_penalty"] = sp.presence_penalty
        kw["frequency_penalty"] = sp.frequency_penalty
        kw["skip_special_tokens"] = sp.skip_special_tokens
        if sp.seed is not None:
            kw["seed"] = sp.seed
        if sp.stop_sequences:
            kw["stop"] = list(sp.stop_sequences)
    else:
        if request.temperature is not None:
            kw["temperature"] = request.temperature
        if request.top_p is not None:
            kw["top_p"] = request.top_p
    meta = request.metadata or {}
    if meta.get("ignore_eos"):
        kw["ignore_eos"] = True
    structured = meta.get("structured_output")
    if structured:
        from vllm.sampling_params import StructuredOutputsParams

        try:
            kw["structured_outputs"] = StructuredOutputsParams(**structured)
        except Exception as exc:  # TypeError, or VLLMValidationError (not a ValueError)
            raise invalid("metadata.structured_output", str(exc)) from exc
    return kw


def build_metrics(
    record: RequestRecord,
    anchor: ClockAnchor,
    *,
    peak_mem_mb: int,
    itl_ms: list[float] | None,
    component_trace: list[str],
) -> Metrics:
    """Protocol ``Metrics`` (with ``Timestamps``) from the same numbers the span carries."""
    r = record
    arrival = r.arrival_time
    ts = Timestamps(
        queued_at=arrival,
        scheduled_at=anchor.to_epoch(r.scheduled_ts) if r.scheduled_ts else arrival,
        executed_at=arrival + r.ttft,
        completed_at=arrival + r.e2e,
    )
    issues = check_timestamps(ts)
    if r.scheduled_ts and r.queued_ts and r.scheduled_ts < r.queued_ts:
        issues.append("engine scheduled_ts < queued_ts")
    if r.last_token_ts and r.first_token_ts and r.last_token_ts < r.first_token_ts:
        issues.append("engine last_token_ts < first_token_ts")
    r.clock_issues.extend(issues)
    tpot_ms = r.tpot * 1000.0
    tbt_ms = sum(itl_ms) / len(itl_ms) if itl_ms else tpot_ms
    return Metrics(
        ttft_ms=max(r.ttft, 0.0) * 1000.0,
        tbt_ms=max(tbt_ms, 0.0),
        tpot_ms=max(tpot_ms, 0.0),
        throughput_tps=(r.output_tokens / r.e2e) if r.e2e > 0 else 0.0,
        peak_mem_mb=peak_mem_mb,
        error_rate=1.0 if r.error_type or r.cancelled else 0.0,  # an abort ends as an error
        kv_used_tokens=r.kv_tokens,
        kv_used_bytes=r.kv_bytes,
        prefix_hit_rate=(r.cached_tokens / r.prompt_tokens) if r.prompt_tokens else 0.0,
        prefill_ms=max(r.prefill, 0.0) * 1000.0,
        decode_ms=max(r.decode, 0.0) * 1000.0,
        itl_list=itl_ms or [],
        timestamps=ts,
        component_trace=component_trace,
    )


def fill_timing(record: RequestRecord, stats: Any, finished: Any, now_wall: float) -> None:
    """Copy vLLM's per-request timing into the record.

    ``stats`` is vLLM's ``RequestStateStats``; ``finished`` its ``FinishedRequestStats`` when the
    stat logger saw it (then E2E is vLLM's own), else E2E is measured here at ``now_wall``.
    """
    r = record
    if stats is not None:
        r.arrival_time = float(stats.arrival_time) or r.arrival_time
        r.queued_ts = float(stats.queued_ts)
        r.scheduled_ts = float(stats.scheduled_ts)
        r.first_token_ts = float(stats.first_token_ts)
        r.last_token_ts = float(stats.last_token_ts)
        r.ttft = float(stats.first_token_latency)
        r.preemptions = int(stats.num_preemptions)
        n = int(stats.num_generation_tokens)
        if r.scheduled_ts and r.queued_ts:
            r.queue = r.scheduled_ts - r.queued_ts
        if r.first_token_ts and r.scheduled_ts:
            r.prefill = r.first_token_ts - r.scheduled_ts
            r.decode = r.last_token_ts - r.first_token_ts
            r.inference = r.last_token_ts - r.scheduled_ts
        r.tpot = r.decode / (n - 1) if n > 1 else 0.0
    if finished is not None:
        r.e2e = float(finished.e2e_latency)
    else:
        r.e2e = max(now_wall - r.arrival_time, 0.0)
