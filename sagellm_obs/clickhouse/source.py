"""A ClickHouse source for ``frames.load``/``frames.scan``: where, which tables, which rows.

Light on purpose: ``sagellm_obs.frames`` imports this module, and neither ClickHouse client is
imported until rows are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from sagellm_obs import semconv as sc
from sagellm_obs.clickhouse.connect import is_connection
from sagellm_obs.clickhouse.ddl import Tables

Time = datetime | int
"""A time filter: an aware datetime (naive ones are taken as UTC) or epoch nanoseconds."""


@dataclass(frozen=True)
class ClickHouseSource:
    """A ClickHouse database holding the exporter's tables, and the rows to read from it.

    Build one with :func:`clickhouse_source`; ``frames.load``/``frames.scan`` also accept a bare
    DSN or client, which reads everything with the default table names.
    """

    target: Any
    tables: Tables | None = None  # None: the DSN's database (else "default") and default names
    since: int | None = None  # epoch ns, inclusive
    until: int | None = None  # epoch ns, exclusive
    service: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    engine_id: tuple[str, ...] = ()
    run_id: tuple[str, ...] = ()
    trace_ids: tuple[str, ...] = ()

    def resolve(self, dsn_database: str | None) -> Tables:
        """The table names, with the DSN's database when none was given."""
        if self.tables is not None:
            return self.tables
        return Tables(database=dsn_database) if dsn_database else Tables()

    def where_spans(self, table: str) -> tuple[list[str], dict[str, Any]]:
        """WHERE terms and parameters selecting this source's spans of ``table``.

        A model filter keeps whole traces: every span of a trace that has a span of the model.
        """
        terms, params = self._common("Timestamp", span=True)
        if self.trace_ids:
            terms.append("TraceId IN {trace_ids:Array(String)}")
            params["trace_ids"] = [t.lower() for t in self.trace_ids]
        if self.model:
            time_terms = [t for t in terms if t.startswith("Timestamp")]
            inner = " AND ".join([*time_terms, _model_term()])
            terms.append(f"TraceId IN (SELECT TraceId FROM {table} WHERE {inner})")
            params["model"] = list(self.model)
        return terms, params

    def where_metrics(self) -> tuple[list[str], dict[str, Any]]:
        """WHERE terms and parameters selecting this source's metric points (a model filter
        and trace ids do not apply to metrics)."""
        return self._common("TimeUnix", span=False)

    def _common(self, time_col: str, *, span: bool) -> tuple[list[str], dict[str, Any]]:
        terms: list[str] = []
        params: dict[str, Any] = {}
        if self.since is not None:
            terms.append(f"{time_col} >= fromUnixTimestamp64Nano({{since:Int64}})")
            params["since"] = self.since
        if self.until is not None:
            terms.append(f"{time_col} < fromUnixTimestamp64Nano({{until:Int64}})")
            params["until"] = self.until
        if self.service:
            terms.append("ServiceName IN {service:Array(String)}")
            params["service"] = list(self.service)
        own = "SpanAttributes" if span else "Attributes"
        if self.engine_id:
            key = quote_string(sc.SAGELLM_ENGINE_ID)
            res = quote_string(sc.RESOURCE_ENGINE_ID)
            terms.append(
                f"({own}[{key}] IN {{engine_id:Array(String)}} OR "
                f"ResourceAttributes[{res}] IN {{engine_id:Array(String)}})"
            )
            params["engine_id"] = list(self.engine_id)
        if self.run_id:
            res = quote_string(sc.RESOURCE_RUN_ID)
            key = quote_string(sc.SAGELLM_RUN_ID)
            terms.append(
                f"(ResourceAttributes[{res}] IN {{run_id:Array(String)}} OR "
                f"{own}[{key}] IN {{run_id:Array(String)}})"
            )
            params["run_id"] = list(self.run_id)
        return terms, params


def _model_term() -> str:
    keys = (sc.GEN_AI_REQUEST_MODEL, sc.GEN_AI_RESPONSE_MODEL)
    return (
        "("
        + " OR ".join(f"SpanAttributes[{quote_string(k)}] IN {{model:Array(String)}}" for k in keys)
        + ")"
    )


def quote_string(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ns(value: Time | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        delta = aware - datetime(1970, 1, 1, tzinfo=timezone.utc)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"{name} must be a datetime or epoch nanoseconds, not {type(value).__name__}")


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def clickhouse_source(
    target: Any,
    *,
    database: str | None = None,
    traces_table: str | None = None,
    gauge_table: str | None = None,
    sum_table: str | None = None,
    histogram_table: str | None = None,
    since: Time | None = None,
    until: Time | None = None,
    service: str | Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    engine_id: str | Sequence[str] | None = None,
    run_id: str | Sequence[str] | None = None,
    trace_ids: Sequence[str] | None = None,
) -> ClickHouseSource:
    """A ClickHouse source that ``frames.load``/``frames.scan`` read (filters run as SQL).

    Args:
        target: A DSN (``clickhouse://user:pass@host:8123/db``, ``chdb:PATH``), a
            ``clickhouse_connect`` client or a ``chdb.session.Session``.
        database: The database (default: the DSN's, else ``default``).
        traces_table, gauge_table, sum_table, histogram_table: Table names, when not the
            exporter's defaults (``otel_traces``, ``otel_metrics_gauge``...).
        since, until: Time range ``[since, until)`` of span starts and metric points.
        service: ``ServiceName`` value(s).
        model: Keep the traces with a span of this model (``gen_ai.request.model`` or
            ``gen_ai.response.model``); spans only.
        engine_id: ``sagellm.engine_id`` (of the span or point, or of its resource).
        run_id: ``sagellm.run_id`` (of the resource, or of the span or point).
        trace_ids: OpenTelemetry trace ids (hex); spans only.

    Example:
        >>> src = clickhouse_source("chdb:runs.chdb", model="tiny-llama")  # doctest: +SKIP
        >>> frames.load(src).requests  # doctest: +SKIP
    """
    if not is_connection(target):
        raise TypeError(
            "not a ClickHouse connection: expected a DSN (clickhouse://... or chdb:PATH), a "
            f"clickhouse_connect client or a chdb session, got {type(target).__name__}"
        )
    base = Tables()
    named = any(
        x is not None for x in (database, traces_table, gauge_table, sum_table, histogram_table)
    )
    tables = (
        Tables(
            database=database or base.database,
            traces=traces_table or base.traces,
            gauge=gauge_table or base.gauge,
            sum=sum_table or base.sum,
            histogram=histogram_table or base.histogram,
        )
        if named
        else None
    )
    return ClickHouseSource(
        target,
        tables,
        since=_ns(since, "since"),
        until=_ns(until, "until"),
        service=_names(service),
        model=_names(model),
        engine_id=_names(engine_id),
        run_id=_names(run_id),
        trace_ids=_names(trace_ids),
    )


def as_source(source: Any) -> ClickHouseSource:
    """``source`` as a :class:`ClickHouseSource` (a DSN or client reads everything)."""
    return source if isinstance(source, ClickHouseSource) else clickhouse_source(source)


def is_clickhouse(source: object) -> bool:
    """True for what :func:`as_source` accepts; imports no client.

    Raises:
        ValueError: A list of sources that holds a ClickHouse source (it is loaded on its own;
            one ClickHouse database holds many runs already).
    """
    if isinstance(source, ClickHouseSource) or is_connection(source):
        return True
    items = source if isinstance(source, list | tuple) else ()
    if any(isinstance(s, ClickHouseSource) or is_connection(s) for s in items):
        raise ValueError(
            "a ClickHouse source is loaded on its own, not in a list with others: load it "
            "separately (one database holds many runs; filter them with run_id=...)"
        )
    return False


def with_database(source: ClickHouseSource, database: str) -> ClickHouseSource:
    """``source`` reading ``database`` (same table names)."""
    tables = source.tables or Tables()
    return replace(source, tables=replace(tables, database=database))
