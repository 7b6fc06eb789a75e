"""Application-side instrumentation: traced protocol classes, token streams and openai clients.

* :func:`trace_protocol`: a span around every public method of a class and its subclasses.
* :class:`TokenStreamer`: consume an engine or OpenAI stream with callbacks, cancellation and
  tool-call assembly, as one GenAI CLIENT span with the ``gen_ai.client.*`` metrics.
* :func:`instrument_openai`: CLIENT spans for the official ``openai`` client, with W3C trace
  context propagated to the server (and from there to the engine).

Importing this package does not import ``openai``, vllm or torch.
"""

from __future__ import annotations

from sagellm_obs.app.openai_instrumentation import (
    OpenAIInstrumentation,
    TracedAsyncStream,
    TracedStream,
    instrument_openai,
)
from sagellm_obs.app.protocol_tracing import is_traced, trace_protocol
from sagellm_obs.app.streamer import TokenEvent, TokenStreamer, Usage
from sagellm_obs.protocol.toolcalls import ToolCall, ToolCallAccumulator

__all__ = [
    "OpenAIInstrumentation",
    "TokenEvent",
    "TokenStreamer",
    "ToolCall",
    "ToolCallAccumulator",
    "TracedAsyncStream",
    "TracedStream",
    "Usage",
    "instrument_openai",
    "is_traced",
    "trace_protocol",
]
