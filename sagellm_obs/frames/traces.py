"""Joined traces as frames: the call tree of a trace, and where each request's time went.

An application's trace runs from its own calls down to the engine's phases::

    Assistant.answer                      application   (@trace_protocol)
      chat tiny-llama                     model call    (instrument_openai: CLIENT span)
        POST /v1/chat/completions         server        (sagellm-obs serve: HTTP SERVER span)
          chat tiny-llama                 engine request
            queue / prefill / decode      engine phases
      execute_tool get_weather            tool call     (tool_span)

:func:`call_tree` lays such traces out one span per row, depth first, with each span's
:data:`CATEGORIES` value, its offset from the start of its trace and its self time.
:func:`time_breakdown` follows every engine request up to the client span that caused it and
splits the client's duration into network, server overhead and the engine's parts.

Both take the ``spans`` frame of :func:`sagellm_obs.frames.load` and return frames with declared
schemas (:data:`~sagellm_obs.frames.schemas.CALL_TREE`,
:data:`~sagellm_obs.frames.schemas.TIME_BREAKDOWN`); an empty input gives an empty frame.

Example:
    >>> from sagellm_obs.frames import call_tree, load, time_breakdown
    >>> run = load("sagellm-runs/20260101T000000Z-abc123")  # doctest: +SKIP
    >>> call_tree(run.spans, trace_id="4bf92f3577b34da6a3ce929d0e0e4736")  # doctest: +SKIP
    >>> time_breakdown(run.spans)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from sagellm_obs import semconv as sc
from sagellm_obs.frames.schemas import (
    CALL_TREE,
    SPANS,
    TIME_BREAKDOWN,
    attribute,
    check_schema,
    conform,
    empty,
)
from sagellm_obs.frames.spans import frontend_share

__all__ = [
    "CATEGORIES",
    "CATEGORY_APPLICATION",
    "CATEGORY_ENGINE_REQUEST",
    "CATEGORY_MODEL_CALL",
    "CATEGORY_OTHER",
    "CATEGORY_SERVER",
    "CATEGORY_TOOL_CALL",
    "call_tree",
    "span_category",
    "time_breakdown",
]

CATEGORY_APPLICATION: Final = "application"
CATEGORY_MODEL_CALL: Final = "model call"
CATEGORY_TOOL_CALL: Final = "tool call"
CATEGORY_SERVER: Final = "server"
CATEGORY_ENGINE_REQUEST: Final = "engine request"
CATEGORY_OTHER: Final = "other"
CATEGORIES: Final = (
    CATEGORY_APPLICATION,
    CATEGORY_MODEL_CALL,
    CATEGORY_TOOL_CALL,
    CATEGORY_SERVER,
    CATEGORY_ENGINE_REQUEST,
    *sc.PHASE_SPANS,
    CATEGORY_OTHER,
)
"""Span categories, from the application down to the engine's phases (``queue``, ``prefill``,
``decode``), then ``other``."""

_MAX_DEPTH: Final = 256
"""Deeper spans than this are laid out as roots (a guard against malformed parent links)."""

_NEEDED: Final = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "start",
    "end",
    "duration_s",
    "status_code",
    "service_name",
    "request_id",
    "operation",
    "model",
    "input_tokens",
    "output_tokens",
    "queue_s",
    "prefill_s",
    "decode_s",
    "error_type",
    "stream",
    "cancelled",
    "attributes",
)
_INPUT = pl.Schema({c: SPANS[c] for c in _NEEDED})


def span_category() -> pl.Expr:
    """The category of each row of a ``spans`` frame, before looking at parents.

    In order: an engine request (vLLM's ``llm_request`` span, or a SERVER span with a GenAI
    operation and a request id); a tool call (``gen_ai.operation.name`` is ``execute_tool``); a
    model call (a CLIENT span with a GenAI operation); a server (any other SERVER span, e.g. the
    HTTP span); an application call (a span with ``code.function.name``, as
    :func:`~sagellm_obs.app.trace_protocol` records, or an INTERNAL root span); else ``other``.
    :func:`call_tree` then names the engine's ``queue``/``prefill``/``decode`` children by phase.
    """
    kind = pl.col("kind")
    operation = pl.col("operation")
    is_request = (pl.col("name") == sc.VLLM_REQUEST_SPAN_NAME) | (
        (kind == "SERVER") & operation.is_not_null() & pl.col("request_id").is_not_null()
    )
    is_app = attribute(sc.CODE_FUNCTION_NAME).is_not_null() | (
        kind.is_in(["INTERNAL", "UNSPECIFIED"]) & pl.col("parent_span_id").is_null()
    )
    return (
        pl.when(is_request)
        .then(pl.lit(CATEGORY_ENGINE_REQUEST))
        .when(operation == sc.OP_EXECUTE_TOOL)
        .then(pl.lit(CATEGORY_TOOL_CALL))
        .when((kind == "CLIENT") & operation.is_not_null())
        .then(pl.lit(CATEGORY_MODEL_CALL))
        .when(kind == "SERVER")
        .then(pl.lit(CATEGORY_SERVER))
        .when(is_app)
        .then(pl.lit(CATEGORY_APPLICATION))
        .otherwise(pl.lit(CATEGORY_OTHER))
        .alias("category")
    )


def _select_traces(spans: pl.DataFrame, trace_id: str | Sequence[str] | None) -> pl.DataFrame:
    check_schema(spans, _INPUT, "spans")
    if trace_id is None:
        return spans
    ids = [trace_id] if isinstance(trace_id, str) else list(trace_id)
    return spans.filter(pl.col("trace_id").is_in(ids))


def _categorised(spans: pl.DataFrame) -> pl.DataFrame:
    """Unique spans with ``category`` (phases resolved against their parent) and ``ns`` times."""
    base = (
        spans.unique(["trace_id", "span_id"], keep="first", maintain_order=True)
        .with_columns(
            span_category(),
            pl.col("start").dt.epoch("ns").alias("_start_ns"),
            pl.col("end").dt.epoch("ns").alias("_end_ns"),
        )
        .drop("attributes")
    )
    parents = base.select(
        "trace_id",
        pl.col("span_id").alias("parent_span_id"),
        pl.col("category").alias("_parent_category"),
    )
    with_parent = base.join(parents, on=["trace_id", "parent_span_id"], how="left")
    is_phase = (
        pl.col("name").is_in(list(sc.PHASE_SPANS))
        & (pl.col("kind") == "INTERNAL")
        & (pl.col("_parent_category") == CATEGORY_ENGINE_REQUEST)
    )
    return with_parent.with_columns(
        pl.when(is_phase).then(pl.col("name")).otherwise(pl.col("category")).alias("category"),
        pl.col("_parent_category").is_not_null().alias("_has_parent"),
    ).drop("_parent_category")


def _sort_key() -> pl.Expr:
    """A fixed-width text key per span: start (ns) then span id; parents' keys prefix theirs."""
    start = pl.col("_start_ns").clip(lower_bound=0).cast(pl.String).str.pad_start(20, "0")
    span = pl.col("span_id").fill_null("").str.slice(0, 16).str.pad_end(16, " ")
    return pl.concat_str([start, span])


def _layout(nodes: pl.DataFrame) -> pl.DataFrame:
    """``trace_id``, ``span_id``, ``depth`` and a depth-first ``_path`` key for every span.

    Roots are spans without a parent or whose parent is not in the frame; spans never reached
    from a root (a parent cycle) are laid out as roots.
    """
    keyed = nodes.select("trace_id", "span_id", "parent_span_id", _sort_key().alias("_key"))
    is_root = nodes["_has_parent"].not_()
    level = keyed.filter(is_root).select(
        "trace_id", "span_id", pl.lit(0, pl.Int64).alias("depth"), pl.col("_key").alias("_path")
    )
    remaining = keyed.filter(~is_root)
    placed = [level]
    depth = 0
    while remaining.height and level.height and depth < _MAX_DEPTH:
        depth += 1
        parents = level.select(
            "trace_id",
            pl.col("span_id").alias("parent_span_id"),
            pl.col("_path").alias("_parent_path"),
        )
        found = remaining.join(parents, on=["trace_id", "parent_span_id"], how="inner")
        level = found.select(
            "trace_id",
            "span_id",
            pl.lit(depth, pl.Int64).alias("depth"),
            (pl.col("_parent_path") + pl.col("_key")).alias("_path"),
        )
        remaining = remaining.join(level, on=["trace_id", "span_id"], how="anti")
        placed.append(level)
    if remaining.height:
        placed.append(
            remaining.select(
                "trace_id",
                "span_id",
                pl.lit(0, pl.Int64).alias("depth"),
                pl.col("_key").alias("_path"),
            )
        )
    return pl.concat(placed)


def _covered_ns(nodes: pl.DataFrame) -> pl.DataFrame:
    """Per parent span: nanoseconds covered by the union of its children (clipped to it)."""
    parent = nodes.select(
        "trace_id",
        pl.col("span_id").alias("parent_span_id"),
        pl.col("_start_ns").alias("_p_start"),
        pl.col("_end_ns").alias("_p_end"),
    )
    group = ["trace_id", "parent_span_id"]
    kids = (
        nodes.filter(pl.col("_has_parent"))
        .select(*group, "_start_ns", "_end_ns")
        .join(parent, on=group, how="inner")
        .select(
            *group,
            pl.max_horizontal("_start_ns", "_p_start").alias("s"),
            pl.min_horizontal("_end_ns", "_p_end").alias("e"),
        )
        .filter(pl.col("e") > pl.col("s"))
        .sort([*group, "s"])
    )
    # Sorted by parent: number the parents (a window over one integer beats one over two strings).
    first = pl.any_horizontal(*(pl.col(c).ne_missing(pl.col(c).shift(1)) for c in group))
    # A child starts a new block of overlapping children when it starts after every earlier
    # child (of the same parent) has ended; blocks are numbered across the whole frame.
    reach = pl.col("e").cum_max().shift(1).over("_parent")
    blocks = (
        kids.with_columns(first.cum_sum().cast(pl.Int64).alias("_parent"))
        .with_columns(reach.alias("_reach"))
        .with_columns(
            (pl.col("_reach").is_null() | (pl.col("s") > pl.col("_reach")))
            .cum_sum()
            .alias("_block")
        )
    )
    covered = (
        blocks.group_by("_block")
        .agg(
            pl.col("_parent").first(),
            (pl.col("e").max() - pl.col("s").min()).alias("_ns"),
        )
        .group_by("_parent")
        .agg(pl.col("_ns").sum().alias("_covered_ns"))
    )
    ids = blocks.select(*group, "_parent").unique("_parent")
    return ids.join(covered, on="_parent").select(
        "trace_id", pl.col("parent_span_id").alias("span_id"), "_covered_ns"
    )


def call_tree(spans: pl.DataFrame, trace_id: str | Sequence[str] | None = None) -> pl.DataFrame:
    """The call tree of one trace, of several, or of every trace in ``spans``.

    Args:
        spans: The ``spans`` frame (:func:`sagellm_obs.frames.load`).
        trace_id: A trace id (32 hex digits), several, or None for every trace.

    Returns:
        One row per span with the :data:`~sagellm_obs.frames.schemas.CALL_TREE` columns. Traces
        come in order of their first span; within a trace, spans come depth first (a parent
        before its children, siblings by start time), ``position`` counts them from 0.
        ``category`` is one of :data:`CATEGORIES` (see :func:`span_category`; ``queue``,
        ``prefill`` and ``decode`` for the phase spans under an engine request). ``offset_s``
        is the time from the trace's earliest start (its root's, in a well-formed trace);
        ``self_s`` is the part of the span's duration that none of its children covers
        (overlapping children count once). A span whose parent is not in ``spans`` is a root
        (depth 0); a span loaded twice is kept once.

    Raises:
        SchemaError: ``spans`` lacks a column of the ``spans`` schema that this needs.
    """
    selected = _select_traces(spans, trace_id)
    if selected.is_empty():
        return empty(CALL_TREE)
    nodes = _categorised(selected)
    layout = _layout(nodes)
    children = (
        nodes.filter(pl.col("_has_parent"))
        .group_by("trace_id", "parent_span_id")
        .agg(pl.len().cast(pl.Int64).alias("children"))
        .rename({"parent_span_id": "span_id"})
    )
    keys = ["trace_id", "span_id"]
    tree = (
        nodes.join(layout, on=keys, how="left")
        .join(children, on=keys, how="left")
        .join(_covered_ns(nodes), on=keys, how="left")
        .with_columns(
            pl.col("_start_ns").min().over("trace_id").alias("_trace_start"),
            pl.col("children").fill_null(0),
            pl.when(pl.col("_has_parent")).then(pl.col("parent_span_id")).alias("parent_span_id"),
        )
        .sort("_trace_start", "trace_id", "_path")
        .with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).over("trace_id").alias("position"),
            ((pl.col("_start_ns") - pl.col("_trace_start")) / 1e9).alias("offset_s"),
            (
                pl.col("duration_s") - pl.col("_covered_ns").fill_null(0).cast(pl.Float64) / 1e9
            ).alias("self_s"),
        )
    )
    return conform(tree, CALL_TREE)


def _ancestors(tree: pl.DataFrame) -> pl.DataFrame:
    """Per engine request: its nearest model-call ancestor and the nearest server below that."""
    links = tree.select(
        "trace_id",
        pl.col("span_id").alias("_cur"),
        pl.col("parent_span_id").alias("_next"),
        pl.col("category").alias("_cat"),
    )
    walk = tree.filter(pl.col("category") == CATEGORY_ENGINE_REQUEST).select(
        "trace_id",
        pl.col("span_id").alias("engine_span_id"),
        pl.col("parent_span_id").alias("_cur"),
        pl.lit(None, pl.String).alias("client_span_id"),
        pl.lit(None, pl.String).alias("server_span_id"),
    )
    for _ in range(_MAX_DEPTH):
        active = pl.col("_cur").is_not_null() & pl.col("client_span_id").is_null()
        if walk.is_empty() or not walk.select(active.any()).item():
            break
        step = walk.join(links, on=["trace_id", "_cur"], how="left")
        walk = step.select(
            "trace_id",
            "engine_span_id",
            pl.when(active).then(pl.col("_next")).otherwise(pl.col("_cur")).alias("_cur"),
            pl.when(active & (pl.col("_cat") == CATEGORY_MODEL_CALL))
            .then(pl.col("_cur"))
            .otherwise(pl.col("client_span_id"))
            .alias("client_span_id"),
            pl.when(
                active & (pl.col("_cat") == CATEGORY_SERVER) & pl.col("server_span_id").is_null()
            )
            .then(pl.col("_cur"))
            .otherwise(pl.col("server_span_id"))
            .alias("server_span_id"),
        )
    return walk.filter(pl.col("client_span_id").is_not_null()).drop("_cur")


def time_breakdown(
    spans: pl.DataFrame, trace_id: str | Sequence[str] | None = None
) -> pl.DataFrame:
    """Where the time of each model call went: network, server, engine queue/prefill/decode.

    For every engine request whose trace holds the client span that caused it (its nearest
    ``model call`` ancestor, e.g. the span :func:`~sagellm_obs.app.instrument_openai` records),
    the durations of the client span, of the HTTP ``server`` span between them (if any) and of
    the engine request span, with the engine's phases, and the parts that only the joined trace
    shows:

    * ``network_s`` = client - server: the network, (de)serialisation and the client library
      (client - engine when no server span sits between them);
    * ``server_overhead_s`` = server - engine: HTTP handling, validation, building the response;
    * ``engine_other_s`` = engine - queue - prefill - decode
      (:func:`~sagellm_obs.frames.spans.frontend_share`): the engine frontend (tokenisation,
      hand-off to the engine core, detokenisation).

    ``network_s + server_overhead_s + engine_other_s + queue_s + prefill_s + decode_s`` adds up
    to ``client_s``. The parts are not clipped: spans recorded by hosts whose clocks disagree can
    make one negative. The phases are the engine span's attributes, else its phase spans'
    durations.

    Args:
        spans: The ``spans`` frame (:func:`sagellm_obs.frames.load`).
        trace_id: Only these traces (one id or several); None for all.

    Returns:
        One row per such request, by client start, with the
        :data:`~sagellm_obs.frames.schemas.TIME_BREAKDOWN` columns.

    Raises:
        SchemaError: ``spans`` lacks a column of the ``spans`` schema that this needs.
    """
    tree = call_tree(spans, trace_id)
    if tree.is_empty():
        return empty(TIME_BREAKDOWN)
    found = _ancestors(tree)
    if found.is_empty():
        return empty(TIME_BREAKDOWN)
    selected = _select_traces(spans, trace_id).unique(
        ["trace_id", "span_id"], keep="first", maintain_order=True
    )
    out = _parts(_joined(found, selected, tree))
    return conform(out.sort("client_start", "engine_span_id", nulls_last=True), TIME_BREAKDOWN)


_ENGINE_COLUMNS = (
    "duration_s",
    "request_id",
    "operation",
    "model",
    "stream",
    "input_tokens",
    "output_tokens",
    "queue_s",
    "prefill_s",
    "decode_s",
)


def _joined(found: pl.DataFrame, selected: pl.DataFrame, tree: pl.DataFrame) -> pl.DataFrame:
    """Each (client, server, engine) triple with the three spans' columns side by side
    (``_engine_*``, ``_client_*``, ``_server_*``) and the phase spans' summed durations
    (``_span_<phase>_s``)."""

    def side(prefix: str, *columns: str) -> pl.DataFrame:
        return selected.select(
            "trace_id",
            pl.col("span_id").alias(f"{prefix}_span_id"),
            *(pl.col(c).alias(f"_{prefix}_{c}") for c in columns),
        )

    phases = tree.filter(pl.col("category").is_in(list(sc.PHASE_SPANS))).select(
        "trace_id",
        pl.col("parent_span_id").alias("engine_span_id"),
        "category",
        "duration_s",
    )
    out = (
        found.join(side("engine", *_ENGINE_COLUMNS), on=["trace_id", "engine_span_id"], how="left")
        .join(
            side("client", "name", "start", "duration_s", "operation", "model", "stream"),
            on=["trace_id", "client_span_id"],
            how="left",
        )
        .join(side("server", "duration_s"), on=["trace_id", "server_span_id"], how="left")
    )
    for phase in sc.PHASE_SPANS:
        summed = (
            phases.filter(pl.col("category") == phase)
            .group_by("trace_id", "engine_span_id")
            .agg(pl.col("duration_s").sum().alias(f"_span_{phase}_s"))
        )
        out = out.join(summed, on=["trace_id", "engine_span_id"], how="left")
    return out


def _parts(joined: pl.DataFrame) -> pl.DataFrame:
    """The breakdown's columns: the engine's phases (its attributes, else its phase spans), the
    call's identity and the parts between the spans' durations."""
    return joined.with_columns(
        *(pl.coalesce(f"_engine_{p}_s", f"_span_{p}_s").alias(f"{p}_s") for p in sc.PHASE_SPANS),
        pl.col("_engine_request_id").alias("request_id"),
        pl.col("_client_name").alias("client_name"),
        pl.coalesce("_engine_operation", "_client_operation").alias("operation"),
        pl.coalesce("_engine_model", "_client_model").alias("model"),
        pl.coalesce("_client_stream", "_engine_stream").alias("stream"),
        pl.col("_client_start").alias("client_start"),
        pl.col("_client_duration_s").alias("client_s"),
        pl.col("_server_duration_s").alias("server_s"),
        pl.col("_engine_duration_s").alias("engine_s"),
        pl.col("_engine_input_tokens").alias("input_tokens"),
        pl.col("_engine_output_tokens").alias("output_tokens"),
    ).with_columns(
        (pl.col("client_s") - pl.coalesce("server_s", "engine_s")).alias("network_s"),
        (pl.col("server_s") - pl.col("engine_s")).alias("server_overhead_s"),
        frontend_share("engine_s", [f"{p}_s" for p in sc.PHASE_SPANS]).alias("engine_other_s"),
    )
