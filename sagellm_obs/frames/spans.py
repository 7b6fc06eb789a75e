"""Decoded OTLP trace lines → the ``spans`` frame; request spans → the ``requests`` frame.

Lines are exploded resource → scope → span with polars; known attributes become typed columns
(:data:`ATTRIBUTE_COLUMNS`, first key present wins), the others stay in ``attributes``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import polars as pl

from sagellm_obs import semconv as sc
from sagellm_obs.frames import attrs
from sagellm_obs.frames.schemas import EVENTS, REQUESTS, SPANS, TIME, conform

KIND_NAMES: Mapping[int, str] = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}
STATUS_NAMES: Mapping[int, str] = {0: "UNSET", 1: "OK", 2: "ERROR"}

S, INT, F, B = pl.String(), pl.Int64(), pl.Float64(), pl.Boolean()

ATTRIBUTE_COLUMNS: Mapping[str, tuple[pl.DataType, tuple[str, ...]]] = {
    "request_id": (S, (sc.SAGELLM_REQUEST_ID, sc.GEN_AI_REQUEST_ID)),
    "protocol_trace_id": (S, (sc.SAGELLM_TRACE_ID,)),
    "engine_idx": (INT, (sc.SAGELLM_ENGINE_IDX,)),
    "operation": (S, (sc.GEN_AI_OPERATION_NAME,)),
    "model": (S, (sc.GEN_AI_REQUEST_MODEL, sc.GEN_AI_RESPONSE_MODEL)),
    "input_tokens": (INT, (sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_PROMPT_TOKENS_DEPRECATED)),
    "output_tokens": (
        INT,
        (sc.GEN_AI_USAGE_OUTPUT_TOKENS, sc.GEN_AI_USAGE_COMPLETION_TOKENS_DEPRECATED),
    ),
    "cached_tokens": (
        INT,
        (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, sc.SAGELLM_CACHED_PROMPT_TOKENS),
    ),
    "ttft_s": (F, (sc.SAGELLM_TTFT, sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN)),
    "queue_s": (F, (sc.SAGELLM_QUEUE, sc.GEN_AI_LATENCY_TIME_IN_QUEUE)),
    "prefill_s": (F, (sc.SAGELLM_PREFILL, sc.GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL)),
    "decode_s": (F, (sc.SAGELLM_DECODE, sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE)),
    "inference_s": (F, (sc.GEN_AI_LATENCY_TIME_IN_MODEL_INFERENCE,)),
    "e2e_s": (F, (sc.SAGELLM_E2E, sc.GEN_AI_LATENCY_E2E)),
    "tpot_s": (F, (sc.SAGELLM_TPOT,)),
    "finish_reason": (S, (sc.GEN_AI_RESPONSE_FINISH_REASONS,)),  # first of the array
    "error_type": (S, (sc.ERROR_TYPE,)),
    "stream": (B, (sc.GEN_AI_REQUEST_STREAM, sc.SAGELLM_STREAM)),
    "cancelled": (B, (sc.SAGELLM_CANCELLED,)),
}
"""Typed span columns and the attribute keys they read, in priority order."""

KEPT_IN_ATTRIBUTES = frozenset({sc.GEN_AI_RESPONSE_MODEL})
"""Keys read into a typed column only as a fallback: they stay in ``attributes`` too."""

_LOOKUP_KEYS = sorted(
    {key for _, keys in ATTRIBUTE_COLUMNS.values() for key in keys}
    | {sc.SAGELLM_ENGINE_ID, sc.SAGELLM_RUN_ID}
)

CONSUMED = frozenset(_LOOKUP_KEYS) - KEPT_IN_ATTRIBUTES
"""Attribute keys that are not repeated in ``attributes``."""

_TRACE_ID = r"^[0-9a-fA-F]{32}$"
_SPAN_ID = r"^[0-9a-fA-F]{16}$"

OnBad = Callable[[str, int, str], None]
"""``on_bad(source_file, line, message)``: raise or record a malformed record."""


CLIENT_COLUMNS = (
    "client_start",
    "client_ttft_s",
    "client_e2e_s",
    "workload",
    "family",
    "workload_phase",
)
"""The requests frame's columns that come from client rows (``requests-client`` files)."""

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def client_columns(client: FrameT) -> FrameT:
    """One row per request id of client rows (the last of a repeated id wins): ``request_id``
    and :data:`CLIENT_COLUMNS`."""
    return (
        client.filter(pl.col("request_id").is_not_null())
        .unique("request_id", keep="last", maintain_order=True)
        .select(
            "request_id",
            pl.col("client_start_unix_nano").cast(TIME).alias("client_start"),
            # the requests frame's dtypes (workload names are Categorical), so a join that
            # coalesces them with a frame's own columns keeps them
            *(pl.col(col).cast(REQUESTS[col]) for col in CLIENT_COLUMNS[1:]),
        )
    )


def build_spans(lines: pl.DataFrame, on_bad: OnBad) -> pl.DataFrame:
    """The ``spans`` frame of decoded OTLP lines (``OTLP_LINE`` + source_line + source_file).

    Spans without a trace id, span id or valid start time are passed to ``on_bad`` and dropped.
    """
    rs = (
        lines.lazy()
        .select("source_file", "source_line", "resourceSpans")
        .filter(pl.col("resourceSpans").list.len() > 0)
        .explode("resourceSpans")
        .unnest("resourceSpans")
    )
    res = pl.col("resource").struct.field("attributes")
    flat = (
        rs.with_columns(
            attrs.as_dtype(attrs.lookup(res, "service.name"), S).alias("service_name"),
            attrs.as_dtype(attrs.lookup(res, sc.RESOURCE_ENGINE_ID), S).alias("_res_engine"),
            attrs.as_dtype(attrs.lookup(res, sc.RESOURCE_RUN_ID), S).alias("_res_run"),
        )
        .drop("resource")
        .explode("scopeSpans")
        .unnest("scopeSpans")
        .with_columns(pl.col("scope").struct.field("name").alias("scope"))
        .explode("spans")
        .filter(pl.col("spans").is_not_null())
        .unnest("spans")
        .collect()
    )
    flat = _drop_bad(flat, on_bad)
    if flat.is_empty():
        return pl.DataFrame(schema=SPANS)
    a = pl.col("attributes")
    start = pl.col("startTimeUnixNano").cast(pl.Int64)
    end = pl.coalesce(pl.col("endTimeUnixNano").cast(pl.Int64, strict=False), start)
    # Look each key up once, then type the found values.
    lookups = _lookups(flat)
    typed = [
        pl.coalesce([attrs.as_dtype(pl.col(f"_v:{key}"), dtype) for key in keys]).alias(col)
        for col, (dtype, keys) in ATTRIBUTE_COLUMNS.items()
    ]
    engine = attrs.as_dtype(pl.col(f"_v:{sc.SAGELLM_ENGINE_ID}"), S)
    run = attrs.as_dtype(pl.col(f"_v:{sc.SAGELLM_RUN_ID}"), S)
    event = pl.element().struct
    out = (
        flat.lazy()
        .with_columns(lookups)
        .select(
            pl.col("traceId").alias("trace_id"),
            pl.col("spanId").alias("span_id"),
            pl.when(pl.col("parentSpanId") != "")
            .then(pl.col("parentSpanId"))
            .alias("parent_span_id"),
            pl.col("name").fill_null(""),
            pl.col("kind")
            .fill_null(0)
            .replace_strict(KIND_NAMES, default="UNSPECIFIED")
            .alias("kind"),
            start.cast(TIME).alias("start"),
            end.cast(TIME).alias("end"),
            ((end - start) / 1e9).alias("duration_s"),
            pl.col("status")
            .struct.field("code")
            .fill_null(0)
            .replace_strict(STATUS_NAMES, default="UNSET")
            .alias("status_code"),
            pl.col("status").struct.field("message").alias("status_message"),
            "service_name",
            pl.coalesce(engine, "_res_engine").alias("engine_id"),
            pl.coalesce("_res_run", run).alias("run_id"),
            "scope",
            *typed,
            pl.col("events")
            .list.eval(
                pl.struct(
                    event.field("name"),
                    event.field("timeUnixNano")
                    .cast(pl.Int64, strict=False)
                    .cast(TIME)
                    .alias("time"),
                )
            )
            .fill_null(pl.lit([], dtype=EVENTS))
            .alias("events"),
            attrs.rest(a, sorted(CONSUMED)).alias("attributes"),
            "source_file",
            "source_line",
        )
    )
    return conform(out.collect(), SPANS)


def _lookups(flat: pl.DataFrame) -> list[pl.Expr]:
    """A ``_v:{key}`` column per key of :data:`_LOOKUP_KEYS`: its first value in ``attributes``.

    Searching a key is a pass over every span's list, ~25 of them. Our request spans list the
    same keys in the same order (the writer's template), then their optional ones: the keys that
    every span with attributes has at the same places at the start of its list (a prefix of the
    first such span's keys) are read at their place (a gather). In such a list the first
    occurrence of a key of the prefix is where the prefix has it first, and any other key comes
    after the prefix, where it is still searched. Without a shared prefix every key is searched.
    """
    a = pl.col("attributes")
    key = pl.element().struct.field("key")
    first = flat.lazy().filter(a.list.len() > 0).select(a.list.eval(key)).head(1).collect()
    prefix: list[str] = first.item(0, 0).to_list() if first.height else []
    if prefix:
        none = (a.list.len() == 0) | a.is_null()
        # Usually every list starts with the whole prefix: one comparison of lists says so.
        whole = a.list.head(len(prefix)).list.eval(key) == pl.lit(pl.Series([prefix])).first()
        if flat.select((none | whole.fill_null(False)).all()).item():
            return _prefix_lookups(prefix)
        agree = flat.select(
            ((a.list.get(i, null_on_oob=True).struct.field("key") == name).fill_null(False) | none)
            .all()
            .alias(str(i))
            for i, name in enumerate(prefix)
        ).row(0)
        prefix = prefix[: next((i for i, ok in enumerate(agree) if not ok), len(prefix))]
    return _prefix_lookups(prefix)


def _prefix_lookups(prefix: list[str]) -> list[pl.Expr]:
    """The ``_v:{key}`` lookups, reading the keys of ``prefix`` at their places."""
    a = pl.col("attributes")
    exprs = []
    for name in _LOOKUP_KEYS:
        if name in prefix:
            value = a.list.get(prefix.index(name), null_on_oob=True).struct.field("value")
        else:
            value = attrs.lookup(a.list.slice(len(prefix)) if prefix else a, name)
        exprs.append(value.alias(f"_v:{name}"))
    return exprs


def _drop_bad(flat: pl.DataFrame, on_bad: OnBad) -> pl.DataFrame:
    start_ok = pl.col("startTimeUnixNano").cast(pl.Int64, strict=False).is_not_null()
    parent = pl.col("parentSpanId")
    # OTLP/JSON ids are lowercase hex (W3C); upper case is accepted, anything else is not an id.
    problem = (
        pl.when(pl.col("traceId").is_null() | (pl.col("traceId") == ""))
        .then(pl.lit("span without traceId"))
        .when(pl.col("spanId").is_null() | (pl.col("spanId") == ""))
        .then(pl.lit("span without spanId"))
        .when(~pl.col("traceId").str.contains(_TRACE_ID))
        .then(pl.lit("traceId is not 32 hex digits: ") + pl.col("traceId").str.slice(0, 40))
        .when(~pl.col("spanId").str.contains(_SPAN_ID))
        .then(pl.lit("spanId is not 16 hex digits: ") + pl.col("spanId").str.slice(0, 40))
        .when(parent.is_not_null() & (parent != "") & ~parent.str.contains(_SPAN_ID))
        .then(pl.lit("parentSpanId is not 16 hex digits: ") + parent.str.slice(0, 40))
        .when(~start_ok)
        .then(pl.lit("span without a valid startTimeUnixNano"))
    )
    checked = flat.with_columns(problem.alias("_problem"))
    bad = checked.filter(pl.col("_problem").is_not_null())
    for file, line, msg in bad.select("source_file", "source_line", "_problem").iter_rows():
        on_bad(file, line, msg)
    return checked.filter(pl.col("_problem").is_null()).drop("_problem")


TTFT_PHASES = ("queue_s", "prefill_s")
"""The engine phases inside TTFT; the rest of it is the frontend's (:func:`frontend_share`)."""


def frontend_share(total: str, phases: Sequence[str]) -> pl.Expr:
    """The engine frontend's share of the duration ``total``: ``total`` minus the engine phases
    it holds (a missing phase counts 0), not clipped (a negative value means clocks disagree).

    The frontend's time is what the phase spans do not cover: from arrival until EngineCore
    queues the request (tokenisation, the hand-off) and the outputs' way back (detokenisation,
    the first token reaching the frontend). The one definition behind ``requests.frontend_s``
    (of TTFT, so TTFT = frontend + queue + prefill) and the time breakdown's ``engine_other_s``
    (of the engine span: :func:`sagellm_obs.frames.time_breakdown`).
    """
    return pl.col(total) - pl.sum_horizontal(*(pl.col(p).fill_null(0.0) for p in phases))


def build_requests(spans: pl.DataFrame, client: pl.DataFrame | None = None) -> pl.DataFrame:
    """The ``requests`` frame of a ``spans`` frame (and client timings): see :func:`requests_of`."""
    lazy_client = client.lazy() if client is not None and client.height else None
    return requests_of(spans.lazy(), lazy_client).collect()


VLLM_FIGURES: Mapping[str, str] = {
    "vllm_ttft_s": "ttft_s",
    "vllm_queue_s": "queue_s",
    "vllm_prefill_s": "prefill_s",
    "vllm_decode_s": "decode_s",
    "vllm_e2e_s": "e2e_s",
    "vllm_input_tokens": "input_tokens",
    "vllm_output_tokens": "output_tokens",
}
"""The ``requests`` columns that hold vLLM's own figures of a request, and the column of ours
each sits beside (see :func:`requests_of` and docs/vllm-tracing.md for where they differ)."""


def _figure(col: str) -> pl.Expr:
    # vLLM's span always has gen_ai.latency.e2e; its duration is the fallback, as for ours.
    return pl.coalesce("e2e_s", "duration_s") if col == "e2e_s" else pl.col(col)


def requests_of(
    spans: pl.LazyFrame, client: pl.LazyFrame | None = None, *, vllm_spans: bool | None = None
) -> pl.LazyFrame:
    """One row per request: our request span (``source="sagellm"``) or vLLM's ``llm_request``.

    A request span is a span named ``llm_request``, or a SERVER span carrying both
    ``gen_ai.operation.name`` and a request id. When vLLM's tracing was on
    (``configure(vllm_tracing=True)``) vLLM's ``llm_request`` span is a child of ours: it does
    not make a row of its own, its figures fill our row's ``vllm_*`` columns
    (:data:`VLLM_FIGURES`, and ``vllm_span_id``). A vLLM span with no span of ours as its parent
    (a trace of vLLM alone) is a row of its own, ``source="vllm"``.

    ``vllm_spans`` says whether ``spans`` holds an ``llm_request`` span; None (the default) finds
    out (:func:`has_vllm_spans`, one read of the ``name`` column). Without one the frame is the
    same but built without the joins that fold vLLM's spans in, which read and hash every
    request's ids (three quarters of a per-minute TTFT query over the columnar copies).

    Missing ``tpot_s`` is derived as ``decode_s / (output_tokens - 1)``, missing ``e2e_s`` as the
    span's duration and missing ``inference_s`` as ``prefill_s + decode_s``; ``frontend_s`` is
    TTFT's share outside queue and prefill (:func:`frontend_share`) and ``cached_prompt_share`` =
    cached / input tokens. ``cancelled`` is false on our spans unless set (vLLM does not say).
    Client timings (``client``: ``CLIENT_LINE`` rows) are joined on ``request_id``; the last line
    wins for a repeated id. Sorted by arrival.
    """
    is_vllm = pl.col("name") == sc.VLLM_REQUEST_SPAN_NAME
    is_ours = (
        (pl.col("kind") == "SERVER")
        & pl.col("operation").is_not_null()
        & pl.col("request_id").is_not_null()
        & ~is_vllm
    )
    out_tokens = pl.col("output_tokens")
    if vllm_spans is None:
        vllm_spans = has_vllm_spans(spans)
    if vllm_spans:
        picked = spans.filter(is_vllm | is_ours).with_columns(
            pl.when(is_vllm).then(pl.lit("vllm")).otherwise(pl.lit("sagellm")).alias("source")
        )
        rows = _with_vllm_spans(
            picked.filter(pl.col("source") == "sagellm"), picked.filter(pl.col("source") == "vllm")
        )
    else:  # the vLLM columns are added as nulls by ``conform``
        rows = spans.filter(is_ours).with_columns(pl.lit("sagellm").alias("source"))
    req = rows.with_columns(
        pl.col("start").alias("arrival"),
        pl.coalesce(
            "tpot_s",
            pl.when(out_tokens > 1).then(pl.col("decode_s") / (out_tokens - 1)),
        ).alias("tpot_s"),
        pl.coalesce("e2e_s", "duration_s").alias("e2e_s"),
        pl.coalesce("inference_s", pl.col("prefill_s") + pl.col("decode_s")).alias("inference_s"),
        pl.when(pl.col("source") == "sagellm")
        .then(pl.col("cancelled").fill_null(False))
        .otherwise(pl.col("cancelled"))
        .alias("cancelled"),
        pl.when(pl.col("input_tokens") > 0)
        .then(pl.col("cached_tokens") / pl.col("input_tokens"))
        .alias("cached_prompt_share"),
    ).with_columns(
        frontend_share("ttft_s", TTFT_PHASES).alias("frontend_s"),
    )
    if client is not None:
        req = req.join(client_columns(client), on="request_id", how="left", maintain_order="left")
    return conform(req.sort("arrival", maintain_order=True), REQUESTS)


def _with_vllm_spans(ours: pl.LazyFrame, vllm: pl.LazyFrame) -> pl.LazyFrame:
    """Our request rows with the figures of vLLM's span under each, and vLLM's spans that are
    under none of ours as rows of their own."""
    # Semi and anti joins need no unique keys.
    keys = ours.select("trace_id", pl.col("span_id").alias("parent_span_id"))
    nested = vllm.join(keys, on=["trace_id", "parent_span_id"], how="semi")
    figures = nested.unique(
        ["trace_id", "parent_span_id"], keep="first", maintain_order=True
    ).select(
        "trace_id",
        pl.col("parent_span_id").alias("span_id"),
        pl.col("span_id").alias("vllm_span_id"),
        *(_figure(theirs).alias(col) for col, theirs in VLLM_FIGURES.items()),
    )
    alone = vllm.join(keys, on=["trace_id", "parent_span_id"], how="anti")
    return pl.concat(
        [
            ours.join(figures, on=["trace_id", "span_id"], how="left", maintain_order="left"),
            alone,
        ],
        how="diagonal_relaxed",
    )


def has_vllm_spans(spans: pl.LazyFrame) -> bool:
    """Whether ``spans`` holds a vLLM ``llm_request`` span (reads the ``name`` column only: a few
    ms a million spans of the columnar copies)."""
    found = spans.select((pl.col("name") == sc.VLLM_REQUEST_SPAN_NAME).any()).collect().item()
    return bool(found)
