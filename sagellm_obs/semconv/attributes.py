"""Span names and attributes: GenAI conventions, vLLM's own keys, ``sagellm.*`` and the
resource; :data:`ATTRIBUTE_DOCS` says what each request-span attribute holds."""

from __future__ import annotations

from typing import Final

# --- Instrumentation scope ------------------------------------------------------------------------
SCOPE_NAME: Final = "sagellm_obs"
PROVIDER_NAME: Final = "vllm"

# --- Span names ---------------------------------------------------------------------------------
# The request span follows the GenAI convention "{gen_ai.operation.name} {gen_ai.request.model}".
SPAN_QUEUE: Final = "queue"
SPAN_PREFILL: Final = "prefill"
SPAN_DECODE: Final = "decode"
PHASE_SPANS: Final = (SPAN_QUEUE, SPAN_PREFILL, SPAN_DECODE)
EVENT_FIRST_TOKEN: Final = "gen_ai.first_token"

# gen_ai.operation.name values
OP_TEXT_COMPLETION: Final = "text_completion"
OP_CHAT: Final = "chat"


def request_span_name(operation: str, model: str) -> str:
    """Name of the request span, as the GenAI conventions advise."""
    return f"{operation} {model}" if model else operation


# --- GenAI semantic-convention attributes -------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
"""Input tokens written to a provider-managed cache (genai changelog 440: was cache_creation)."""
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_LEGACY: Final = "gen_ai.usage.cache_creation.input_tokens"
"""The previous name of :data:`GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS` (legacy mode, loaders)."""
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
"""Legacy: the ``input``/``output`` split of the removed ``gen_ai.*.token.usage`` histograms."""
GEN_AI_TOKEN_MODALITY: Final = "gen_ai.token.modality"
"""Required on the ``gen_ai.client.inference.usage.*`` counters: text, image, audio, unknown."""
TOKEN_MODALITY_TEXT: Final = "text"
TOKEN_MODALITY_UNKNOWN: Final = "unknown"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
ERROR_TYPE: Final = "error.type"

# --- vLLM's own span attributes (vllm/tracing/utils.py), kept for existing dashboards -------------
GEN_AI_LATENCY_TIME_IN_QUEUE: Final = "gen_ai.latency.time_in_queue"
GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN: Final = "gen_ai.latency.time_to_first_token"
GEN_AI_LATENCY_E2E: Final = "gen_ai.latency.e2e"
GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL: Final = "gen_ai.latency.time_in_model_prefill"
GEN_AI_LATENCY_TIME_IN_MODEL_DECODE: Final = "gen_ai.latency.time_in_model_decode"
GEN_AI_LATENCY_TIME_IN_MODEL_INFERENCE: Final = "gen_ai.latency.time_in_model_inference"
GEN_AI_REQUEST_ID: Final = "gen_ai.request.id"
# vLLM still emits the deprecated usage names; loaders accept them.
GEN_AI_USAGE_PROMPT_TOKENS_DEPRECATED: Final = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS_DEPRECATED: Final = "gen_ai.usage.completion_tokens"
VLLM_REQUEST_SPAN_NAME: Final = "llm_request"

# --- sagellm.* attributes -----------------------------------------------------------------------
SAGELLM_REQUEST_ID: Final = "sagellm.request_id"
SAGELLM_TRACE_ID: Final = "sagellm.trace_id"
SAGELLM_ENGINE_ID: Final = "sagellm.engine_id"
SAGELLM_ENGINE_IDX: Final = "sagellm.engine_idx"
"""vLLM's ``engine_idx`` (data-parallel rank) of the EngineCore that ran the request or step:
the index vLLM's stat loggers receive and its Prometheus ``engine`` label carries."""
SAGELLM_RUN_ID: Final = "sagellm.run_id"
SAGELLM_CACHED_PROMPT_TOKENS: Final = "sagellm.prompt_tokens.cached"
SAGELLM_COMPUTED_PROMPT_TOKENS: Final = "sagellm.prompt_tokens.computed"
SAGELLM_PREEMPTIONS: Final = "sagellm.preemptions"
SAGELLM_PREFIX_HASH: Final = "sagellm.prefix.block_hashes"
SAGELLM_TTFT: Final = "sagellm.latency.ttft"
SAGELLM_TPOT: Final = "sagellm.latency.tpot"
SAGELLM_QUEUE: Final = "sagellm.latency.queue"
SAGELLM_PREFILL: Final = "sagellm.latency.prefill"
SAGELLM_DECODE: Final = "sagellm.latency.decode"
SAGELLM_E2E: Final = "sagellm.latency.e2e"
SAGELLM_ARRIVAL_UNIX_NANO: Final = "sagellm.arrival_time_unix_nano"
SAGELLM_CLOCK_ISSUES: Final = "sagellm.clock.issues"
SAGELLM_CANCELLED: Final = "sagellm.cancelled"
SAGELLM_STREAM: Final = "sagellm.stream"
SAGELLM_ERROR_CODE: Final = "sagellm.error.code"
SAGELLM_KV_TOKENS: Final = "sagellm.kv.tokens"
SAGELLM_KV_BYTES: Final = "sagellm.kv.bytes"

# Resource attributes
SERVICE_NAME_DEFAULT: Final = "sagellm-obs"
RESOURCE_ENGINE_ID: Final = "sagellm.engine_id"
RESOURCE_RUN_ID: Final = "sagellm.run_id"

ATTRIBUTE_DOCS: Final[dict[str, str]] = {
    GEN_AI_OPERATION_NAME: "text_completion or chat",
    GEN_AI_PROVIDER_NAME: "vllm",
    GEN_AI_REQUEST_MODEL: "served model name",
    GEN_AI_REQUEST_MAX_TOKENS: "max_tokens of the request",
    GEN_AI_REQUEST_TEMPERATURE: "sampling temperature",
    GEN_AI_REQUEST_TOP_P: "nucleus sampling top_p",
    GEN_AI_RESPONSE_ID: "the request id",
    GEN_AI_RESPONSE_FINISH_REASONS: "string[]: stop, length, abort, error",
    GEN_AI_USAGE_INPUT_TOKENS: "prompt tokens (cached ones included)",
    GEN_AI_USAGE_OUTPUT_TOKENS: "generated tokens",
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: "prompt tokens served from the prefix cache",
    GEN_AI_LATENCY_TIME_IN_QUEUE: "s, scheduled - queued (engine monotonic clock)",
    GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN: "s, first token - arrival (vLLM first_token_latency)",
    GEN_AI_LATENCY_E2E: "s, final output - arrival (frontend wall clock)",
    GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL: "s, first token - scheduled",
    GEN_AI_LATENCY_TIME_IN_MODEL_DECODE: "s, last token - first token",
    GEN_AI_LATENCY_TIME_IN_MODEL_INFERENCE: "s, last token - scheduled",
    GEN_AI_REQUEST_ID: "request id (vLLM key)",
    SAGELLM_REQUEST_ID: "protocol Request.request_id",
    SAGELLM_TRACE_ID: "protocol Request.trace_id as given (free-form)",
    SAGELLM_ENGINE_ID: "engine instance id (a serve replica: host:port; else a configured name)",
    SAGELLM_ENGINE_IDX: "int, vLLM's engine_idx: the data-parallel rank that ran the request",
    SAGELLM_CACHED_PROMPT_TOKENS: "prompt tokens from the prefix cache",
    SAGELLM_COMPUTED_PROMPT_TOKENS: "prompt tokens computed by prefill",
    SAGELLM_PREEMPTIONS: "times the request was preempted",
    SAGELLM_TPOT: "s, decode / (output tokens - 1)",
    SAGELLM_CLOCK_ISSUES: "string[]: impossible intervals found (negative, out of order)",
    SAGELLM_CANCELLED: "true when the caller cancelled the request",
    SAGELLM_KV_TOKENS: "KV-cache tokens the request held at finish (prompt + output)",
    SAGELLM_KV_BYTES: "sagellm.kv.tokens x bytes of KV per token for this model",
}
