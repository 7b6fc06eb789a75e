"""Summaries ClickHouse computes where the spans are: small frames back, not millions of rows.

Each function reads the request spans as :func:`~sagellm_obs.frames.spans.requests_of` picks
them (SERVER spans with an operation and a request id, and vLLM's ``llm_request`` spans that are
not the child of one of those), with
the same attribute keys in the same priority, and applies a source's filters
(:func:`~sagellm_obs.clickhouse.source.clickhouse_source`). The tests check each against the same
summary computed in Polars over the loaded ``requests`` frame.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from sagellm_obs import semconv as sc
from sagellm_obs.clickhouse import ddl
from sagellm_obs.clickhouse import typed as typed_columns
from sagellm_obs.clickhouse.connect import connect
from sagellm_obs.clickhouse.read import tables_of
from sagellm_obs.clickhouse.source import as_source, quote_string
from sagellm_obs.frames.spans import ATTRIBUTE_COLUMNS

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_every(every: str) -> int:
    """A window length such as ``"30s"``, ``"1m"``, ``"1h"`` in nanoseconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", every)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"window {every!r}: expected a positive length like 30s, 1m, 1h or 1d")
    return int(m.group(1)) * _UNITS[m.group(2)] * 1_000_000_000


def request_value(column: str, dtype: str, typed: frozenset[str] = frozenset()) -> str:
    """SQL for a typed request column: its typed column when the table has it (``typed``, see
    :mod:`~sagellm_obs.clickhouse.typed`), else the first of its attribute keys that parses."""
    if column in typed:
        return typed_columns.column_name(column)
    return typed_columns.map_value(column, dtype)


def is_request(table: str, typed: frozenset[str] = frozenset()) -> str:
    """A request span, as ``requests_of`` picks them: ours, and vLLM's ``llm_request`` unless it
    is the child of one of ours (vLLM's tracing on: its figures belong to our request's row).

    With the typed columns (``typed``), the attribute tests read their null maps, not the Map.
    """
    return f"({_ours(typed)} OR {_vllm_alone(table, typed)})"


def _ours(typed: frozenset[str]) -> str:
    """Our request spans: cheap columns first (SpanKind, SpanName), so the map lookups run on
    few rows."""
    kind = "replaceOne(upper(SpanKind), 'SPAN_KIND_', '')"
    name = quote_string(sc.VLLM_REQUEST_SPAN_NAME)
    return (
        f"({kind} = 'SERVER' AND SpanName != {name} AND {_has(typed, 'operation')} "
        f"AND {_has(typed, 'request_id')})"
    )


def _vllm_alone(table: str, typed: frozenset[str]) -> str:
    """vLLM's request spans that are not the child of one of ours. The set of our spans they
    may sit under is built from the traces that hold a vLLM span only (SpanName is in the
    table's sort key): a third of the time on a million spans."""
    name = quote_string(sc.VLLM_REQUEST_SPAN_NAME)
    vllm_traces = f"(SELECT TraceId FROM {table} WHERE SpanName = {name})"
    nested = (
        f"(TraceId, ParentSpanId) IN (SELECT TraceId, SpanId FROM {table} "
        f"WHERE TraceId IN {vllm_traces} AND {_ours(typed)})"
    )
    return f"(SpanName = {name} AND NOT {nested})"


def _has(typed: frozenset[str], column: str) -> str:
    """SQL: the span carries one of ``column``'s attribute keys."""
    if column in typed:
        return f"{typed_columns.column_name(column)} IS NOT NULL"
    keys = ATTRIBUTE_COLUMNS[column][1]
    terms = [f"mapContains(SpanAttributes, {quote_string(k)})" for k in keys]
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


@dataclass(frozen=True)
class _Requests:
    """The request spans of a source's traces table, and how to read their columns."""

    conn: Any
    table: str
    typed: frozenset[str]
    terms: list[str]
    params: dict[str, Any]

    def value(self, column: str, dtype: str) -> str:
        return request_value(column, dtype, self.typed)

    def rows(self, select: str) -> str:
        """SQL selecting ``select`` of each request span. Two branches, ours and vLLM's, not
        one OR: the OR would read TraceId and ParentSpanId (the vLLM test) of every row, while
        the vLLM branch reads only the granules of its SpanName (the sort key)."""
        branches = []
        for pick in (_ours(self.typed), _vllm_alone(self.table, self.typed)):
            where = " AND ".join([*self.terms, pick])
            branches.append(f"SELECT {select} FROM {self.table} WHERE {where}")
        return " UNION ALL ".join(branches)


def _requests(source: Any) -> _Requests:
    src = as_source(source)
    conn, dsn_db = connect(src.target, create=False)
    tables = src.resolve(dsn_db)
    present = tables_of(conn, tables)
    if ddl.TRACES not in present:
        raise ddl.LayoutError(f"{tables.label(ddl.TRACES)} does not exist")
    columns = present[ddl.TRACES]
    table = ddl.source(tables, ddl.TRACES, columns)
    typed = frozenset[str]()
    if any(c.startswith(typed_columns.PREFIX) for c in columns):
        defaults = typed_columns.defaults_of(conn, tables)
        typed = typed_columns.present(columns, defaults, tables.label(ddl.TRACES))
    terms, params = src.where_spans(table)
    return _Requests(conn, table, typed, terms, params)


def _frame(conn: Any, sql: str, params: dict[str, Any]) -> pl.DataFrame:
    out = pl.from_arrow(conn.query_arrow(sql, params))
    assert isinstance(out, pl.DataFrame)
    return out


def _quantile_name(q: float) -> str:
    return "ttft_p" + f"{q * 100:g}"


def ttft_quantiles_per_window(
    source: Any, every: str = "1m", quantiles: Sequence[float] = (0.5, 0.99)
) -> pl.DataFrame:
    """TTFT quantiles of the requests arriving in each window, computed by ClickHouse.

    Windows are aligned to the epoch (as ``pl.col("arrival").dt.truncate(every)``); quantiles
    are exact with linear interpolation (``quantilesExactInclusive``, as Polars'
    ``quantile(q, "linear")``). Requests without a TTFT are left out.

    Args:
        source: A ClickHouse source (DSN, client or ``clickhouse_source(...)``).
        every: Window length: ``"30s"``, ``"1m"``, ``"5m"``, ``"1h"``...
        quantiles: Levels in [0, 1].

    Returns:
        ``window`` (UTC), ``requests`` and one ``ttft_p<q>`` column per level (``ttft_p50``,
        ``ttft_p99``...), one row per window with requests, sorted by window.
    """
    step = parse_every(every)
    levels = [float(q) for q in quantiles]
    if not levels or any(not 0.0 <= q <= 1.0 for q in levels):
        raise ValueError(f"quantiles must be levels in [0, 1], got {list(quantiles)}")
    req = _requests(source)
    ttft = req.value("ttft_s", "Float64")
    window = (
        f"fromUnixTimestamp64Nano(intDiv(toUnixTimestamp64Nano(Timestamp), {step}) * {step}, 'UTC')"
    )
    qs = ", ".join(repr(q) for q in levels)
    inner = req.rows(f"Timestamp, {ttft} AS ttft")
    sql = (
        f"SELECT {window} AS window, count() AS requests, "
        f"quantilesExactInclusive({qs})(ttft) AS qs FROM ({inner}) WHERE ttft IS NOT NULL "
        "GROUP BY window ORDER BY window"
    )
    raw = _frame(req.conn, sql, req.params)
    names = [_quantile_name(q) for q in levels]
    if raw.is_empty():
        schema: dict[str, pl.DataType] = {
            "window": pl.Datetime("ns", "UTC"),
            "requests": pl.Int64(),
        }
        schema.update(dict.fromkeys(names, pl.Float64()))
        return pl.DataFrame(schema=schema)
    return raw.select(
        pl.col("window").dt.convert_time_zone("UTC"),
        pl.col("requests").cast(pl.Int64),
        *(pl.col("qs").list.get(i).alias(name) for i, name in enumerate(names)),
    )


def prefix_hit_rate_per_model(source: Any) -> pl.DataFrame:
    """Prompt tokens served from the prefix cache, per model, computed by ClickHouse.

    Returns:
        ``model``, ``requests``, ``input_tokens``, ``cached_tokens`` (sums over the requests
        that report them, null when none does: vLLM's own spans carry no cached count) and
        ``prefix_hit_rate`` = cached / input (null when input is 0 or either is null),
        sorted by model (null last).
    """
    req = _requests(source)
    model = req.value("model", "String")
    inp = req.value("input_tokens", "Int64")
    cached = req.value("cached_tokens", "Int64")
    inner = req.rows(f"{model} AS model, {inp} AS input_tokens, {cached} AS cached_tokens")
    sql = (
        "SELECT model, count() AS requests, sum(input_tokens) AS input_tokens, "
        f"sum(cached_tokens) AS cached_tokens FROM ({inner}) "
        "GROUP BY model ORDER BY model NULLS LAST"
    )
    raw = _frame(req.conn, sql, req.params)
    return raw.select(
        pl.col("model").cast(pl.String),
        pl.col("requests").cast(pl.Int64),
        pl.col("input_tokens").cast(pl.Int64),
        pl.col("cached_tokens").cast(pl.Int64),
    ).with_columns(
        pl.when(pl.col("input_tokens") > 0)
        .then(pl.col("cached_tokens") / pl.col("input_tokens"))
        .alias("prefix_hit_rate")
    )
