"""Engine metrics: units, histogram buckets, :class:`MetricSpec` and the per-request and per-step
instruments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

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
SRC_GENAI_SERVER: Final = (
    "GenAI gen-ai-metrics.md (model server; semconv 1.41-1.42, unchanged since; all modes)"
)
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
