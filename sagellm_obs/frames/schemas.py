"""The declared schemas of the four frames, and the check every producer and consumer relies on.

The frames are the contract between the loader and everything downstream (analysis helpers,
charts, notebooks, benchmarks): a column listed here is always present with exactly this dtype,
nullable unless said otherwise. :data:`REQUIRED_COLUMNS` names them per frame and
:func:`check_schema` enforces them; extra columns are allowed.

Times are ``Datetime("ns", "UTC")``; durations are seconds as ``Float64`` with an ``_s`` suffix.
Low-cardinality text (span names and kinds, status codes, services, scopes, models, operations,
engine and run ids, finish reasons, error types, file names, metric names...) is
``pl.Categorical`` (:data:`CAT`): it compares with plain strings (``pl.col("model") == "m"``,
``is_in``), groups and sorts by its text, and reaches charts and ``to_dicts()`` as text; string
functions need ``.cat.starts_with(...)`` / ``.cat.ends_with(...)`` or ``.cast(pl.String)`` first,
and a join with a ``String`` column of another frame needs one side cast. Ids (trace, span,
request) and free text (status messages) stay ``String``.

``spans.attributes`` holds the span attributes that have no typed column, as
``List(Struct{key: Categorical, value: String})``: polars keeps that columnar (no per-row JSON
parsing), and it round-trips through Parquet. Values are rendered as text: strings as they are,
integers in decimal, doubles in shortest round-trip form, booleans as ``true``/``false`` and
arrays as a JSON array of strings. :func:`attribute` reads one back.

``metrics.attributes`` holds a data point's attributes as a JSON object string with sorted keys,
so that equal attribute sets compare equal and identify a time series; read one with
``pl.col("attributes").str.json_path_match("$['gen_ai.request.model']")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

import polars as pl

if TYPE_CHECKING:
    from polars._typing import PolarsDataType


FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def _schema(columns: Mapping[str, PolarsDataType]) -> pl.Schema:
    return pl.Schema(columns)


TIME = pl.Datetime("ns", "UTC")
"""The dtype of every timestamp column."""

CAT = pl.Categorical()
"""The dtype of the low-cardinality text columns (names, kinds, models, engines, runs, files):
4 bytes a row instead of a 16-byte string view. Polars' categories are global, so frames of
different files, sources and runs concatenate and join without casts."""

ATTRIBUTES = pl.List(pl.Struct({"key": CAT, "value": pl.String}))
"""The dtype of ``spans.attributes``: the attributes without a typed column."""

EVENTS = pl.List(pl.Struct({"name": CAT, "time": TIME}))
"""The dtype of ``spans.events`` (event attributes are not kept)."""

SPANS = _schema(
    {
        "trace_id": pl.String,  # 32 hex digits
        "span_id": pl.String,  # 16 hex digits
        "parent_span_id": pl.String,  # null for root spans
        "name": CAT,
        "kind": CAT,  # INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER, UNSPECIFIED
        "start": TIME,
        "end": TIME,
        "duration_s": pl.Float64,
        "status_code": CAT,  # UNSET, OK, ERROR
        "status_message": pl.String,
        "service_name": CAT,  # resource service.name
        "engine_id": CAT,  # span, else resource, sagellm.engine_id
        "engine_idx": pl.Int64,  # sagellm.engine_idx: vLLM's data-parallel rank (null: unknown)
        "run_id": CAT,  # resource, else span, sagellm.run_id
        "scope": CAT,  # instrumentation scope name
        # Known request attributes (null on spans that do not carry them).
        "request_id": pl.String,
        "protocol_trace_id": pl.String,  # sagellm.trace_id: the protocol's free-form trace id
        "operation": CAT,
        "model": CAT,
        "input_tokens": pl.Int64,
        "output_tokens": pl.Int64,
        "cached_tokens": pl.Int64,
        "ttft_s": pl.Float64,
        "queue_s": pl.Float64,
        "prefill_s": pl.Float64,
        "decode_s": pl.Float64,
        "inference_s": pl.Float64,
        "e2e_s": pl.Float64,
        "tpot_s": pl.Float64,
        "finish_reason": CAT,
        "error_type": CAT,
        "stream": pl.Boolean,
        "cancelled": pl.Boolean,
        "events": EVENTS,
        "attributes": ATTRIBUTES,
        "source_file": CAT,  # file name relative to the loaded source
        "source_line": pl.Int64,  # 1-based line of the file
    }
)

REQUESTS = _schema(
    {
        "request_id": pl.String,
        "trace_id": pl.String,  # OpenTelemetry trace id (hex)
        "protocol_trace_id": pl.String,
        "span_id": pl.String,
        "model": CAT,
        "engine_id": CAT,
        "engine_idx": pl.Int64,  # vLLM's data-parallel rank
        "run_id": CAT,
        "operation": CAT,
        "arrival": TIME,  # start of the request span
        "frontend_s": pl.Float64,  # TTFT - queue - prefill: the engine frontend's share of TTFT
        "queue_s": pl.Float64,
        "prefill_s": pl.Float64,
        "decode_s": pl.Float64,
        "inference_s": pl.Float64,
        "ttft_s": pl.Float64,
        "tpot_s": pl.Float64,
        "e2e_s": pl.Float64,
        "input_tokens": pl.Int64,
        "output_tokens": pl.Int64,
        "cached_tokens": pl.Int64,
        "cached_prompt_share": pl.Float64,  # cached / input tokens, null when input is 0 or unknown
        "finish_reason": CAT,
        "error_type": CAT,
        "cancelled": pl.Boolean,
        "stream": pl.Boolean,
        "source": CAT,  # "sagellm" (our SERVER span) or "vllm" (vLLM's llm_request span)
        # From requests-client-*.jsonl, joined on request_id; null when absent.
        "client_start": TIME,
        "client_ttft_s": pl.Float64,
        "client_e2e_s": pl.Float64,
        "workload": CAT,  # the workload that sent the request
        "family": pl.String,  # its shared-prefix family or chat session
        "workload_phase": CAT,  # its act in a phased workload ("warm", "pressure"...)
        "parent_span_id": pl.String,  # the request span's parent (a caller's span), if any
        # vLLM's own figures, from its llm_request span under ours (configure(vllm_tracing=True));
        # null without it. See frames.spans.VLLM_FIGURES and docs/vllm-tracing.md.
        "vllm_span_id": pl.String,
        "vllm_ttft_s": pl.Float64,
        "vllm_queue_s": pl.Float64,
        "vllm_prefill_s": pl.Float64,
        "vllm_decode_s": pl.Float64,
        "vllm_e2e_s": pl.Float64,
        "vllm_input_tokens": pl.Int64,
        "vllm_output_tokens": pl.Int64,
    }
)

STEPS = _schema(
    {
        "time": TIME,
        "engine_id": CAT,
        "engine_idx": pl.Int64,  # vLLM's data-parallel rank (0 without DP)
        "run_id": CAT,  # from the run's manifest; null when unknown
        "step": pl.Int64,
        "running": pl.Int64,
        "waiting": pl.Int64,
        "kv_cache_usage": pl.Float64,
        "prefix_queries": pl.Int64,
        "prefix_hits": pl.Int64,
        "prompt_tokens": pl.Int64,
        "cached_prompt_tokens": pl.Int64,
        "generation_tokens": pl.Int64,
        "preemptions": pl.Int64,
        "finished": pl.Int64,
        "prefix_hit_rate": pl.Float64,  # hits / queries of the step, null when no queries
    }
)

KV_EVENTS = _schema(
    {
        "time": TIME,  # vLLM's time.time() of the step's event batch
        "engine_id": CAT,
        "engine_idx": pl.Int64,
        "run_id": CAT,
        "event": CAT,  # sageLLM KVHookEvent: allocate_after, evict_after, free_after
        "kind": CAT,  # stored, reused, removed, cleared (semconv.KV_KINDS)
        "request_id": pl.String,  # who stored or reused the block; null for removals
        "block_hash": pl.String,  # vLLM's block hash, 16 hex digits; null for "cleared"
        "parent_block_hash": pl.String,
        "prefix_hash": pl.String,  # our hash, as in a span's sagellm.prefix.block_hashes
        "block_size": pl.Int64,  # tokens per block of the event
        "num_tokens": pl.Int64,  # tokens of this block in the event (0 for removals)
        "evict_reason": CAT,  # sageLLM KVEvictReason for removals and clears
        "medium": CAT,
        "group_idx": pl.Int64,
        "batch_seq": pl.Int64,  # vLLM publisher's sequence number of the batch
        "source_file": CAT,
        "source_line": pl.Int64,
    }
)
"""One row per block per vLLM KV cache event: :func:`sagellm_obs.frames.kv_events`."""

METRICS = _schema(
    {
        "time": TIME,
        "start_time": TIME,  # start of the cumulative interval (null for gauges)
        "name": CAT,
        "kind": CAT,  # gauge, counter, updowncounter, histogram
        "unit": CAT,
        "temporality": CAT,  # cumulative, delta (null for gauges)
        "attributes": pl.String,  # JSON object, sorted keys
        "value": pl.Float64,  # gauges and sums
        "count": pl.Int64,  # histograms
        "sum": pl.Float64,
        "bucket_counts": pl.List(pl.Int64),  # len(explicit_bounds) + 1, last is +Inf
        "explicit_bounds": pl.List(pl.Float64),
        "min": pl.Float64,
        "max": pl.Float64,
        "service_name": CAT,
        "engine_id": CAT,
        "engine_idx": pl.Int64,  # point attribute sagellm.engine_idx
        "run_id": CAT,
        "source_file": CAT,
        "source_line": pl.Int64,
    }
)

RUNS = _schema(
    {
        "run_id": CAT,  # the manifest's, else the folder's or file's name
        "path": pl.String,  # the source as loaded
        "kind": CAT,  # run (a run folder), otlp (other JSON files), parquet
        "model": CAT,
        "engine_id": CAT,
        "workload": CAT,  # the workload's name
        "requests": pl.Int64,  # requests the workload sent (the manifest's count)
        "concurrency": pl.Int64,
        "rate": pl.Float64,  # requests per second, null for closed-loop workloads
        "max_tokens": pl.Int64,
        "prefix_caching": pl.Boolean,
        "started_at": TIME,
        "ended_at": TIME,  # null while running, or after a crash
        "problem": pl.String,  # why the source was skipped (errors="skip"), else null
    }
)
"""One row per loaded source: ``Frames.runs``; join it on ``run_id`` for the run's set-up."""

SCHEMAS: Mapping[str, pl.Schema] = {
    "spans": SPANS,
    "requests": REQUESTS,
    "steps": STEPS,
    "metrics": METRICS,
}
"""The four frames of every source (:meth:`~sagellm_obs.frames.Frames.frames`)."""

FRAME_NAMES: tuple[str, ...] = tuple(SCHEMAS)
"""Their names, in the order every frame map lists them."""

SAVED_SCHEMAS: Mapping[str, pl.Schema] = {**SCHEMAS, "kv_events": KV_EVENTS}
"""Every frame a :class:`~sagellm_obs.frames.Frames` carries by name: the four and
``kv_events``. ``Frames.save()`` and the Parquet cache write each of them."""

REQUIRED_COLUMNS: Mapping[str, tuple[str, ...]] = {
    name: tuple(schema.names()) for name, schema in SCHEMAS.items()
}
"""Per frame, the columns downstream code may rely on (all of its schema)."""


class SchemaError(ValueError):
    """A frame lacks a required column or has one with the wrong dtype."""


def check_schema(df: pl.DataFrame, schema: pl.Schema, name: str = "frame") -> pl.DataFrame:
    """Check that ``df`` has every column of ``schema`` with exactly its dtype.

    Extra columns are allowed. Returns ``df`` so the check can be chained.

    Args:
        df: The frame to check.
        schema: The declared schema, e.g. :data:`SPANS`.
        name: Name of the frame for the message.

    Raises:
        SchemaError: Naming every missing and every mistyped column.
    """
    have = df.schema
    missing = [col for col in schema.names() if col not in have]
    wrong = [
        f"{col} is {have[col]}, expected {dtype}"
        for col, dtype in schema.items()
        if col in have and have[col] != dtype
    ]
    if missing or wrong:
        parts = []
        if missing:
            parts.append("missing column(s): " + ", ".join(missing))
        if wrong:
            parts.append("wrong dtype: " + "; ".join(wrong))
        raise SchemaError(f"{name} frame does not match its schema: " + " | ".join(parts))
    return df


def as_text(dtype: PolarsDataType) -> PolarsDataType:
    """``dtype`` with every Categorical in it (nested ones too) as String: the dtype a column had
    before the frames stored low-cardinality text as :data:`CAT` (Parquet frames saved then)."""
    if isinstance(dtype, pl.Categorical):
        return pl.String()
    if isinstance(dtype, pl.List):
        return pl.List(as_text(dtype.inner))
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: as_text(f.dtype) for f in dtype.fields})
    return dtype


def empty(schema: pl.Schema) -> pl.DataFrame:
    """An empty frame with exactly ``schema``."""
    return pl.DataFrame(schema=schema)


def conform(df: FrameT, schema: pl.Schema) -> FrameT:
    """``df`` with ``schema``'s columns in order, missing ones added as nulls, others cast.

    Casts are strict: a value that cannot be represented raises (a loader bug, not bad input).
    Extra columns are dropped. Works on a LazyFrame too (the casts run when it is collected).
    """
    have = df.collect_schema() if isinstance(df, pl.LazyFrame) else df.schema
    return df.select(
        [
            (pl.col(col) if col in have else pl.lit(None)).cast(dtype).alias(col)
            for col, dtype in schema.items()
        ]
    )


def attribute(key: str, dtype: PolarsDataType = pl.String) -> pl.Expr:
    """An expression reading one attribute from ``spans.attributes`` (null when absent).

    Example:
        >>> spans.select(attribute("gen_ai.request.max_tokens", pl.Int64))  # doctest: +SKIP
    """
    value = (
        pl.col("attributes")
        .list.eval(pl.element().filter(pl.element().struct.field("key") == key))
        .list.first()
        .struct.field("value")
    )
    if dtype == pl.Boolean:
        return (value == "true").alias(key)
    return value.cast(dtype, strict=False).alias(key)


# --- Frames derived from ``spans`` (sagellm_obs.frames.traces) ---------------------------------
CALL_TREE = _schema(
    {
        "trace_id": pl.String,
        "span_id": pl.String,
        "parent_span_id": pl.String,  # null for roots (and spans whose parent is not loaded)
        "depth": pl.Int64,  # 0 for roots
        "position": pl.Int64,  # 0-based rank in the trace's depth-first order
        "name": pl.String,
        "category": pl.String,  # one of sagellm_obs.frames.traces.CATEGORIES
        "kind": pl.String,
        "service_name": pl.String,
        "start": TIME,
        "end": TIME,
        "offset_s": pl.Float64,  # start - the earliest start in the trace (the root's, normally)
        "duration_s": pl.Float64,
        "self_s": pl.Float64,  # duration not covered by any child span
        "children": pl.Int64,  # direct children
        "status_code": pl.String,
        "error_type": pl.String,
        "cancelled": pl.Boolean,
        "request_id": pl.String,
        "operation": pl.String,
        "model": pl.String,
        "input_tokens": pl.Int64,
        "output_tokens": pl.Int64,
    }
)
"""One row per span, in depth-first order: :func:`sagellm_obs.frames.call_tree`."""

TIME_BREAKDOWN = _schema(
    {
        "trace_id": pl.String,
        "request_id": pl.String,  # the engine request's id
        "client_span_id": pl.String,
        "server_span_id": pl.String,  # null when the client reached the engine without HTTP
        "engine_span_id": pl.String,
        "client_name": pl.String,  # the client span's name, e.g. "chat tiny-llama"
        "operation": pl.String,
        "model": pl.String,
        "stream": pl.Boolean,
        "client_start": TIME,
        "client_s": pl.Float64,  # client span duration: the call as the application saw it
        "server_s": pl.Float64,  # HTTP server span duration
        "engine_s": pl.Float64,  # engine request span duration (arrival -> final output)
        "queue_s": pl.Float64,
        "prefill_s": pl.Float64,
        "decode_s": pl.Float64,
        "network_s": pl.Float64,  # client - server (- engine without a server span)
        "server_overhead_s": pl.Float64,  # server - engine
        "engine_other_s": pl.Float64,  # engine - queue - prefill - decode
        "input_tokens": pl.Int64,
        "output_tokens": pl.Int64,
    }
)
"""One row per engine request with a client span: :func:`sagellm_obs.frames.time_breakdown`."""
