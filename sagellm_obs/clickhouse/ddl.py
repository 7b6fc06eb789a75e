"""The exporter's tables: their DDL (``sql/*.sql``), their names, and a check of their layout.

The SQL files give the OpenTelemetry Collector ClickHouse exporter's table layout (each file's
header names the upstream template it follows). :func:`create_tables` fills their placeholders as
the exporter does (database, table, cluster, engine ``MergeTree``, optional TTL) and runs them;
:func:`check_layout` tells a table of another layout apart before any row is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from sagellm_obs.clickhouse.connect import ClickHouseError, quote_ident

if TYPE_CHECKING:
    from sagellm_obs.clickhouse.connect import Connection

TRACES, GAUGE, SUM, HISTOGRAM = "traces", "gauge", "sum", "histogram"
KINDS = (TRACES, GAUGE, SUM, HISTOGRAM)

_SQL_FILES = {
    TRACES: "traces_table.sql",
    GAUGE: "metrics_gauge_table.sql",
    SUM: "metrics_sum_table.sql",
    HISTOGRAM: "metrics_histogram_table.sql",
}
# The exporter's JSON layout (its `json: true`): attributes in JSON columns. Read, not written.
_JSON_SQL_FILES = {
    kind: name.replace("_table.sql", "_json_table.sql") for kind, name in _SQL_FILES.items()
}
# The attribute columns of each table: Map(..., String) in the Map layout, JSON in the JSON one.
ATTRIBUTE_COLUMNS = {
    TRACES: ("ResourceAttributes", "SpanAttributes"),
    GAUGE: ("ResourceAttributes", "Attributes"),
    SUM: ("ResourceAttributes", "Attributes"),
    HISTOGRAM: ("ResourceAttributes", "Attributes"),
}
_TIME_COLUMN = {TRACES: "Timestamp", GAUGE: "TimeUnix", SUM: "TimeUnix", HISTOGRAM: "TimeUnix"}


class LayoutError(ClickHouseError):
    """A table that is not in the exporter's layout: names the table and the column."""


@dataclass(frozen=True)
class Tables:
    """The exporter's table names (its ``traces_table_name`` and ``metrics_tables`` options)."""

    database: str = "default"
    traces: str = "otel_traces"
    gauge: str = "otel_metrics_gauge"
    sum: str = "otel_metrics_sum"
    histogram: str = "otel_metrics_histogram"

    def name(self, kind: str) -> str:
        """The table name of ``kind`` (:data:`TRACES`, :data:`GAUGE`, ...)."""
        return str(getattr(self, kind))

    def qualified(self, kind: str) -> str:
        """``database.table`` of ``kind``, quoted."""
        return f"{quote_ident(self.database)}.{quote_ident(self.name(kind))}"

    def label(self, kind: str) -> str:
        """``database.table`` of ``kind`` for messages."""
        return f"{self.database}.{self.name(kind)}"


def template(kind: str, *, json: bool = False) -> str:
    """The DDL template of ``kind`` (of the JSON layout with ``json``), placeholders unfilled."""
    name = (_JSON_SQL_FILES if json else _SQL_FILES)[kind]
    return resources.files("sagellm_obs.clickhouse").joinpath("sql", name).read_text()


def render(
    kind: str,
    tables: Tables,
    *,
    engine: str = "MergeTree",
    ttl_days: int = 0,
    cluster: str = "",
    json: bool = False,
) -> str:
    """The CREATE TABLE statement of ``kind`` as the exporter fills its template."""
    time = _TIME_COLUMN[kind]
    ttl = f"TTL toDateTime({time}) + toIntervalDay({int(ttl_days)})" if ttl_days > 0 else ""
    text = template(kind, json=json)
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return body.format(
        database=quote_ident(tables.database),
        table=quote_ident(tables.name(kind)),
        cluster=f"ON CLUSTER {quote_ident(cluster)}" if cluster else "",
        engine=engine,
        ttl=ttl,
    )


def create_tables(
    conn: Connection,
    tables: Tables,
    *,
    ttl_days: int = 0,
    kinds: tuple[str, ...] = KINDS,
    json: bool = False,
) -> None:
    """Create the database and the tables of ``kinds`` when missing (``IF NOT EXISTS``); with
    ``json``, in the exporter's JSON layout (which the reader reads and the writer refuses)."""
    conn.command(f"CREATE DATABASE IF NOT EXISTS {quote_ident(tables.database)}")
    for kind in kinds:
        conn.command(render(kind, tables, ttl_days=ttl_days, json=json))


# The columns the reader and writer use, with the types they accept: a table missing one, or
# holding it with another type, is refused up front. The JSON layout's attribute columns
# (JSON, Array(JSON)) are accepted by the reader only (check_layout(json_ok=True)).
_MAP = ("Map(LowCardinality(String), String)", "Map(String, String)")
_TIME = ("DateTime64(9)", "DateTime")
_EXPECTED: dict[str, dict[str, tuple[str, ...]]] = {
    TRACES: {
        "Timestamp": ("DateTime64(9)",),
        "TraceId": ("String",),
        "SpanId": ("String",),
        "ParentSpanId": ("String",),
        "TraceState": ("String",),
        "SpanName": ("LowCardinality(String)", "String"),
        "SpanKind": ("LowCardinality(String)", "String"),
        "ServiceName": ("LowCardinality(String)", "String"),
        "ResourceAttributes": _MAP,
        "ScopeName": ("String", "LowCardinality(String)"),
        "ScopeVersion": ("String", "LowCardinality(String)"),
        "SpanAttributes": _MAP,
        "Duration": ("UInt64", "Int64"),
        "StatusCode": ("LowCardinality(String)", "String"),
        "StatusMessage": ("String",),
        "Events.Timestamp": ("Array(DateTime64(9))",),
        "Events.Name": ("Array(LowCardinality(String))", "Array(String)"),
        "Events.Attributes": tuple(f"Array({m})" for m in _MAP),
    },
}
_METRIC_COMMON = {
    "ResourceAttributes": _MAP,
    "ScopeName": ("String", "LowCardinality(String)"),
    "ScopeVersion": ("String", "LowCardinality(String)"),
    "ServiceName": ("LowCardinality(String)", "String"),
    "MetricName": ("LowCardinality(String)", "String"),
    "MetricDescription": ("String",),
    "MetricUnit": ("String", "LowCardinality(String)"),
    "Attributes": _MAP,
    "StartTimeUnix": _TIME,
    "TimeUnix": _TIME,
}
_EXPECTED[GAUGE] = {**_METRIC_COMMON, "Value": ("Float64",)}
_EXPECTED[SUM] = {
    **_EXPECTED[GAUGE],
    "AggregationTemporality": ("Int32",),
    "IsMonotonic": ("Bool", "UInt8"),
}
_EXPECTED[HISTOGRAM] = {
    **_METRIC_COMMON,
    "Count": ("UInt64",),
    "Sum": ("Float64",),
    "BucketCounts": ("Array(UInt64)",),
    "ExplicitBounds": ("Array(Float64)",),
    "Min": ("Float64", "Nullable(Float64)"),
    "Max": ("Float64", "Nullable(Float64)"),
    "AggregationTemporality": ("Int32",),
}


def describe(conn: Connection, tables: Tables, kind: str) -> dict[str, str] | None:
    """Column name → type of the ``kind`` table, or None when it does not exist."""
    exists = conn.query_arrow(
        "SELECT count() AS n FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        {"db": tables.database, "t": tables.name(kind)},
    )
    if not exists.column("n")[0].as_py():
        return None
    rows = conn.query_arrow(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        {"db": tables.database, "t": tables.name(kind)},
    ).to_pylist()
    return {str(r["name"]): str(r["type"]) for r in rows}


def _is_json_type(sql_type: str) -> bool:
    return sql_type == "JSON" or sql_type.startswith("JSON(")


def is_json(columns: dict[str, str], kind: str) -> bool:
    """True for a table of the exporter's JSON layout (its attribute columns are JSON)."""
    return any(_is_json_type(columns.get(c, "")) for c in ATTRIBUTE_COLUMNS[kind])


def check_layout(
    columns: dict[str, str], tables: Tables, kind: str, *, json_ok: bool = False
) -> None:
    """Raise :class:`LayoutError` unless ``columns`` hold the exporter's ``kind`` layout (the
    Map layout, or with ``json_ok`` also the JSON layout).

    Raises:
        LayoutError: Naming the table, each missing column and each column of another type.
    """
    json = is_json(columns, kind)
    problems = []
    for name, accepted in _EXPECTED[kind].items():
        have = columns.get(name)
        if have is None:
            problems.append(f"no column {name} ({accepted[0]})")
        elif json and json_ok and _json_column_ok(name, have):
            continue
        elif have not in accepted:
            problems.append(f"column {name} is {have}, expected {accepted[0]}")
    if problems:
        hint = (
            " (the exporter's JSON layout is read, not written: export into Map-layout tables)"
            if json and not json_ok
            else ""
        )
        raise LayoutError(
            f"{tables.label(kind)} is not the OpenTelemetry Collector ClickHouse exporter's "
            f"{kind} layout: " + "; ".join(problems) + hint
        )


def _json_column_ok(name: str, have: str) -> bool:
    """A column of the JSON layout where the Map layout has a Map (or an array of Maps)."""
    if name.endswith("Attributes") and not name.startswith(("Events.", "Links.")):
        return _is_json_type(have)
    if name in ("Events.Attributes", "Links.Attributes"):
        return have.startswith("Array(") and _is_json_type(have[len("Array(") : -1])
    return False


# JSON attribute columns seen as the Map layout's Map(String, String): the exporter's JSON layout
# splits dotted keys into nested objects; this flattens them back (to a fixed depth, deeper than
# any semconv key) and keeps each value's JSON text, strings unquoted, as the Map layout's text.
_FLATTEN_DEPTH = 8


def _flattened(column: str) -> str:
    expr = f"JSONExtractKeysAndValuesRaw(toJSONString({column}))"
    for _ in range(_FLATTEN_DEPTH - 1):
        nested = "arrayMap(x -> (concat(kv.1, '.', x.1), x.2), JSONExtractKeysAndValuesRaw(kv.2))"
        expr = f"arrayFlatten(arrayMap(kv -> if(startsWith(kv.2, '{{'), {nested}, [kv]), {expr}))"
    text = "if(startsWith(kv.2, '\"'), JSONExtractString(kv.2), kv.2)"
    return f"CAST(arrayMap(kv -> (kv.1, {text}), {expr}), 'Map(String, String)')"


def source(tables: Tables, kind: str, columns: dict[str, str]) -> str:
    """What the reader's SQL selects FROM: the table, or for the JSON layout a subquery that
    shows its attribute columns as the Map layout's maps (so every query reads both layouts)."""
    table = tables.qualified(kind)
    if not is_json(columns, kind):
        return table
    maps = ", ".join(f"{_flattened(c)} AS {c}" for c in ATTRIBUTE_COLUMNS[kind] if c in columns)
    return f"(SELECT * REPLACE ({maps}) FROM {table})"


def time_is_ns(columns: dict[str, str], kind: str) -> bool:
    """True when the table's time column keeps nanoseconds (DateTime64(9)), not seconds."""
    return columns.get(_TIME_COLUMN[kind], "").startswith("DateTime64")
