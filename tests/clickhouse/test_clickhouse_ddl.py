"""The exporter's DDL, as kept in sagellm_obs/clickhouse/sql, runs unchanged in chdb."""

from __future__ import annotations

import pytest

from sagellm_obs.clickhouse import ddl
from sagellm_obs.clickhouse.connect import ChdbConnection

UPSTREAM = "exporter/clickhouseexporter/internal/sqltemplates/"

# (name, type) of the columns each table must end up with: the exporter's layout.
TRACES_COLUMNS = [
    ("Timestamp", "DateTime64(9)"),
    ("TraceId", "String"),
    ("SpanId", "String"),
    ("ParentSpanId", "String"),
    ("TraceState", "String"),
    ("SpanName", "LowCardinality(String)"),
    ("SpanKind", "LowCardinality(String)"),
    ("ServiceName", "LowCardinality(String)"),
    ("ResourceAttributes", "Map(LowCardinality(String), String)"),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("SpanAttributes", "Map(LowCardinality(String), String)"),
    ("Duration", "UInt64"),
    ("StatusCode", "LowCardinality(String)"),
    ("StatusMessage", "String"),
    ("Events.Timestamp", "Array(DateTime64(9))"),
    ("Events.Name", "Array(LowCardinality(String))"),
    ("Events.Attributes", "Array(Map(LowCardinality(String), String))"),
    ("Links.TraceId", "Array(String)"),
    ("Links.SpanId", "Array(String)"),
    ("Links.TraceState", "Array(String)"),
    ("Links.Attributes", "Array(Map(LowCardinality(String), String))"),
    ("ResourceAttributeItems", "Array(String)"),
    ("SpanAttributeItems", "Array(String)"),
]
METRIC_HEAD = [
    ("ResourceAttributes", "Map(LowCardinality(String), String)"),
    ("ResourceSchemaUrl", "String"),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("ScopeAttributes", "Map(LowCardinality(String), String)"),
    ("ScopeDroppedAttrCount", "UInt32"),
    ("ScopeSchemaUrl", "String"),
    ("ServiceName", "LowCardinality(String)"),
    ("MetricName", "LowCardinality(String)"),
    ("MetricDescription", "String"),
    ("MetricUnit", "String"),
    ("Attributes", "Map(LowCardinality(String), String)"),
    ("StartTimeUnix", "DateTime"),
    ("TimeUnix", "DateTime"),
]
EXEMPLARS = [
    ("Exemplars.FilteredAttributes", "Array(Map(LowCardinality(String), String))"),
    ("Exemplars.TimeUnix", "Array(DateTime)"),
    ("Exemplars.Value", "Array(Float64)"),
    ("Exemplars.SpanId", "Array(String)"),
    ("Exemplars.TraceId", "Array(String)"),
]
EXPECTED = {
    "traces": TRACES_COLUMNS,
    "gauge": [*METRIC_HEAD, ("Value", "Float64"), ("Flags", "UInt32"), *EXEMPLARS],
    "sum": [
        *METRIC_HEAD,
        ("Value", "Float64"),
        ("Flags", "UInt32"),
        *EXEMPLARS,
        ("AggregationTemporality", "Int32"),
        ("IsMonotonic", "Bool"),
    ],
    "histogram": [
        *METRIC_HEAD,
        ("Count", "UInt64"),
        ("Sum", "Float64"),
        ("BucketCounts", "Array(UInt64)"),
        ("ExplicitBounds", "Array(Float64)"),
        *EXEMPLARS,
        ("Flags", "UInt32"),
        ("Min", "Float64"),
        ("Max", "Float64"),
        ("AggregationTemporality", "Int32"),
    ],
}


@pytest.mark.parametrize("kind", ddl.KINDS)
def test_template_names_its_upstream(kind: str) -> None:
    text = ddl.template(kind)
    assert "open-telemetry/opentelemetry-collector-contrib" in text
    assert UPSTREAM in text
    for placeholder in ("{database}", "{table}", "{cluster}", "{engine}", "{ttl}"):
        assert placeholder in text


@pytest.mark.parametrize("ttl_days", [0, 7])
def test_ddl_runs_in_chdb_with_the_exporter_layout(
    chdb: ChdbConnection, database: str, ttl_days: int
) -> None:
    tables = ddl.Tables(database=database, traces="spans_x")
    ddl.create_tables(chdb, tables, ttl_days=ttl_days)
    ddl.create_tables(chdb, tables, ttl_days=ttl_days)  # IF NOT EXISTS: a second run is fine
    for kind in ddl.KINDS:
        rows = chdb.query_arrow(
            "SELECT name, type FROM system.columns WHERE database = {d:String} AND "
            "table = {t:String} ORDER BY position",
            {"d": database, "t": tables.name(kind)},
        ).to_pylist()
        assert [(r["name"], r["type"]) for r in rows] == EXPECTED[kind]
        cols = ddl.describe(chdb, tables, kind)
        assert cols is not None
        ddl.check_layout(cols, tables, kind)
        create = chdb.query_arrow(
            "SELECT engine, sorting_key, create_table_query FROM system.tables "
            "WHERE database = {d:String} AND name = {t:String}",
            {"d": database, "t": tables.name(kind)},
        ).to_pylist()[0]
        assert create["engine"] == "MergeTree"
        assert ("TTL " in create["create_table_query"]) == (ttl_days > 0)
        if kind == "traces":
            assert (
                create["sorting_key"] == "ServiceName, SpanName, toDateTime(Timestamp), Timestamp"
            )
        else:
            assert create["sorting_key"] == (
                "ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix"
            )


def test_render_fills_placeholders_as_the_exporter() -> None:
    sql = ddl.render("traces", ddl.Tables(database="otel"), ttl_days=3, cluster="c1")
    assert "CREATE TABLE IF NOT EXISTS `otel`.`otel_traces` ON CLUSTER `c1` (" in sql
    assert "ENGINE = MergeTree" in sql
    assert "TTL toDateTime(Timestamp) + toIntervalDay(3)" in sql
    assert "{" not in sql.replace("{{", "")
    gauge = ddl.render("gauge", ddl.Tables(), engine="ReplicatedMergeTree")
    assert "ENGINE = ReplicatedMergeTree" in gauge and "TTL" not in gauge


def test_describe_missing_table(chdb: ChdbConnection, database: str) -> None:
    assert ddl.describe(chdb, ddl.Tables(database=database), "traces") is None
