"""The exporter's JSON layout (its ``json: true``) reads into the same frames as its Map layout.

The same spans and metric points go into both layouts in chdb: Map rows as the writer shapes them,
JSON rows as the JSON exporter shapes them (``json.Marshal`` of the typed attribute values:
numbers, booleans and arrays stay typed, dotted keys become nested paths in ClickHouse). The
reader detects the layout from the column types; both loads must be equal, and equal to the
run-folder load where the Map layout is (tests/clickhouse/test_clickhouse_roundtrip.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from sagellm_obs import frames
from sagellm_obs.clickhouse import ddl
from sagellm_obs.clickhouse.connect import ChdbConnection
from sagellm_obs.clickhouse.ddl import KINDS, LayoutError, Tables, create_tables
from sagellm_obs.clickhouse.queries import prefix_hit_rate_per_model, ttft_quantiles_per_window
from sagellm_obs.clickhouse.rows import metric_rows, raw_value, span_rows
from sagellm_obs.clickhouse.write import ARROW_SCHEMAS, export_clickhouse
from sagellm_obs.frames import files
from tests.clickhouse.conftest import insert_otlp_spans, recorded_copy
from tests.frames.frames_otlp import WrittenRun


def _typed(kvs: Iterable[Mapping[str, Any]] | None) -> str:
    """An OTLP attribute list as the JSON exporter writes it (json.Marshal of AsRaw())."""
    return json.dumps({kv["key"]: raw_value(kv.get("value") or {}) for kv in kvs or ()})


def _typed_spans(line: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for rs in line.get("resourceSpans") or ():
        res = _typed((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or ():
            for span in ss.get("spans") or ():
                yield {
                    "ResourceAttributes": res,
                    "SpanAttributes": _typed(span.get("attributes")),
                    "Events.Attributes": [
                        _typed(e.get("attributes")) for e in span.get("events") or ()
                    ],
                    "Links.Attributes": [
                        _typed(x.get("attributes")) for x in span.get("links") or ()
                    ],
                }


def _typed_points(line: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for rm in line.get("resourceMetrics") or ():
        res = _typed((rm.get("resource") or {}).get("attributes"))
        for sm in rm.get("scopeMetrics") or ():
            scope = _typed((sm.get("scope") or {}).get("attributes"))
            for metric in sm.get("metrics") or ():
                for kind in ("gauge", "sum", "histogram"):
                    for point in (metric.get(kind) or {}).get("dataPoints") or ():
                        ex = [
                            _typed(e.get("filteredAttributes"))
                            for e in point.get("exemplars") or ()
                        ]
                        yield {
                            "ResourceAttributes": res,
                            "ScopeAttributes": scope,
                            "Attributes": _typed(point.get("attributes")),
                            "Exemplars.FilteredAttributes": ex,
                        }


def _json_schema(kind: str) -> pa.Schema:
    """The writer's Arrow columns with the attribute columns as JSON text."""
    fields = []
    for f in ARROW_SCHEMAS[kind]:
        if pa.types.is_map(f.type):
            fields.append(pa.field(f.name, pa.string()))
        elif pa.types.is_list(f.type) and pa.types.is_map(f.type.value_type):
            fields.append(pa.field(f.name, pa.list_(pa.string())))
        else:
            fields.append(f)
    return pa.schema(fields)


def insert_json_layout(
    conn: ChdbConnection, tables: Tables, paths: Iterable[Path]
) -> dict[str, int]:
    """The OTLP lines of ``paths`` into JSON-layout tables, as the JSON exporter writes them."""
    rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for path in paths:
        for text in path.read_text().splitlines():
            line = json.loads(text)
            for row, typed in zip(span_rows(line), _typed_spans(line), strict=True):
                rows[ddl.TRACES].append({**row, **typed})
            for (kind, row), typed in zip(metric_rows(line), _typed_points(line), strict=True):
                rows[kind].append({**row, **typed})
    for kind, batch in rows.items():
        if batch:
            data = pa.Table.from_pylist(batch, schema=_json_schema(kind))
            conn.insert_arrow(tables.database, tables.name(kind), data)
    return {kind: len(batch) for kind, batch in rows.items()}


@pytest.fixture
def both(
    chdb: ChdbConnection, database: str, written: WrittenRun, tmp_path: Path
) -> tuple[frames.ClickHouseSource, frames.ClickHouseSource]:
    """The written run and spans vLLM emitted, in Map-layout tables (the writer) and in
    JSON-layout tables (database ``<database>_json``)."""
    recorded = recorded_copy("vllm_and_ours.jsonl", tmp_path / "recorded")
    otlp = [p for p, kind in files.discover(written.path) if kind == files.OTLP]
    assert otlp
    maps = Tables(database=database)
    export_clickhouse(written.path, chdb, database=database)
    insert_otlp_spans(chdb, maps, recorded)
    js = Tables(database=database + "_json")
    chdb.command(f"DROP DATABASE IF EXISTS {js.database}")
    create_tables(chdb, js, json=True)
    counts = insert_json_layout(chdb, js, [*otlp, recorded])
    assert all(counts[k] > 0 for k in KINDS), counts
    return (
        frames.clickhouse_source(chdb, database=maps.database),
        frames.clickhouse_source(chdb, database=js.database),
    )


def test_json_tables_are_the_exporters_layout(chdb: ChdbConnection, database: str) -> None:
    tables = Tables(database=database)
    create_tables(chdb, tables, json=True)
    for kind in KINDS:
        cols = ddl.describe(chdb, tables, kind)
        assert cols is not None
        assert ddl.is_json(cols, kind)
        ddl.check_layout(cols, tables, kind, json_ok=True)
        with pytest.raises(LayoutError, match="JSON layout is read, not written"):
            ddl.check_layout(cols, tables, kind)


def test_json_layout_loads_the_same_frames(
    both: tuple[frames.ClickHouseSource, frames.ClickHouseSource],
) -> None:
    maps, js = (frames.load(s) for s in both)
    assert js.spans.height == maps.spans.height > 20
    key = ["trace_id", "span_id"]
    # attribute lists: the JSON layout keeps keys sorted, the Map layout in insertion order
    assert_frame_equal(
        _by_key(js.spans.drop("source_file"), key), _by_key(maps.spans.drop("source_file"), key)
    )
    assert_frame_equal(js.requests.sort("trace_id"), maps.requests.sort("trace_id"))
    assert js.requests.height == maps.requests.height == 10
    metric_keys = ["name", "time", "attributes", "kind", "value", "count", "sum"]
    assert js.metrics.height == maps.metrics.height > 0
    # times: ns in the JSON layout's DateTime64(9), whole seconds in the Map layout's DateTime
    seconds = pl.col("time", "start_time").dt.truncate("1s")
    assert_frame_equal(
        js.metrics.drop("source_file").with_columns(seconds).sort(metric_keys, nulls_last=True),
        maps.metrics.drop("source_file").sort(metric_keys, nulls_last=True),
    )
    # the typed columns were read from the JSON paths, not left null
    assert js.requests["ttft_s"].null_count() == 0
    assert js.requests["input_tokens"].null_count() == 0


def _by_key(df: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    field = pl.element().struct.field("key")
    return df.with_columns(pl.col("attributes").list.eval(pl.element().sort_by(field))).sort(key)


def test_pushed_down_summaries_read_the_json_layout(
    both: tuple[frames.ClickHouseSource, frames.ClickHouseSource],
) -> None:
    maps, js = both
    assert_frame_equal(ttft_quantiles_per_window(js, "1m"), ttft_quantiles_per_window(maps, "1m"))
    assert_frame_equal(prefix_hit_rate_per_model(js), prefix_hit_rate_per_model(maps))
    assert js.tables is not None
    only = frames.clickhouse_source(js.target, database=js.tables.database, model="other-model")
    assert set(frames.load(only).requests["model"]) == {"other-model"}


def test_writer_refuses_json_layout_tables(
    chdb: ChdbConnection, database: str, written: WrittenRun
) -> None:
    create_tables(chdb, Tables(database=database), json=True, kinds=("traces",))
    with pytest.raises(
        LayoutError, match=r"otel_traces .*SpanAttributes is JSON.*read, not written"
    ):
        export_clickhouse(written.path, chdb, database=database)


def test_a_bad_value_in_a_json_table_names_table_and_column(
    chdb: ChdbConnection, database: str
) -> None:
    from sagellm_obs import semconv as sc
    from sagellm_obs.clickhouse.read import MalformedRowError

    tables = Tables(database=database)
    create_tables(chdb, tables, json=True, kinds=("traces",))
    attrs = {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.SAGELLM_REQUEST_ID: "r1",
        sc.GEN_AI_USAGE_INPUT_TOKENS: "twelve",
    }
    chdb.command(
        f"""INSERT INTO {tables.qualified("traces")} (Timestamp, TraceId, SpanId, SpanName,
            SpanKind, SpanAttributes) VALUES (now64(9), '{"a" * 32}', '{"b" * 16}', 'chat',
            'Server', '{json.dumps(attrs)}')"""
    )
    with pytest.raises(
        MalformedRowError,
        match=rf"{database}\.otel_traces: column "
        rf"SpanAttributes\['{sc.GEN_AI_USAGE_INPUT_TOKENS}'\] is not an integer: twelve",
    ):
        frames.load(frames.clickhouse_source(chdb, database=database))
