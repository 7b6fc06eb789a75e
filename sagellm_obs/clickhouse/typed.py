"""Optional typed columns on the exporter's traces table: the attributes our summaries read.

The exporter keeps every span attribute as text in one ``SpanAttributes`` Map, which ClickHouse
stores as arrays of keys and values: ``SpanAttributes['k']`` reads and scans both arrays of every
row. The summaries (:mod:`sagellm_obs.clickhouse.queries`) read six attributes, so
:func:`add_typed_columns` adds them as ``MATERIALIZED`` columns computed from the Map
(``sagellm_ttft_s Nullable(Float64) MATERIALIZED coalesce(toFloat64OrNull(...), ...)``), with
the same keys in the same priority and the same casts as the Map expressions, and materializes
them for the parts already written. ClickHouse then fills them on every insert, the Collector's
too: its INSERT names its columns, and a MATERIALIZED column is never one an INSERT may name.

They are optional: the queries detect them (:func:`present`) and otherwise read the Map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sagellm_obs.clickhouse import ddl
from sagellm_obs.clickhouse.connect import connect
from sagellm_obs.clickhouse.source import quote_string
from sagellm_obs.frames.spans import ATTRIBUTE_COLUMNS

if TYPE_CHECKING:
    from sagellm_obs.clickhouse.connect import Connection

PREFIX = "sagellm_"

TYPED: Mapping[str, str] = {
    "request_id": "Nullable(String)",
    "operation": "LowCardinality(Nullable(String))",
    "model": "LowCardinality(Nullable(String))",
    "ttft_s": "Nullable(Float64)",
    "input_tokens": "Nullable(Int64)",
    "cached_tokens": "Nullable(Int64)",
}
"""Request column (as the frames name it) → the ClickHouse type of its typed column."""

_CAST = {"Float64": "toFloat64OrNull", "Int64": "toInt64OrNull"}


def column_name(column: str) -> str:
    """The typed column of request column ``column`` (``ttft_s`` → ``sagellm_ttft_s``)."""
    return PREFIX + column


def map_value(column: str, dtype: str | None = None) -> str:
    """SQL reading request column ``column`` from ``SpanAttributes``: the first of its attribute
    keys that is present, cast to ``dtype`` (``Float64``, ``Int64``; default: the frames'
    type of the column; null when absent or unparsable, as the frames' casts)."""
    cast = _CAST.get(dtype or str(ATTRIBUTE_COLUMNS[column][0]))
    parts = []
    for key in ATTRIBUTE_COLUMNS[column][1]:
        k = quote_string(key)
        raw = f"if(mapContains(SpanAttributes, {k}), SpanAttributes[{k}], NULL)"
        parts.append(f"{cast}({raw})" if cast else raw)
    return f"coalesce({', '.join(parts)})" if len(parts) > 1 else parts[0]


def present(columns: Mapping[str, str], defaults: Mapping[str, str], label: str) -> frozenset[str]:
    """The request columns whose typed column the table holds.

    Args:
        columns: Column name → type (``system.columns``).
        defaults: Column name → ``default_kind`` (``MATERIALIZED``, ``DEFAULT``, ``ALIAS``, ``""``).
        label: ``database.table`` for messages.

    Raises:
        LayoutError: A typed column of another type, or one that is not computed from
            ``SpanAttributes`` (not ``MATERIALIZED``): its values could disagree with the Map.
    """
    found = set()
    problems = []
    for column, sql_type in TYPED.items():
        name = column_name(column)
        have = columns.get(name)
        if have is None:
            continue
        if have != sql_type:
            problems.append(f"column {name} is {have}, expected {sql_type}")
        elif defaults.get(name) != "MATERIALIZED":
            kind = defaults.get(name) or "a plain column"
            problems.append(f"column {name} is {kind}, expected MATERIALIZED from SpanAttributes")
        else:
            found.add(column)
    if problems:
        raise ddl.LayoutError(
            f"{label}: " + "; ".join(problems) + " (drop it, then add_typed_columns() adds it)"
        )
    return frozenset(found)


def defaults_of(conn: Connection, tables: ddl.Tables) -> dict[str, str]:
    """Column name → ``default_kind`` of the traces table's ``sagellm_*`` columns."""
    rows = conn.query_arrow(
        "SELECT name, default_kind FROM system.columns WHERE database = {db:String} "
        "AND table = {t:String} AND startsWith(name, {p:String})",
        {"db": tables.database, "t": tables.name(ddl.TRACES), "p": PREFIX},
    ).to_pylist()
    return {str(r["name"]): str(r["default_kind"]) for r in rows}


def add_typed_columns(
    target: Any,
    *,
    database: str | None = None,
    traces_table: str | None = None,
    materialize: bool = True,
) -> list[str]:
    """Add the typed columns to an existing traces table (``ADD COLUMN IF NOT EXISTS``): a
    collector's, or one ``export_clickhouse`` wrote.

    Args:
        target: A DSN (``clickhouse://user:pass@host:8123/db``, ``chdb:PATH``), a
            ``clickhouse_connect`` client or a chdb session.
        database: The database (default: the DSN's, else ``default``).
        traces_table: The traces table (default: the exporter's ``otel_traces``).
        materialize: Also compute them for the parts already written (``MATERIALIZE COLUMN``,
            one mutation that rewrites those parts' new columns; waited for). Without it, old
            parts compute them from the Map when read (same values, Map speed).

    Returns:
        The typed columns the table did not hold before.

    Raises:
        LayoutError: The table does not exist, is not in the exporter's Map layout, or holds
            a typed column of another type.
    """
    conn, dsn_db = connect(target, create=False)
    tables = ddl.Tables(
        database=database or dsn_db or "default",
        traces=traces_table or ddl.Tables().traces,
    )
    return add_to(conn, tables, materialize=materialize)


def add_to(conn: Connection, tables: ddl.Tables, *, materialize: bool) -> list[str]:
    """:func:`add_typed_columns` on a connection and table names."""
    columns = ddl.describe(conn, tables, ddl.TRACES)
    label = tables.label(ddl.TRACES)
    if columns is None:
        raise ddl.LayoutError(f"{label} does not exist")
    ddl.check_layout(columns, tables, ddl.TRACES)
    had = present(columns, defaults_of(conn, tables), label)
    table = tables.qualified(ddl.TRACES)
    added = [column_name(c) for c in TYPED if c not in had]
    for column, sql_type in TYPED.items():
        if column not in had:
            conn.command(
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column_name(column)} "
                f"{sql_type} MATERIALIZED {map_value(column)}"
            )
    if materialize and added:
        steps = ", ".join(f"MATERIALIZE COLUMN {name}" for name in added)
        conn.command(f"ALTER TABLE {table} {steps} SETTINGS mutations_sync = 2")
    return added
