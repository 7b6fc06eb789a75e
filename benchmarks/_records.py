"""Consistent synthetic ``RequestRecord`` s (after ``tests/telemetry/conftest.py::make_record``)."""

from __future__ import annotations

from typing import Any

from sagellm_obs import semconv as sc
from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.protocol.tracecontext import otel_trace_id
from sagellm_obs.telemetry.records import RequestRecord


def make_record(
    anchor: ClockAnchor,
    i: int,
    *,
    tag: str = "r",
    prompt_tokens: int = 24,
    output_tokens: int = 64,
    **overrides: Any,
) -> RequestRecord:
    """A finished request like the engine benchmark's (short prompt, 64 output tokens).

    Engine-monotonic stamps agree with ``anchor``: arrival, 1 ms to the engine queue, a few ms
    queued, prefill, decode, 1 ms to the final output. Values vary with ``i`` so encoded lines
    are not all alike. The W3C trace id is derived from the protocol trace id, as the engine does.
    """
    queue = 0.001 + (i % 7) * 0.0005
    prefill = 0.010 + (i % 5) * 0.001
    decode = 0.400 + (i % 11) * 0.01
    arrival_mono = anchor.mono_s - 30.0 + i * 0.02
    queued = arrival_mono + 0.001
    scheduled = queued + queue
    first = scheduled + prefill
    last = first + decode
    trace_id = f"{tag}-trace-{i}"
    fields: dict[str, Any] = {
        "request_id": f"{tag}-{i}",
        "trace_id": trace_id,
        "engine_id": "vllm-bench",
        "model": "tiny-llama",
        "operation": sc.OP_TEXT_COMPLETION,
        "otel_trace_id": int(otel_trace_id(trace_id), 16),
        "stream": True,
        "max_tokens": output_tokens,
        "temperature": 0.8,
        "top_p": 0.95,
        "arrival_time": anchor.to_epoch(arrival_mono),
        "queued_ts": queued,
        "scheduled_ts": scheduled,
        "first_token_ts": first,
        "last_token_ts": last,
        "ttft": first - arrival_mono,
        "e2e": last - arrival_mono + 0.001,
        "queue": queue,
        "prefill": prefill,
        "decode": decode,
        "inference": last - scheduled,
        "tpot": decode / (output_tokens - 1),
        "prompt_tokens": prompt_tokens,
        "output_tokens": output_tokens,
        "cached_tokens": 0,
        "kv_tokens": prompt_tokens + output_tokens - 1,
        "kv_bytes": (prompt_tokens + output_tokens - 1) * 4096,
        "finish_reason": "length",
        "prompt_token_ids": list(range(i % 100, i % 100 + prompt_tokens)),
    }
    fields.update(overrides)
    return RequestRecord(**fields)
