"""Malformed rows and foreign tables give errors naming the table and the column."""

from __future__ import annotations

import pytest

from sagellm_obs import frames
from sagellm_obs import semconv as sc
from sagellm_obs.clickhouse.connect import ChdbConnection, ClickHouseError
from sagellm_obs.clickhouse.ddl import LayoutError, Tables, create_tables
from sagellm_obs.clickhouse.read import MalformedRowError
from sagellm_obs.clickhouse.rows import STEP_ATTRIBUTE
from sagellm_obs.clickhouse.write import export_clickhouse
from sagellm_obs.store import StoreWarning
from tests.clickhouse.test_clickhouse_exporter_rows import TRACE, insert_span
from tests.frames.frames_otlp import T0, WrittenRun


@pytest.fixture
def traces(chdb: ChdbConnection, database: str) -> str:
    tables = Tables(database=database)
    create_tables(chdb, tables)
    good = {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.SAGELLM_REQUEST_ID: "ok",
        sc.GEN_AI_USAGE_INPUT_TOKENS: 3,
    }
    insert_span(
        chdb, tables.qualified("traces"), trace_id=TRACE, span_id="aaaaaaaaaaaaaaaa",
        name="chat", kind="Server", start_ns=T0, duration_ns=10, attributes=good,
    )  # fmt: skip
    return tables.qualified("traces")


def _source(chdb: ChdbConnection, database: str) -> frames.ClickHouseSource:
    return frames.clickhouse_source(chdb, database=database)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"trace_id": "not-hex"}, "column TraceId is not 32 hex digits: not-hex"),
        ({"span_id": "12345"}, "column SpanId is not 16 hex digits: 12345"),
        ({"parent": "zz"}, "column ParentSpanId is not 16 hex digits: zz"),
        ({"kind": "Sideways"}, "column SpanKind is not a span kind: Sideways"),
        (
            {"attributes": {sc.GEN_AI_USAGE_INPUT_TOKENS: "twelve"}},
            f"column SpanAttributes['{sc.GEN_AI_USAGE_INPUT_TOKENS}'] is not an integer: twelve",
        ),
        (
            {"attributes": {sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN: "fast"}},
            f"column SpanAttributes['{sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN}'] is not a number",
        ),
        (
            {"attributes": {sc.SAGELLM_STREAM: "maybe"}},
            f"column SpanAttributes['{sc.SAGELLM_STREAM}'] is not true or false: maybe",
        ),
    ],
)
def test_malformed_span_names_table_and_column(
    chdb: ChdbConnection, database: str, traces: str, row: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {
        "trace_id": TRACE, "span_id": "bbbbbbbbbbbbbbbb", "name": "bad", "kind": "Internal",
        "start_ns": T0 + 1, "duration_ns": 10, "attributes": {},
    }  # fmt: skip
    fields.update(row)
    insert_span(chdb, traces, **fields)  # type: ignore[arg-type]
    with pytest.raises(MalformedRowError) as info:
        frames.load(_source(chdb, database))
    text = str(info.value)
    assert text.startswith(f"{database}.otel_traces: {message}")
    assert "span " in text  # names the row (trace/span ids)
    # errors="skip": the bad span is left out, counted, and a warning says so.
    with pytest.warns(StoreWarning, match="skipped 1 bad record"):
        got = frames.load(_source(chdb, database), errors="skip")
    assert got.spans["span_id"].to_list() == ["aaaaaaaaaaaaaaaa"]
    assert len(got.report.skipped) == 1
    table, _, problem = got.report.skipped[0]
    assert table == f"{database}.otel_traces"
    assert message in problem


def test_table_of_another_layout(chdb: ChdbConnection, database: str) -> None:
    # Neither the Map nor the JSON layout: attributes as plain text.
    chdb.command(
        f"""CREATE TABLE {database}.otel_traces (Timestamp DateTime64(9), TraceId String,
            SpanId String, SpanAttributes String) ENGINE = MergeTree ORDER BY Timestamp"""
    )
    with pytest.raises(LayoutError) as info:
        frames.load(_source(chdb, database))
    text = str(info.value)
    assert (
        f"{database}.otel_traces is not the OpenTelemetry Collector ClickHouse exporter's" in text
    )
    assert "column SpanAttributes is String, expected Map(LowCardinality(String), String)" in text
    assert "no column ServiceName" in text
    assert "no column Events.Timestamp" in text


def test_writer_refuses_a_table_of_another_layout(
    written: WrittenRun, chdb: ChdbConnection, database: str
) -> None:
    chdb.command(
        f"CREATE TABLE {database}.otel_metrics_gauge (TimeUnix DateTime, Value String) "
        "ENGINE = MergeTree ORDER BY TimeUnix"
    )
    with pytest.raises(LayoutError, match=r"otel_metrics_gauge .* column Value is String"):
        export_clickhouse(written.path, chdb, database=database)


def test_no_exporter_tables(chdb: ChdbConnection, database: str) -> None:
    with pytest.raises(
        ClickHouseError,
        match=f"no OpenTelemetry Collector exporter tables in database '{database}'",
    ):
        frames.load(_source(chdb, database))


def test_bad_step_point(written: WrittenRun, chdb: ChdbConnection, database: str) -> None:
    export_clickhouse(written.path, chdb, database=database)
    tables = Tables(database=database)
    chdb.command(
        f"""INSERT INTO {tables.qualified("gauge")} (ResourceAttributes, MetricName, Attributes,
            TimeUnix, Value) VALUES (map(), '{sc.M_RUNNING.name}', map('{STEP_ATTRIBUTE}', 'x7'),
            now(), 1)"""
    )
    with pytest.raises(
        MalformedRowError,
        match=rf"otel_metrics_gauge: column Attributes\['{STEP_ATTRIBUTE}'\] is not an integer: x7",
    ):
        frames.load(_source(chdb, database))
    with pytest.warns(StoreWarning):
        got = frames.load(_source(chdb, database), errors="skip")
    assert got.steps.height == len(written.steps)
