"""Span, attribute, event and metric names of the application-side instrumentation.

Names that :mod:`sagellm_obs.semconv` already defines are re-exported from there; the rest are new
and are candidates to move into ``semconv`` (they are listed in :data:`NEW_NAMES`). The client
metrics follow the OpenTelemetry GenAI conventions (``gen_ai.client.*``, Development stability).
"""

from __future__ import annotations

from typing import Final

from sagellm_obs import semconv as sc
from sagellm_obs.semconv import MetricSpec

# --- Re-exported from semconv -------------------------------------------------------------------
SCOPE_NAME: Final = sc.SCOPE_NAME
PROVIDER_VLLM: Final = sc.PROVIDER_NAME
OP_CHAT: Final = sc.OP_CHAT
OP_TEXT_COMPLETION: Final = sc.OP_TEXT_COMPLETION
GEN_AI_OPERATION_NAME: Final = sc.GEN_AI_OPERATION_NAME
GEN_AI_PROVIDER_NAME: Final = sc.GEN_AI_PROVIDER_NAME
GEN_AI_REQUEST_MODEL: Final = sc.GEN_AI_REQUEST_MODEL
GEN_AI_RESPONSE_MODEL: Final = sc.GEN_AI_RESPONSE_MODEL
GEN_AI_REQUEST_MAX_TOKENS: Final = sc.GEN_AI_REQUEST_MAX_TOKENS
GEN_AI_REQUEST_TEMPERATURE: Final = sc.GEN_AI_REQUEST_TEMPERATURE
GEN_AI_REQUEST_TOP_P: Final = sc.GEN_AI_REQUEST_TOP_P
GEN_AI_REQUEST_TOP_K: Final = sc.GEN_AI_REQUEST_TOP_K
GEN_AI_REQUEST_SEED: Final = sc.GEN_AI_REQUEST_SEED
GEN_AI_REQUEST_STREAM: Final = sc.GEN_AI_REQUEST_STREAM
GEN_AI_RESPONSE_ID: Final = sc.GEN_AI_RESPONSE_ID
GEN_AI_RESPONSE_FINISH_REASONS: Final = sc.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_USAGE_INPUT_TOKENS: Final = sc.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS: Final = sc.GEN_AI_USAGE_OUTPUT_TOKENS
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
GEN_AI_TOKEN_TYPE: Final = sc.GEN_AI_TOKEN_TYPE
GEN_AI_INPUT_MESSAGES: Final = sc.GEN_AI_INPUT_MESSAGES
GEN_AI_OUTPUT_MESSAGES: Final = sc.GEN_AI_OUTPUT_MESSAGES
ERROR_TYPE: Final = sc.ERROR_TYPE
SAGELLM_CANCELLED: Final = sc.SAGELLM_CANCELLED
SAGELLM_STREAM: Final = sc.SAGELLM_STREAM
request_span_name = sc.request_span_name

# --- New: standard names semconv lacks ----------------------------------------------------------
PROVIDER_OPENAI: Final = "openai"
"""``gen_ai.provider.name`` of calls made through the ``openai`` client (GenAI well-known value)."""
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"
EVENT_EXCEPTION: Final = "exception"
CODE_FUNCTION_NAME: Final = "code.function.name"
"""Fully qualified name of the traced function (stable ``code`` semantic conventions)."""

# --- New: project names -------------------------------------------------------------------------
EVENT_FIRST_CHUNK: Final = "gen_ai.first_chunk"
"""Span event at the first chunk of a stream (cf. ``semconv.EVENT_FIRST_TOKEN`` on the engine)."""
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

# --- New: client metrics (GenAI conventions) ----------------------------------------------------
M_CLIENT_OPERATION_DURATION = MetricSpec(
    "gen_ai.client.operation.duration", "histogram", sc.UNIT_SECONDS,
    "Duration of a GenAI client operation, as the client sees it.", sc.BUCKETS_DURATION,
)  # fmt: skip
M_CLIENT_TIME_TO_FIRST_CHUNK = MetricSpec(
    "gen_ai.client.operation.time_to_first_chunk", "histogram", sc.UNIT_SECONDS,
    "Time from the start of a streamed client operation to its first chunk.", sc.BUCKETS_DURATION,
)  # fmt: skip
M_CLIENT_TIME_PER_OUTPUT_CHUNK = MetricSpec(
    "gen_ai.client.operation.time_per_output_chunk", "histogram", sc.UNIT_SECONDS,
    "Time between consecutive chunks of a streamed client operation (each after the first).",
    sc.BUCKETS_DURATION,
)  # fmt: skip
M_CLIENT_TOKEN_USAGE = MetricSpec(
    "gen_ai.client.token.usage", "histogram", sc.UNIT_TOKENS,
    "Tokens per client operation, by gen_ai.token.type (input, output).", sc.BUCKETS_TOKENS,
)  # fmt: skip
CLIENT_METRICS: Final = (
    M_CLIENT_OPERATION_DURATION,
    M_CLIENT_TIME_TO_FIRST_CHUNK,
    M_CLIENT_TIME_PER_OUTPUT_CHUNK,
    M_CLIENT_TOKEN_USAGE,
)

NEW_NAMES: Final = (
    PROVIDER_OPENAI, SERVER_ADDRESS, SERVER_PORT, GEN_AI_REQUEST_CHOICE_COUNT,
    GEN_AI_REQUEST_STOP_SEQUENCES, GEN_AI_REQUEST_FREQUENCY_PENALTY,
    GEN_AI_REQUEST_PRESENCE_PENALTY, GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, GEN_AI_TOOL_DEFINITIONS,
    EVENT_FIRST_CHUNK, SAGELLM_STREAM_TTFC, SAGELLM_STREAM_CHUNKS, SAGELLM_STREAM_CHUNK_TYPE,
    SAGELLM_ARG_PREFIX, SAGELLM_RESULT_TYPE, SAGELLM_RESULT_VALUE, CODE_FUNCTION_NAME,
    SAGELLM_TOOL_CALLS, SAGELLM_TOOL_CALL_NAMES,
    *(m.name for m in CLIENT_METRICS),
)  # fmt: skip
"""Names defined here that should move to :mod:`sagellm_obs.semconv`."""
