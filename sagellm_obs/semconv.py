"""The one home of span, attribute and metric names, units and histogram buckets.

Code, tests, docs and dashboards import names from here instead of repeating string literals.
Standard OpenTelemetry GenAI names are used where they exist; vLLM's ``gen_ai.latency.*`` keys are
emitted as well so existing vLLM dashboards keep working; everything else lives under ``sagellm.*``.
The table in ``docs/semconv.md`` is generated from :data:`ATTRIBUTE_DOCS` and :data:`METRICS`.
"""

from __future__ import annotations

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
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
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

    @property
    def prometheus_name(self) -> str:
        """The name Prometheus shows for this OTel instrument (OTel -> Prometheus translation)."""
        base = self.name.replace(".", "_")
        if self.unit == UNIT_SECONDS:
            base += "_seconds"
        if self.kind == "counter":
            base += "_total"
        return base


# --- Metrics (per request) ----------------------------------------------------------------------
M_TTFT = MetricSpec(
    "gen_ai.server.time_to_first_token", "histogram", UNIT_SECONDS,
    "Time from arrival to the first output token (vLLM's first_token_latency).", BUCKETS_TTFT,
)  # fmt: skip
M_TPOT = MetricSpec(
    "gen_ai.server.time_per_output_token", "histogram", UNIT_SECONDS,
    "Mean time per output token after the first: decode time / (output tokens - 1).", BUCKETS_TPOT,
)  # fmt: skip
M_REQUEST_DURATION = MetricSpec(
    "gen_ai.server.request.duration", "histogram", UNIT_SECONDS,
    "End-to-end request duration from arrival to the final output.", BUCKETS_DURATION,
)  # fmt: skip
M_TOKEN_USAGE = MetricSpec(
    "gen_ai.server.token.usage", "histogram", UNIT_TOKENS,
    "Tokens per request, by gen_ai.token.type (input, output, cached).", BUCKETS_TOKENS,
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
    M_TTFT, M_TPOT, M_REQUEST_DURATION, M_TOKEN_USAGE, M_QUEUE, M_PREFILL, M_DECODE, M_REQUESTS,
)  # fmt: skip
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
M_CLIENT_OPERATION_DURATION = MetricSpec(
    "gen_ai.client.operation.duration", "histogram", UNIT_SECONDS,
    "Duration of a GenAI client operation, as the client sees it.", BUCKETS_DURATION,
)  # fmt: skip
M_CLIENT_TIME_TO_FIRST_CHUNK = MetricSpec(
    "gen_ai.client.operation.time_to_first_chunk", "histogram", UNIT_SECONDS,
    "Time from the start of a streamed client operation to its first chunk.", BUCKETS_DURATION,
)  # fmt: skip
M_CLIENT_TIME_PER_OUTPUT_CHUNK = MetricSpec(
    "gen_ai.client.operation.time_per_output_chunk", "histogram", UNIT_SECONDS,
    "Time between consecutive chunks of a streamed client operation (each after the first).",
    BUCKETS_DURATION,
)  # fmt: skip
M_CLIENT_TOKEN_USAGE = MetricSpec(
    "gen_ai.client.token.usage", "histogram", UNIT_TOKENS,
    "Tokens per client operation, by gen_ai.token.type (input, output).", BUCKETS_TOKENS,
)  # fmt: skip
CLIENT_METRICS: Final = (
    M_CLIENT_OPERATION_DURATION,
    M_CLIENT_TIME_TO_FIRST_CHUNK,
    M_CLIENT_TIME_PER_OUTPUT_CHUNK,
    M_CLIENT_TOKEN_USAGE,
)
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
