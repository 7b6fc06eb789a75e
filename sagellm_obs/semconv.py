"""The one home of span, attribute and metric names, units and histogram buckets.

Code, tests, docs and dashboards import names from here instead of repeating string literals.
Standard OpenTelemetry GenAI names are used where they exist; vLLM's ``gen_ai.latency.*`` keys are
emitted as well so existing vLLM dashboards keep working; everything else lives under ``sagellm.*``.
``docs/semconv.md`` lists every name (a test keeps it in sync) and which convention version each
follows.

GenAI names follow the current conventions (the ``semantic-conventions-genai`` repository, built on
semconv 1.44) by default; the names sagellm-obs emitted before stay available behind
``OTEL_SEMCONV_STABILITY_OPT_IN`` (see :func:`genai_semconv_mode`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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

# --- Which GenAI names to emit (OTEL_SEMCONV_STABILITY_OPT_IN) -----------------------------------
# OpenTelemetry instrumentations move to new GenAI names behind OTEL_SEMCONV_STABILITY_OPT_IN, a
# comma-separated list: ``gen_ai_latest_experimental`` selects the latest GenAI conventions, and
# ``<category>/dup`` emits the old and new names side by side during a migration (as ``http/dup``
# and ``database/dup`` do). sagellm-obs emits the latest names by default; the same variable
# selects the previous names (``gen_ai_legacy``, a value of ours: OpenTelemetry's default *is* the
# old names, so it defines no value for them) or both (``gen_ai_latest_experimental/dup``).
ENV_SEMCONV_OPT_IN: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"
SEMCONV_LATEST: Final = "latest"
SEMCONV_LEGACY: Final = "legacy"
SEMCONV_DUP: Final = "dup"
SEMCONV_MODES: Final = (SEMCONV_LATEST, SEMCONV_LEGACY, SEMCONV_DUP)
SEMCONV_OPT_IN_VALUES: Final[dict[str, str]] = {
    "gen_ai_latest_experimental": SEMCONV_LATEST,
    "gen_ai_latest_experimental/dup": SEMCONV_DUP,
    "gen_ai_legacy": SEMCONV_LEGACY,
}


def genai_semconv_mode(value: str | None = None) -> str:
    """The GenAI naming mode (:data:`SEMCONV_LATEST`, ``LEGACY`` or ``DUP``) a setting asks for.

    ``value`` is a mode name or an ``OTEL_SEMCONV_STABILITY_OPT_IN`` list; ``None`` reads that
    variable. Unknown entries (other categories: ``http``, ``database/dup``...) are ignored; with
    no GenAI entry the mode is the latest. ``configure()`` reads this once.
    """
    raw = os.environ.get(ENV_SEMCONV_OPT_IN, "") if value is None else value
    if raw.strip() in SEMCONV_MODES:
        return raw.strip()
    modes = {
        SEMCONV_OPT_IN_VALUES[v.strip()]
        for v in raw.split(",")
        if v.strip() in SEMCONV_OPT_IN_VALUES
    }
    if SEMCONV_DUP in modes or modes == {SEMCONV_LATEST, SEMCONV_LEGACY}:
        return SEMCONV_DUP
    if modes == {SEMCONV_LEGACY}:
        return SEMCONV_LEGACY
    return SEMCONV_LATEST


def emits_latest(mode: str) -> bool:
    """Whether ``mode`` emits the current GenAI names."""
    return mode != SEMCONV_LEGACY


def emits_legacy(mode: str) -> bool:
    """Whether ``mode`` emits the previous GenAI names."""
    return mode != SEMCONV_LATEST


# --- Units --------------------------------------------------------------------------------------
UNIT_SECONDS: Final = "s"
UNIT_TOKENS: Final = "{token}"
UNIT_REQUESTS: Final = "{request}"
UNIT_RATIO: Final = "1"

# --- Histogram buckets --------------------------------------------------------------------------
# GenAI semconv advice (docs/gen-ai/gen-ai-metrics.md).
BUCKETS_DURATION: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
BUCKETS_TTFT: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
BUCKETS_TPOT: Final = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip
# Phases of a tiny CPU model are often sub-10 ms: start lower than the semconv duration advice.
BUCKETS_PHASE: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12,
    10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
BUCKETS_TOKENS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip


@dataclass(frozen=True)
class MetricSpec:
    """A metric instrument: name, kind, unit, buckets and what it means."""

    name: str
    kind: str  # "histogram" | "counter" | "gauge" | "updowncounter"
    unit: str
    description: str
    buckets: tuple[float, ...] | None = None
    #: Where the name comes from (docs/semconv.md shows it): a GenAI convention version, or ours.
    source: str = "sagellm-obs"

    @property
    def prometheus_name(self) -> str:
        """The name our ``/metrics`` shows (opentelemetry-exporter-prometheus' translation)."""
        base = self.name.replace(".", "_")
        if self.unit == UNIT_SECONDS:
            base += "_seconds"
        if self.kind == "counter":
            base += "_total"
        return base

    @property
    def collector_prometheus_name(self) -> str:
        """The name after the OpenTelemetry Collector's Prometheus exporter (its translator adds
        ``_ratio`` to gauges of unit ``1``, which the Python exporter does not)."""
        if self.unit == UNIT_RATIO and self.kind == "gauge":
            return self.prometheus_name + "_ratio"
        return self.prometheus_name


# Where each metric name comes from (the "follows" column of docs/semconv.md).
SRC_GENAI_SERVER: Final = "GenAI gen-ai-metrics.md (model server)"
SRC_GENAI_CLIENT: Final = "GenAI semconv 1.44 (client-inference.md, gen-ai-token-metrics.md)"
SRC_GENAI_CLIENT_LEGACY: Final = "GenAI before 1.44 (legacy)"
SRC_SAGELLM: Final = "sagellm-obs"
SRC_SAGELLM_LEGACY: Final = "sagellm-obs (legacy)"

# --- Metrics (per request) ----------------------------------------------------------------------
M_TTFT = MetricSpec(
    "gen_ai.server.time_to_first_token", "histogram", UNIT_SECONDS,
    "Time from arrival to the first output token (vLLM's first_token_latency).", BUCKETS_TTFT,
    SRC_GENAI_SERVER,
)  # fmt: skip
M_TPOT = MetricSpec(
    "gen_ai.server.time_per_output_token", "histogram", UNIT_SECONDS,
    "Mean time per output token after the first: decode time / (output tokens - 1).", BUCKETS_TPOT,
    SRC_GENAI_SERVER,
)  # fmt: skip
M_REQUEST_DURATION = MetricSpec(
    "gen_ai.server.request.duration", "histogram", UNIT_SECONDS,
    "End-to-end request duration from arrival to the final output.", BUCKETS_DURATION,
    SRC_GENAI_SERVER,
)  # fmt: skip
M_REQUEST_INPUT_TOKENS = MetricSpec(
    "sagellm.request.input_tokens", "histogram", UNIT_TOKENS,
    "Input (prompt) tokens per successful request, cached ones included.", BUCKETS_TOKENS,
)  # fmt: skip
M_REQUEST_OUTPUT_TOKENS = MetricSpec(
    "sagellm.request.output_tokens", "histogram", UNIT_TOKENS,
    "Output tokens per successful request.", BUCKETS_TOKENS,
)  # fmt: skip
M_TOKEN_USAGE = MetricSpec(
    "gen_ai.server.token.usage", "histogram", UNIT_TOKENS,
    "Legacy: tokens per successful request, by gen_ai.token.type (input, output).", BUCKETS_TOKENS,
    SRC_SAGELLM_LEGACY,
)  # fmt: skip
M_QUEUE = MetricSpec(
    "sagellm.request.queue.duration", "histogram", UNIT_SECONDS,
    "Time a request waited in the scheduler queue.", BUCKETS_PHASE,
)  # fmt: skip
M_PREFILL = MetricSpec(
    "sagellm.request.prefill.duration", "histogram", UNIT_SECONDS,
    "Time from first scheduling to the first token.", BUCKETS_PHASE,
)  # fmt: skip
M_DECODE = MetricSpec(
    "sagellm.request.decode.duration", "histogram", UNIT_SECONDS,
    "Time from the first to the last token.", BUCKETS_PHASE,
)  # fmt: skip
M_REQUESTS = MetricSpec(
    "sagellm.requests", "counter", UNIT_REQUESTS,
    "Finished requests, by gen_ai.response.finish_reasons and error.type.",
)  # fmt: skip

# --- Metrics (per engine step) ------------------------------------------------------------------
M_KV_USAGE = MetricSpec(
    "sagellm.kv_cache.usage", "gauge", UNIT_RATIO, "Fraction of KV-cache blocks in use (0..1).",
)  # fmt: skip
M_RUNNING = MetricSpec(
    "sagellm.requests.running", "gauge", UNIT_REQUESTS, "Requests running in the engine.",
)  # fmt: skip
M_WAITING = MetricSpec(
    "sagellm.requests.waiting", "gauge", UNIT_REQUESTS, "Requests waiting in the engine queue.",
)  # fmt: skip
M_PREFIX_QUERIES = MetricSpec(
    "sagellm.prefix_cache.queries", "counter", UNIT_TOKENS,
    "Prompt tokens looked up in the prefix cache.",
)  # fmt: skip
M_PREFIX_HITS = MetricSpec(
    "sagellm.prefix_cache.hits", "counter", UNIT_TOKENS,
    "Prompt tokens found in the prefix cache.",
)  # fmt: skip
M_PROMPT_TOKENS = MetricSpec(
    "sagellm.prompt_tokens", "counter", UNIT_TOKENS, "Prompt tokens processed by the engine.",
)  # fmt: skip
M_GENERATION_TOKENS = MetricSpec(
    "sagellm.generation_tokens", "counter", UNIT_TOKENS, "Tokens generated by the engine.",
)  # fmt: skip
M_PREEMPTIONS = MetricSpec(
    "sagellm.preemptions", "counter", UNIT_REQUESTS, "Requests preempted by the scheduler.",
)  # fmt: skip
M_TELEMETRY_DROPPED = MetricSpec(
    "sagellm.telemetry.dropped", "counter", "{record}",
    "Telemetry records dropped (queue full or exporter failure).",
)  # fmt: skip

REQUEST_METRICS: Final = (
    M_TTFT, M_TPOT, M_REQUEST_DURATION, M_REQUEST_INPUT_TOKENS, M_REQUEST_OUTPUT_TOKENS,
    M_TOKEN_USAGE, M_QUEUE, M_PREFILL, M_DECODE, M_REQUESTS,
)  # fmt: skip
LEGACY_METRICS: Final = (M_TOKEN_USAGE,)
"""Engine metrics emitted only in the legacy and dup modes (:func:`genai_semconv_mode`)."""
LATEST_METRICS: Final = (M_REQUEST_INPUT_TOKENS, M_REQUEST_OUTPUT_TOKENS)
"""Engine metrics emitted only in the latest and dup modes."""
STEP_METRICS: Final = (
    M_KV_USAGE, M_RUNNING, M_WAITING, M_PREFIX_QUERIES, M_PREFIX_HITS, M_PROMPT_TOKENS,
    M_GENERATION_TOKENS, M_PREEMPTIONS,
)  # fmt: skip
METRICS: Final = (*REQUEST_METRICS, *STEP_METRICS, M_TELEMETRY_DROPPED)

# --- Step records (local store, steps-*.jsonl) --------------------------------------------------
# One JSON object per engine step; keys below. Times are epoch nanoseconds (wall clock, converted
# once from vLLM's monotonic clock where needed).
STEP_TIME_UNIX_NANO: Final = "time_unix_nano"
STEP_ENGINE_ID: Final = "engine_id"
STEP_ENGINE_IDX: Final = "engine_idx"  # vLLM's engine_idx (data-parallel rank); absent: 0
STEP_INDEX: Final = "step"
STEP_RUNNING: Final = "running"
STEP_WAITING: Final = "waiting"
STEP_KV_USAGE: Final = "kv_cache_usage"
STEP_PREFIX_QUERIES: Final = "prefix_queries"
STEP_PREFIX_HITS: Final = "prefix_hits"
STEP_PROMPT_TOKENS: Final = "prompt_tokens"
STEP_CACHED_PROMPT_TOKENS: Final = "cached_prompt_tokens"
STEP_GENERATION_TOKENS: Final = "generation_tokens"
STEP_PREEMPTIONS: Final = "preemptions"
STEP_FINISHED: Final = "finished"

# KV cache events (the run folder's kv-events kind): one sageLLM KVHookPayload per block and vLLM
# event; our fields go in its metadata under these keys. Times are epoch nanoseconds (wall clock:
# vLLM stamps each event batch with time.time()).
KV_TIME_UNIX_NANO: Final = "time_unix_nano"
KV_ENGINE_ID: Final = "engine_id"
KV_ENGINE_IDX: Final = "engine_idx"  # vLLM's data-parallel rank
KV_KIND: Final = "kind"  # stored, reused, removed, cleared (KV_KINDS)
KV_BLOCK_HASH: Final = "block_hash"  # vLLM's block hash, 16 hex digits (its 64-bit int form)
KV_PARENT_BLOCK_HASH: Final = "parent_block_hash"  # the previous block's, null for a first block
KV_PREFIX_HASH: Final = (
    "prefix_hash"  # our sagellm.prefix.block_hashes entry for a full prompt block
)
KV_BLOCK_SIZE: Final = "block_size"  # tokens per block of the event (a partial block: fewer)
KV_MEDIUM: Final = "medium"  # vLLM's medium: GPU (the engine's own cache, CPU backend included)
KV_GROUP_IDX: Final = "group_idx"  # KV-cache group (one group for plain decoder models)
KV_BATCH_SEQ: Final = "batch_seq"  # the publisher's sequence number of the event batch
KV_STORED, KV_REUSED, KV_REMOVED, KV_CLEARED = "stored", "reused", "removed", "cleared"
KV_KINDS: Final = (KV_STORED, KV_REUSED, KV_REMOVED, KV_CLEARED)

# Step records written as OTel metric points (sagellm_obs.clickhouse): one point per step and
# field, named after the step metrics above; these name the rest and the points' attributes.
STEP_POINT_INDEX: Final = "sagellm.step"  # point attribute: the step counter
STEP_POINT_TIME_UNIX_NANO: Final = "sagellm.step.time_unix_nano"  # point attribute: exact time
STEP_POINT_CACHED_PROMPT_TOKENS: Final = "sagellm.prompt_tokens.cached"  # delta sum per step
STEP_POINT_FINISHED: Final = "sagellm.requests.finished"  # delta sum per step

# --- Environment variables ----------------------------------------------------------------------
ENV_CAPTURE_CONTENT: Final = "SAGELLM_OBS_CAPTURE_CONTENT"
ENV_RUN_DIR: Final = "SAGELLM_OBS_RUN_DIR"
ENV_ENGINE_ID: Final = "SAGELLM_ENGINE_ID"
ENV_STORE: Final = "SAGELLM_OBS_STORE"
ENV_MODEL_CACHE: Final = "SAGELLM_OBS_MODEL_CACHE"
ENV_VLLM_TRACING: Final = "SAGELLM_OBS_VLLM_TRACING"  # configure(vllm_tracing=...) default
ENV_LOG_LEVEL: Final = "SAGELLM_OBS_LOG_LEVEL"  # what vLLM/torch print at start (engine/quiet.py)

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

# --- Application side: client operations, traced calls, tool executions -----------------------
# Spans made by sagellm_obs.app: a GenAI CLIENT span per model call (named like the request span,
# "{gen_ai.operation.name} {gen_ai.request.model}"), an INTERNAL span "{Class}.{method}" per call
# traced by @trace_protocol, and an INTERNAL span "execute_tool {gen_ai.tool.name}" per tool run.
PROVIDER_OPENAI: Final = "openai"
"""``gen_ai.provider.name`` of calls made through the ``openai`` client (GenAI well-known value)."""
OP_EXECUTE_TOOL: Final = "execute_tool"
"""``gen_ai.operation.name`` of a tool execution (GenAI conventions)."""
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
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

# --- The server's HTTP span (OpenTelemetry HTTP semantic conventions, stable) --------------------
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_ROUTE: Final = "http.route"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
URL_PATH: Final = "url.path"
URL_SCHEME: Final = "url.scheme"
CLIENT_ADDRESS: Final = "client.address"
CLIENT_PORT: Final = "client.port"
USER_AGENT_ORIGINAL: Final = "user_agent.original"
NETWORK_PROTOCOL_VERSION: Final = "network.protocol.version"
TRACE_ID_HEADER: Final = "x-trace-id"
"""Response header of ``sagellm-obs serve`` with the request's 32-hex OpenTelemetry trace id."""

HTTP_ATTRIBUTE_DOCS: Final[dict[str, str]] = {
    HTTP_REQUEST_METHOD: "HTTP span: GET, POST...",
    HTTP_ROUTE: "HTTP span: the matched route, e.g. /v1/chat/completions",
    HTTP_RESPONSE_STATUS_CODE: "HTTP span: int status sent",
    URL_PATH: "HTTP span: the request path",
    URL_SCHEME: "HTTP span: http or https",
    SERVER_ADDRESS: "HTTP span: host the server listens on",
    SERVER_PORT: "HTTP span: port the server listens on",
    CLIENT_ADDRESS: "HTTP span: peer address",
    CLIENT_PORT: "HTTP span: peer port",
    USER_AGENT_ORIGINAL: "HTTP span: the User-Agent header",
    NETWORK_PROTOCOL_VERSION: "HTTP span: 1.1, 2...",
}
"""Attributes of the server's SERVER span per HTTP request."""

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
