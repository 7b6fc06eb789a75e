"""Rows inserted the way the Collector's exporter inserts them load into the loader's frames.

Each case builds one span twice: as an OTLP/JSON line (what the collector received) loaded
from a file, and as a hand-written INSERT in the exporter's shape (attribute values as text,
kind and status as words, Duration in ns, Events as parallel arrays) into the exporter's table
in chdb. Both loads must give the same ``spans`` and ``requests`` rows.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sagellm_obs import frames
from sagellm_obs import semconv as sc
from sagellm_obs.clickhouse.connect import ChdbConnection
from sagellm_obs.clickhouse.ddl import Tables, create_tables
from tests.clickhouse.conftest import recorded_copy
from tests.frames.frames_otlp import T0, WrittenRun, resource, span, traces_line, write_lines

TRACE = "5b8efff798038103d269b633813fc60c"
KIND_WORDS = {1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}


def _text(value: Any) -> str:
    """An attribute value as the exporter writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _go_double(x: float) -> str:
    """A double as pdata's AsString writes it (ES6 number to string, as Go's encoding/json)."""
    if x == int(x) and abs(x) < 1e21:
        return str(int(x))
    if abs(x) < 1e-6 or abs(x) >= 1e21:
        mantissa, exp = repr(x).split("e")
        return f"{mantissa}e{exp[0]}{exp[1:].lstrip('0')}"
    return format(Decimal(repr(x)), "f")


def _exporter_text(value: dict[str, Any]) -> str:
    """An OTLP/JSON AnyValue as the exporter's attribute map holds it."""
    if "doubleValue" in value:
        return _go_double(float(value["doubleValue"]))
    if "intValue" in value:
        return str(int(value["intValue"]))
    if "boolValue" in value:
        return "true" if value["boolValue"] else "false"
    if "arrayValue" in value:
        items = [json.loads(_exporter_text(v)) if "stringValue" not in v else v["stringValue"]
                 for v in value["arrayValue"].get("values") or []]  # fmt: skip
        return json.dumps(items, separators=(",", ":"))
    return str(value.get("stringValue", ""))


def _lit(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _map(attrs: dict[str, Any]) -> str:
    return "map(" + ", ".join(f"{_lit(k)}, {_lit(_text(v))}" for k, v in attrs.items()) + ")"


def insert_span(
    conn: ChdbConnection,
    table: str,
    *,
    trace_id: str,
    span_id: str,
    parent: str = "",
    name: str,
    kind: str,
    start_ns: int,
    duration_ns: int,
    attributes: dict[str, Any],
    service: str = "vllm",
    status: tuple[str, str] = ("Unset", ""),
    events: tuple[tuple[int, str], ...] = (),
    scope: str = "vllm.tracing",
    resource: dict[str, Any] | None = None,
) -> None:
    """One INSERT ... VALUES row in the exporter's column order and value shapes."""
    res = resource or {"service.name": service, "telemetry.sdk.language": "python"}
    times = "[" + ", ".join(f"fromUnixTimestamp64Nano({t})" for t, _ in events) + "]"
    names = "[" + ", ".join(_lit(n) for _, n in events) + "]"
    event_attrs = "[" + ", ".join("map()" for _ in events) + "]"
    conn.command(
        f"""INSERT INTO {table} (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName,
            SpanKind, ServiceName, ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes,
            Duration, StatusCode, StatusMessage, Events.Timestamp, Events.Name, Events.Attributes,
            Links.TraceId, Links.SpanId, Links.TraceState, Links.Attributes)
        VALUES (fromUnixTimestamp64Nano({start_ns}), {_lit(trace_id)}, {_lit(span_id)},
            {_lit(parent)}, '', {_lit(name)}, {_lit(kind)}, {_lit(service)}, {_map(res)},
            {_lit(scope)}, '0.11.0', {_map(attributes)}, {duration_ns}, {_lit(status[0])},
            {_lit(status[1])}, {times}, {names}, {event_attrs}, [], [], [], [])"""
    )


def _load_json(tmp_path: Path, spans: list[dict[str, Any]]) -> frames.Frames:
    line = traces_line(spans, res=resource(service="vllm", engine_id=None), scope="vllm.tracing")
    line["resourceSpans"][0]["resource"]["attributes"].append(
        {"key": "telemetry.sdk.language", "value": {"stringValue": "python"}}
    )
    path = write_lines(tmp_path / "collector.jsonl", [line])
    return frames.load(path, cache=False)


def _same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    key = pl.element().struct.field("key")
    norm = (
        [pl.col("attributes").list.eval(pl.element().sort_by(key))]
        if "attributes" in a.columns
        else []
    )
    left = a.drop("source_file", "source_line").with_columns(norm).sort("span_id")
    right = b.drop("source_file", "source_line").with_columns(norm).sort("span_id")
    diff = {
        c: (left[c].to_list(), right[c].to_list())
        for c in left.columns
        if not left[c].equals(right[c])
    }
    assert not diff, diff


@pytest.fixture
def traces(chdb: ChdbConnection, database: str) -> str:
    tables = Tables(database=database)
    create_tables(chdb, tables, kinds=("traces",))
    return tables.qualified("traces")


def _attrs(kvs: list[dict[str, Any]]) -> dict[str, str]:
    return {kv["key"]: _exporter_text(kv["value"]) for kv in kvs}


def _parsed(df: pl.DataFrame) -> list[dict[str, Any]]:
    """Each span's ``attributes`` as key → value, numbers compared as numbers (the exporter
    writes ``1.0`` as ``1``: docs/clickhouse.md)."""

    def value(text: str) -> Any:
        try:
            return float(text)
        except ValueError:
            return text

    return [{kv["key"]: value(kv["value"]) for kv in row} for row in df["attributes"].to_list()]


def test_recorded_vllm_spans(
    chdb: ChdbConnection, database: str, traces: str, tmp_path: Path
) -> None:
    """Spans vLLM emitted (tests/frames/record_vllm_spans.py), inserted by hand in the exporter's
    shape, load as the recorded file does; figures checked against the file's own values."""
    path = recorded_copy("vllm_alone.jsonl", tmp_path / "recorded")
    recorded: dict[str, dict[str, Any]] = {}
    for text in path.read_text().splitlines():
        for rs in json.loads(text)["resourceSpans"]:
            res = _attrs(rs["resource"]["attributes"])
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    start, end = int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"])
                    events = tuple((int(e["timeUnixNano"]), e["name"]) for e in s.get("events", ()))
                    attrs = _attrs(s["attributes"])
                    insert_span(
                        chdb, traces, trace_id=s["traceId"], span_id=s["spanId"],
                        parent=s.get("parentSpanId") or "", name=s["name"],
                        kind=KIND_WORDS[s["kind"]], start_ns=start, duration_ns=end - start,
                        attributes=attrs, service=res["service.name"], scope=ss["scope"]["name"],
                        resource=res,
                        events=events,
                    )  # fmt: skip
                    raw = {kv["key"]: kv["value"] for kv in s["attributes"]}
                    recorded[raw[sc.GEN_AI_REQUEST_ID]["stringValue"]] = raw
    assert recorded, f"{path} holds no span: rerun tests/frames/record_vllm_spans.py"
    from_json = frames.load(path, cache=False)
    from_ch = frames.load(frames.clickhouse_source(chdb, database=database))
    _same(from_ch.spans.drop("attributes"), from_json.spans.drop("attributes"))
    key = ["span_id"]
    assert _parsed(from_ch.spans.sort(key)) == _parsed(from_json.spans.sort(key))
    assert from_ch.requests.sort("request_id").equals(from_json.requests.sort("request_id"))
    assert set(from_ch.requests["source"]) == {"vllm"}
    for req in from_ch.requests.iter_rows(named=True):
        raw = recorded[req["request_id"]]
        assert req["ttft_s"] == raw[sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN]["doubleValue"]
        assert req["e2e_s"] == raw[sc.GEN_AI_LATENCY_E2E]["doubleValue"]
        assert req["input_tokens"] == int(raw[sc.GEN_AI_USAGE_PROMPT_TOKENS_DEPRECATED]["intValue"])
        assert req["output_tokens"] == int(
            raw[sc.GEN_AI_USAGE_COMPLETION_TOKENS_DEPRECATED]["intValue"]
        )
        model = raw.get(sc.GEN_AI_RESPONSE_MODEL) or raw.get(sc.GEN_AI_REQUEST_MODEL)
        assert req["model"] == (model["stringValue"] if model else None)
        assert req["cancelled"] is None


def test_sagellm_request_tree_with_error_status(
    chdb: ChdbConnection, database: str, traces: str, tmp_path: Path
) -> None:
    root, child = "1111111111111111", "2222222222222222"
    attrs = {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_REQUEST_MODEL: "tiny",
        sc.SAGELLM_REQUEST_ID: "req-9",
        sc.GEN_AI_USAGE_INPUT_TOKENS: 40,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 16,
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ["error"],
        sc.ERROR_TYPE: "timeout",
        sc.SAGELLM_STREAM: True,
        sc.SAGELLM_CANCELLED: False,
    }
    ch_attrs = {**attrs, sc.GEN_AI_RESPONSE_FINISH_REASONS: '["error"]'}
    insert_span(
        chdb, traces, trace_id=TRACE, span_id=root, name="chat tiny", kind="Server",
        start_ns=T0, duration_ns=5_000_000, attributes=ch_attrs, status=("Error", "timeout"),
    )  # fmt: skip
    insert_span(
        chdb, traces, trace_id=TRACE, span_id=child, parent=root, name="queue",
        kind="Internal", start_ns=T0 + 1, duration_ns=1_000, attributes={},
    )  # fmt: skip
    spans = [
        span(TRACE, root, "chat tiny", kind=2, duration_ns=5_000_000, attributes=attrs,
             status={"code": 2, "message": "timeout"}),
        span(TRACE, child, "queue", parent=root, kind=1, start_ns=T0 + 1, duration_ns=1_000),
    ]  # fmt: skip
    from_json = _load_json(tmp_path, spans)
    from_ch = frames.load(frames.clickhouse_source(chdb, database=database))
    _same(from_ch.spans, from_json.spans)
    assert from_ch.requests.equals(from_json.requests)
    req = from_ch.requests.row(0, named=True)
    assert (req["finish_reason"], req["error_type"], req["stream"]) == ("error", "timeout", True)
    assert req["cached_prompt_share"] == pytest.approx(0.4)
    assert from_ch.spans.filter(pl.col("span_id") == root)["status_code"].item() == "ERROR"


def test_older_exporter_words_are_read(chdb: ChdbConnection, database: str, traces: str) -> None:
    """Exporters before pdata's String() wrote SPAN_KIND_SERVER / STATUS_CODE_OK."""
    insert_span(
        chdb, traces, trace_id=TRACE, span_id="3333333333333333", name="x",
        kind="SPAN_KIND_CLIENT", start_ns=T0, duration_ns=10, attributes={},
        status=("STATUS_CODE_OK", ""),
    )  # fmt: skip
    got = frames.load(frames.clickhouse_source(chdb, database=database)).spans
    assert got.select("kind", "status_code", "duration_s").row(0) == ("CLIENT", "OK", 1e-8)


def test_older_metric_layout_keeps_nanoseconds(chdb: ChdbConnection, database: str) -> None:
    """Gauge tables created by older exporters have DateTime64(9) times: read as they are."""
    tables = Tables(database=database)
    create_tables(chdb, tables, kinds=("traces",))
    ddl_text = (
        Path(__file__).parents[2] / "sagellm_obs" / "clickhouse" / "sql" / "metrics_gauge_table.sql"
    ).read_text()
    assert "TimeUnix DateTime CODEC" in ddl_text
    from sagellm_obs.clickhouse.ddl import render

    older = render("gauge", tables).replace(" DateTime CODEC", " DateTime64(9) CODEC")
    older = older.replace("TimeUnix DateTime,", "TimeUnix DateTime64(9),")
    chdb.command(older)
    t = T0 + 123_456_789
    chdb.command(
        f"""INSERT INTO {tables.qualified("gauge")} (ResourceAttributes, ServiceName, MetricName,
            MetricUnit, Attributes, StartTimeUnix, TimeUnix, Value)
        VALUES (map('service.name', 'svc', 'sagellm.run_id', 'r1'), 'svc',
            'sagellm.kv_cache.usage', '1', map('sagellm.engine_id', 'e1'),
            fromUnixTimestamp64Nano(0), fromUnixTimestamp64Nano({t}), 0.5)"""
    )
    m = frames.load(frames.clickhouse_source(chdb, database=database)).metrics
    row = m.row(0, named=True)
    assert row["time"] == pl.Series([t]).cast(pl.Datetime("ns", "UTC"))[0]
    assert (row["kind"], row["value"], row["run_id"], row["start_time"]) == (
        "gauge",
        0.5,
        "r1",
        None,
    )
    assert row["attributes"] == '{"sagellm.engine_id":"e1"}'


def test_writer_into_older_layouts(
    written: WrittenRun, chdb: ChdbConnection, database: str
) -> None:
    """Tables an older exporter made (Int64 Duration, DateTime64(9) metric times) are written as
    they are; a second export still inserts nothing, and metric times keep nanoseconds."""
    from sagellm_obs.clickhouse.ddl import KINDS, render
    from sagellm_obs.clickhouse.write import export_clickhouse

    tables = Tables(database=database)
    for kind in KINDS:
        sql = render(kind, tables).replace("Duration UInt64", "Duration Int64")
        sql = sql.replace(" DateTime CODEC", " DateTime64(9) CODEC")
        chdb.command(sql.replace("TimeUnix DateTime,", "TimeUnix DateTime64(9),"))
    first = export_clickhouse(written.path, chdb, database=database)
    second = export_clickhouse(written.path, chdb, database=database)
    assert sum(second.inserted.values()) == 0
    assert second.present == first.inserted
    got = frames.load(frames.clickhouse_source(chdb, database=database))
    local = frames.load(written.path, cache=False)
    assert got.steps.equals(local.steps)
    keys = ["name", "time", "attributes", "kind", "value", "count", "sum"]
    assert (
        got.metrics.drop("source_file", "source_line")
        .sort(keys, nulls_last=True)
        .equals(local.metrics.drop("source_file", "source_line").sort(keys, nulls_last=True))
    )
