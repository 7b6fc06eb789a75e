"""The telemetry record of one protocol request: what the request says, and its trace context.

The engine fills the rest (vLLM's timings, token counts) when the request finishes and hands the
record to the telemetry port.
"""

from __future__ import annotations

import json
import time

from opentelemetry import trace

from sagellm_obs.protocol import Request
from sagellm_obs.protocol.tracecontext import (
    TRACESTATE_KEY,
    otel_trace_id,
    traceparent_from_metadata,
)
from sagellm_obs.telemetry import RequestRecord


def new_record(
    request: Request, *, operation: str, stream: bool, engine_id: str, model: str
) -> RequestRecord:
    """A record of ``request`` arriving now, in the trace it names (see docs: Trace ids)."""
    sp = request.sampling_params
    rec = RequestRecord(
        request_id=request.request_id,
        trace_id=request.trace_id,
        engine_id=engine_id,
        model=request.model or model,
        operation=operation,
        stream=stream,
        max_tokens=request.max_tokens,
        temperature=sp.temperature if sp is not None else request.temperature,
        top_p=sp.top_p if sp is not None else request.top_p,
        top_k=sp.top_k if sp is not None and sp.top_k > 0 else None,
        seed=sp.seed if sp is not None else None,
        arrival_time=time.time(),
    )
    _set_trace_context(rec, request)
    return rec


def _set_trace_context(rec: RequestRecord, request: Request) -> None:
    """A W3C traceparent in the metadata, else the caller's span, else the protocol trace id."""
    tp = traceparent_from_metadata(request.metadata)
    if tp is not None:
        rec.otel_trace_id = int(tp.trace_id, 16)
        rec.parent_span_id = int(tp.span_id, 16)
        rec.parent_sampled = tp.sampled
        ts = (request.metadata or {}).get(TRACESTATE_KEY)
        rec.tracestate = ts if isinstance(ts, str) else None
    elif (ctx := trace.get_current_span().get_span_context()).is_valid:
        # Called in-process under an application's span (@trace_protocol, a notebook's own
        # span): join its trace, as a traceparent from a client would.
        rec.otel_trace_id = ctx.trace_id
        rec.parent_span_id = ctx.span_id
        rec.parent_sampled = ctx.trace_flags.sampled
        rec.tracestate = ctx.trace_state.to_header() or None
    else:
        rec.otel_trace_id = int(otel_trace_id(request.trace_id), 16)


def input_messages(req: Request) -> str:
    """The request's text as GenAI ``gen_ai.input.messages`` JSON (content capture only)."""
    if req.messages:
        msgs = [
            {"role": m.role, "parts": [{"type": "text", "content": m.content}]}
            for m in req.messages
        ]
    else:
        msgs = [{"role": "user", "parts": [{"type": "text", "content": req.prompt}]}]
    return json.dumps(msgs)


def output_messages(text: str, finish_reason: str | None) -> str:
    """The completion as GenAI ``gen_ai.output.messages`` JSON (content capture only)."""
    return json.dumps(
        [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": text}],
                # The GenAI schema requires it; Phoenix drops messages without.
                "finish_reason": finish_reason or "",
            }
        ]
    )
