"""Application-side instrumentation: traced protocol classes, token streams and openai clients.

* :func:`trace_protocol`: a span around every public method of a class and its subclasses.
* :class:`TokenStreamer`: consume an engine or OpenAI stream with callbacks, cancellation and
  tool-call assembly, as one GenAI CLIENT span with the ``gen_ai.client.*`` metrics.
* :func:`instrument_openai`: CLIENT spans for the official ``openai`` client, with W3C trace
  context propagated to the server (and from there to the engine).
* :func:`tool_span`: the ``execute_tool {name}`` span of a tool the application runs itself.

Names and units come from :mod:`sagellm_obs.semconv`; the frames turn the joined trace into a call
tree and a "where the time went" breakdown (:func:`sagellm_obs.frames.call_tree`,
:func:`sagellm_obs.frames.time_breakdown`).

Importing this package does not import ``openai``, vllm or torch.
"""

from __future__ import annotations

from sagellm_obs.app.openai_instrumentation import OpenAIInstrumentation, instrument_openai
from sagellm_obs.app.openai_recording import TracedAsyncStream, TracedStream
from sagellm_obs.app.protocol_tracing import is_traced, trace_protocol
from sagellm_obs.app.streamer import TokenEvent, TokenStreamer, Usage
from sagellm_obs.app.tools import ToolSpan, tool_span
from sagellm_obs.protocol.toolcalls import ToolCall, ToolCallAccumulator

__all__ = [
    "OpenAIInstrumentation",
    "TokenEvent",
    "TokenStreamer",
    "ToolCall",
    "ToolCallAccumulator",
    "ToolSpan",
    "TracedAsyncStream",
    "TracedStream",
    "Usage",
    "instrument_openai",
    "is_traced",
    "tool_span",
    "trace_protocol",
]
