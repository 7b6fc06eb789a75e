"""The application side: client spans, traced calls, tool executions, GenAI client metrics."""

from __future__ import annotations

from typing import Final

from sagellm_obs.semconv.attributes import (
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_SEED,
    GEN_AI_REQUEST_STREAM,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
)
from sagellm_obs.semconv.http import SERVER_ADDRESS, SERVER_PORT
from sagellm_obs.semconv.metrics import (
    BUCKETS_DURATION,
    BUCKETS_TOKENS,
    SRC_GENAI_CLIENT,
    SRC_GENAI_CLIENT_LEGACY,
    UNIT_SECONDS,
    UNIT_TOKENS,
    MetricSpec,
)

# --- Application side: client operations, traced calls, tool executions -----------------------
# Spans made by sagellm_obs.app: a GenAI CLIENT span per model call (named like the request span,
# "{gen_ai.operation.name} {gen_ai.request.model}"), an INTERNAL span "{Class}.{method}" per call
# traced by @trace_protocol, and an INTERNAL span "execute_tool {gen_ai.tool.name}" per tool run.
PROVIDER_OPENAI: Final = "openai"
"""``gen_ai.provider.name`` of calls made through the ``openai`` client (GenAI well-known value)."""
OP_EXECUTE_TOOL: Final = "execute_tool"
"""``gen_ai.operation.name`` of a tool execution (GenAI conventions)."""
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
"""Tool arguments as JSON text: content, recorded only with content capture on."""
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
"""Tool result as text: content, recorded only with content capture on."""
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"
EVENT_EXCEPTION: Final = "exception"
CODE_FUNCTION_NAME: Final = "code.function.name"
"""Fully qualified name of the traced function (stable ``code`` semantic conventions)."""
EVENT_FIRST_CHUNK: Final = "gen_ai.first_chunk"
"""Span event at the first chunk of a stream (cf. :data:`EVENT_FIRST_TOKEN` on the engine)."""
SAGELLM_STREAM_TTFC: Final = "sagellm.stream.time_to_first_chunk"
"""Seconds from the start of a traced stream to its first chunk."""
SAGELLM_STREAM_CHUNKS: Final = "sagellm.stream.chunks"
"""Chunks a traced stream delivered."""
SAGELLM_STREAM_CHUNK_TYPE: Final = "sagellm.stream.chunk.type"
SAGELLM_ARG_PREFIX: Final = "sagellm.arg."
"""``sagellm.arg.<name>.type`` / ``.size`` / ``.request_id``; ``sagellm.arg.<name>`` for ids."""
SAGELLM_RESULT_TYPE: Final = "sagellm.result.type"
SAGELLM_RESULT_VALUE: Final = "sagellm.result.value"
"""The result (truncated text), only when content capture is on; ``sagellm.arg.<name>.value``
likewise for arguments."""
SAGELLM_TOOL_CALLS: Final = "sagellm.tool_calls"
"""Number of tool calls a response carried."""
SAGELLM_TOOL_CALL_NAMES: Final = "sagellm.tool_calls.names"
"""string[]: function names of the tool calls (names, not arguments: not content)."""


def tool_span_name(tool_name: str) -> str:
    """Name of a tool-execution span, as the GenAI conventions advise."""
    return f"{OP_EXECUTE_TOOL} {tool_name}" if tool_name else OP_EXECUTE_TOOL


# --- Metrics (client side, GenAI conventions) ---------------------------------------------------
# Current (semantic-conventions-genai on semconv 1.44): docs/gen-ai/client-inference.md names the
# inference latency histograms, docs/gen-ai/gen-ai-token-metrics.md the token instruments.
M_CLIENT_INFERENCE_DURATION = MetricSpec(
    "gen_ai.client.inference.duration", "histogram", UNIT_SECONDS,
    "Duration of a GenAI client inference operation, as the client sees it.", BUCKETS_DURATION,
    SRC_GENAI_CLIENT,
)  # fmt: skip
M_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK = MetricSpec(
    "gen_ai.client.inference.time_to_first_chunk", "histogram", UNIT_SECONDS,
    "Time from the start of a streamed inference operation to its first chunk.", BUCKETS_DURATION,
    SRC_GENAI_CLIENT,
)  # fmt: skip
M_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK = MetricSpec(
    "gen_ai.client.inference.time_per_output_chunk", "histogram", UNIT_SECONDS,
    "Time between consecutive chunks of a streamed inference operation (each after the first).",
    BUCKETS_DURATION, SRC_GENAI_CLIENT,
)  # fmt: skip
M_CLIENT_OPERATION_INPUT_TOKENS = MetricSpec(
    "gen_ai.client.inference.operation.input_tokens", "histogram", UNIT_TOKENS,
    "Input tokens per successful inference operation (not by modality).", BUCKETS_TOKENS,
    SRC_GENAI_CLIENT,
)  # fmt: skip
M_CLIENT_OPERATION_OUTPUT_TOKENS = MetricSpec(
    "gen_ai.client.inference.operation.output_tokens", "histogram", UNIT_TOKENS,
    "Output tokens per successful inference operation (not by modality).", BUCKETS_TOKENS,
    SRC_GENAI_CLIENT,
)  # fmt: skip
M_CLIENT_USAGE_INPUT_TOKENS = MetricSpec(
    "gen_ai.client.inference.usage.input_tokens", "counter", UNIT_TOKENS,
    "Input tokens spent, cached ones included, by gen_ai.token.modality (failed calls add 0).",
    None, SRC_GENAI_CLIENT,
)  # fmt: skip
M_CLIENT_USAGE_OUTPUT_TOKENS = MetricSpec(
    "gen_ai.client.inference.usage.output_tokens", "counter", UNIT_TOKENS,
    "Output tokens spent, reasoning ones included, by gen_ai.token.modality.", None,
    SRC_GENAI_CLIENT,
)  # fmt: skip
M_CLIENT_USAGE_CACHE_READ_INPUT_TOKENS = MetricSpec(
    "gen_ai.client.inference.usage.cache_read.input_tokens", "counter", UNIT_TOKENS,
    "Input tokens served from the provider's cache (a subset of input tokens), when reported.",
    None, SRC_GENAI_CLIENT,
)  # fmt: skip
M_CLIENT_USAGE_CACHE_WRITE_INPUT_TOKENS = MetricSpec(
    "gen_ai.client.inference.usage.cache_write.input_tokens", "counter", UNIT_TOKENS,
    "Input tokens written to the provider's cache (a subset of input tokens), when reported.",
    None, SRC_GENAI_CLIENT,
)  # fmt: skip
M_CLIENT_USAGE_REASONING_OUTPUT_TOKENS = MetricSpec(
    "gen_ai.client.inference.usage.reasoning.output_tokens", "counter", UNIT_TOKENS,
    "Output tokens used for reasoning (a subset of output tokens), when reported.", None,
    SRC_GENAI_CLIENT,
)  # fmt: skip
CLIENT_METRICS_LATEST: Final = (
    M_CLIENT_INFERENCE_DURATION,
    M_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK,
    M_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK,
    M_CLIENT_OPERATION_INPUT_TOKENS,
    M_CLIENT_OPERATION_OUTPUT_TOKENS,
    M_CLIENT_USAGE_INPUT_TOKENS,
    M_CLIENT_USAGE_OUTPUT_TOKENS,
    M_CLIENT_USAGE_CACHE_READ_INPUT_TOKENS,
    M_CLIENT_USAGE_CACHE_WRITE_INPUT_TOKENS,
    M_CLIENT_USAGE_REASONING_OUTPUT_TOKENS,
)
# Previous (emitted with gen_ai_legacy or .../dup): the names of GenAI conventions before the
# client-inference consolidation and genai PR 374.
M_CLIENT_OPERATION_DURATION = MetricSpec(
    "gen_ai.client.operation.duration", "histogram", UNIT_SECONDS,
    "Legacy: duration of a GenAI client operation, as the client sees it.", BUCKETS_DURATION,
    SRC_GENAI_CLIENT_LEGACY,
)  # fmt: skip
M_CLIENT_TIME_TO_FIRST_CHUNK = MetricSpec(
    "gen_ai.client.operation.time_to_first_chunk", "histogram", UNIT_SECONDS,
    "Legacy: time from the start of a streamed client operation to its first chunk.",
    BUCKETS_DURATION, SRC_GENAI_CLIENT_LEGACY,
)  # fmt: skip
M_CLIENT_TIME_PER_OUTPUT_CHUNK = MetricSpec(
    "gen_ai.client.operation.time_per_output_chunk", "histogram", UNIT_SECONDS,
    "Legacy: time between consecutive chunks of a streamed client operation.",
    BUCKETS_DURATION, SRC_GENAI_CLIENT_LEGACY,
)  # fmt: skip
M_CLIENT_TOKEN_USAGE = MetricSpec(
    "gen_ai.client.token.usage", "histogram", UNIT_TOKENS,
    "Legacy: tokens per client operation, by gen_ai.token.type (input, output).", BUCKETS_TOKENS,
    SRC_GENAI_CLIENT_LEGACY,
)  # fmt: skip
CLIENT_METRICS_LEGACY: Final = (
    M_CLIENT_OPERATION_DURATION,
    M_CLIENT_TIME_TO_FIRST_CHUNK,
    M_CLIENT_TIME_PER_OUTPUT_CHUNK,
    M_CLIENT_TOKEN_USAGE,
)
CLIENT_METRICS: Final = (*CLIENT_METRICS_LATEST, *CLIENT_METRICS_LEGACY)
"""Recorded by the application-side instruments (not part of the engine's :data:`METRICS`)."""

APP_ATTRIBUTE_DOCS: Final[dict[str, str]] = {
    GEN_AI_PROVIDER_NAME: "client spans: openai (openai client) or vllm (engine stream)",
    SERVER_ADDRESS: "client spans: host the client called",
    SERVER_PORT: "client spans: port the client called",
    GEN_AI_REQUEST_STREAM: "client spans: whether the response is streamed",
    GEN_AI_REQUEST_SEED: "client spans: sampling seed, when given",
    GEN_AI_REQUEST_CHOICE_COUNT: "client spans: n, when not 1",
    GEN_AI_REQUEST_STOP_SEQUENCES: "client spans: string[] stop sequences",
    GEN_AI_REQUEST_FREQUENCY_PENALTY: "client spans: frequency_penalty, when given",
    GEN_AI_REQUEST_PRESENCE_PENALTY: "client spans: presence_penalty, when given",
    GEN_AI_RESPONSE_MODEL: "client spans: model named in the response",
    GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: "client spans: s, start -> first streamed chunk",
    GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: "client spans: input tokens written to the provider's "
    "cache, when reported (legacy mode: gen_ai.usage.cache_creation.input_tokens)",
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: "client spans: reasoning output tokens, when reported",
    SAGELLM_TOOL_CALLS: "client spans: tool calls in the response",
    SAGELLM_TOOL_CALL_NAMES: "client spans: string[] function names of those tool calls",
    GEN_AI_TOOL_DEFINITIONS: "client spans: the tools offered (content: capture only)",
    CODE_FUNCTION_NAME: "traced calls: module.Class.method",
    SAGELLM_ARG_PREFIX + "<name>.type": "traced calls: type of each argument",
    SAGELLM_ARG_PREFIX + "<name>.size": "traced calls: len() of sized arguments",
    SAGELLM_ARG_PREFIX + "<name>": "traced calls: value of id arguments (id, *_id)",
    SAGELLM_RESULT_TYPE: "traced calls: result type (generator, async_generator for streams)",
    SAGELLM_RESULT_VALUE: "traced calls: result text (content: capture only)",
    SAGELLM_STREAM_CHUNKS: "traced streams and client streams: chunks delivered",
    SAGELLM_STREAM_TTFC: "traced streams and client streams: s, start -> first chunk",
    SAGELLM_STREAM_CHUNK_TYPE: "traced streams: type of the first chunk",
    GEN_AI_TOOL_NAME: "tool spans: the tool (function) name",
    GEN_AI_TOOL_CALL_ID: "tool spans: the model's tool-call id",
    GEN_AI_TOOL_TYPE: "tool spans: function",
    GEN_AI_TOOL_DESCRIPTION: "tool spans: what the tool does, when given",
    GEN_AI_TOOL_CALL_ARGUMENTS: "tool spans: arguments JSON (content: capture only)",
    GEN_AI_TOOL_CALL_RESULT: "tool spans: result text (content: capture only)",
}
"""Attributes of the application-side spans (client, traced-call and tool spans)."""
