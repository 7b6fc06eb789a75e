"""The optional typed columns: the summaries give the same figures with and without them."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sagellm_obs import frames
from sagellm_obs import semconv as sc
from sagellm_obs.clickhouse import add_typed_columns
from sagellm_obs.clickhouse.connect import ChdbConnection
from sagellm_obs.clickhouse.ddl import LayoutError, Tables, create_tables
from sagellm_obs.clickhouse.queries import prefix_hit_rate_per_model, ttft_quantiles_per_window
from sagellm_obs.clickhouse.typed import TYPED, column_name
from sagellm_obs.clickhouse.write import export_clickhouse
from tests.clickhouse.conftest import insert_otlp_spans, recorded_copy
from tests.clickhouse.test_clickhouse_pushdown import polars_hit_rate, polars_ttft
from tests.frames.frames_otlp import WrittenRun

NAMES = sorted(column_name(c) for c in TYPED)


def columns(chdb: ChdbConnection, database: str, table: str = "otel_traces") -> dict[str, str]:
    rows = chdb.query_arrow(
        "SELECT name, default_kind FROM system.columns WHERE database = {db:String} "
        "AND table = {t:String} AND startsWith(name, 'sagellm_')",
        {"db": database, "t": table},
    ).to_pylist()
    return {r["name"]: r["default_kind"] for r in rows}


def summaries(src: frames.ClickHouseSource) -> tuple[pl.DataFrame, pl.DataFrame]:
    return ttft_quantiles_per_window(src, "1m", (0.5, 0.99)), prefix_hit_rate_per_model(src)


def test_an_exported_run_gives_the_run_folders_figures_with_and_without(
    written: WrittenRun, chdb: ChdbConnection, database: str
) -> None:
    export_clickhouse(written.path, chdb, database=database, typed_columns=False)
    src = frames.clickhouse_source(chdb, database=database)
    local = frames.load(written.path, cache=False).requests
    want = polars_ttft(local, "1m", (0.5, 0.99)), polars_hit_rate(local)
    plain = summaries(src)
    assert columns(chdb, database) == {}
    assert add_typed_columns(chdb, database=database) == [column_name(c) for c in TYPED]
    assert columns(chdb, database) == dict.fromkeys(NAMES, "MATERIALIZED")
    typed = summaries(src)
    for got in (plain, typed):
        assert_frame_equal(got[0], want[0], check_exact=False, rel_tol=1e-12)
        assert_frame_equal(got[1], want[1])
    # A second call adds nothing; a second export (no new rows) changes nothing.
    assert add_typed_columns(chdb, database=database) == []
    export_clickhouse(written.path, chdb, database=database)
    assert_frame_equal(summaries(src)[1], want[1])


def test_the_alter_path_on_a_populated_table(
    many: frames.ClickHouseSource, chdb: ChdbConnection
) -> None:
    """Rows inserted before the ALTER (materialized by the mutation) and after it (filled on
    insert, by the Collector's INSERT that names its columns) read alike."""
    assert many.tables is not None
    db = many.tables.database
    requests = frames.load(many).requests  # read from the Map by the loader, not the queries
    want_ttft, want_hits = polars_ttft(requests, "1m", (0.5, 0.99)), polars_hit_rate(requests)
    plain = summaries(many)
    add_typed_columns(chdb, database=db)
    # The materialized parts hold the same values as the Map, with the frames' types.
    rows = chdb.query_arrow(
        f"SELECT SpanAttributes AS attrs, sagellm_ttft_s AS ttft, sagellm_input_tokens AS inp, "
        f"toTypeName(ttft) AS t, toTypeName(inp) AS i FROM {db}.otel_traces"
    ).to_pylist()
    assert {(r["t"], r["i"]) for r in rows} == {("Nullable(Float64)", "Nullable(Int64)")}
    for r in rows:
        attrs = dict(r["attrs"])
        ttft = attrs.get(sc.SAGELLM_TTFT, attrs.get(sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN))
        inp = attrs.get(
            sc.GEN_AI_USAGE_INPUT_TOKENS, attrs.get(sc.GEN_AI_USAGE_PROMPT_TOKENS_DEPRECATED)
        )
        assert r["ttft"] == (None if ttft is None else float(ttft))
        assert r["inp"] == (None if inp is None else int(inp))
    typed = summaries(many)
    for got in (plain, typed):
        assert_frame_equal(got[0], want_ttft, check_exact=False, rel_tol=1e-12)
        assert_frame_equal(got[1], want_hits)
    # Copy the rows into a table given the columns before its rows arrive.
    fresh = Tables(database=db, traces="fresh")
    create_tables(chdb, fresh, kinds=("traces",))
    add_typed_columns(chdb, database=db, traces_table="fresh", materialize=False)
    chdb.command(
        f"INSERT INTO {fresh.qualified('traces')} (Timestamp, TraceId, SpanId, SpanName, "
        "SpanKind, ServiceName, SpanAttributes, Duration, StatusCode) SELECT Timestamp, "
        "TraceId, SpanId, SpanName, SpanKind, ServiceName, SpanAttributes, Duration, "
        f"StatusCode FROM {db}.otel_traces"
    )
    after = summaries(replace(many, tables=fresh))
    assert_frame_equal(after[0], want_ttft, check_exact=False, rel_tol=1e-12)
    assert_frame_equal(after[1], want_hits)


def test_vllm_spans_under_ours_stay_out_with_typed_columns(
    chdb: ChdbConnection, database: str, tmp_path: object
) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    path = recorded_copy("vllm_and_ours.jsonl", tmp_path / "rec")
    tables = Tables(database=database)
    create_tables(chdb, tables, kinds=("traces",))
    insert_otlp_spans(chdb, tables, path)
    add_typed_columns(chdb, database=database)
    local = frames.load(path, cache=False).requests
    assert (local["operation"].is_not_null()).all()  # only our spans are requests
    src = frames.clickhouse_source(chdb, database=database)
    assert_frame_equal(prefix_hit_rate_per_model(src), polars_hit_rate(local))
    assert_frame_equal(
        ttft_quantiles_per_window(src, "1s", (0.5,)),
        polars_ttft(local, "1s", (0.5,)),
        check_exact=False,
        rel_tol=1e-12,
    )


def test_unparsable_numbers_read_as_null_alike(chdb: ChdbConnection, database: str) -> None:
    tables = Tables(database=database)
    create_tables(chdb, tables, kinds=("traces",))
    attrs = (
        f"map('{sc.GEN_AI_OPERATION_NAME}', 'chat', '{sc.SAGELLM_REQUEST_ID}', toString(number), "
        f"'{sc.GEN_AI_REQUEST_MODEL}', 'm', '{sc.GEN_AI_USAGE_INPUT_TOKENS}', "
        f"if(number = 1, 'many', toString(number)), '{sc.SAGELLM_TTFT}', "
        f"if(number = 2, 'soon', '0.5'))"
    )
    chdb.command(
        f"INSERT INTO {tables.qualified('traces')} (Timestamp, TraceId, SpanId, SpanName, "
        f"SpanKind, ServiceName, SpanAttributes) SELECT now64(9), toString(number), "
        f"toString(number), 'chat', 'Server', 'svc', {attrs} FROM numbers(4)"
    )
    src = frames.clickhouse_source(chdb, database=database)
    plain = summaries(src)
    add_typed_columns(chdb, database=database)
    typed = summaries(src)
    assert_frame_equal(plain[0], typed[0])
    assert_frame_equal(plain[1], typed[1])
    assert typed[0]["requests"].sum() == 3  # the unparsable TTFT is left out
    assert typed[1]["input_tokens"].to_list() == [0 + 2 + 3]


def test_bad_typed_columns_name_table_and_column(chdb: ChdbConnection, database: str) -> None:
    with pytest.raises(LayoutError, match=rf"{database}\.otel_traces does not exist"):
        add_typed_columns(chdb, database=database)
    tables = Tables(database=database)
    create_tables(chdb, tables, kinds=("traces",))
    table = tables.qualified("traces")
    src = frames.clickhouse_source(chdb, database=database)
    chdb.command(f"ALTER TABLE {table} ADD COLUMN sagellm_ttft_s String")
    match = rf"{database}\.otel_traces: column sagellm_ttft_s is String, expected Nullable"
    with pytest.raises(LayoutError, match=match):
        prefix_hit_rate_per_model(src)
    with pytest.raises(LayoutError, match=match):
        add_typed_columns(chdb, database=database)
    chdb.command(f"ALTER TABLE {table} MODIFY COLUMN sagellm_ttft_s Nullable(Float64)")
    with pytest.raises(LayoutError, match=r"column sagellm_ttft_s is a plain column, expected"):
        ttft_quantiles_per_window(src)


def test_a_table_of_another_layout_is_refused(chdb: ChdbConnection, database: str) -> None:
    tables = Tables(database=database)
    create_tables(chdb, tables, kinds=("traces",), json=True)
    with pytest.raises(LayoutError, match=rf"{database}\.otel_traces .*SpanAttributes"):
        add_typed_columns(chdb, database=database)


def test_export_adds_them_and_the_cli_materializes(
    written: WrittenRun, chdb: ChdbConnection, database: str, chdb_path: str
) -> None:
    from typer.testing import CliRunner

    from sagellm_obs.cli import app

    export_clickhouse(written.path, chdb, database=database)
    assert columns(chdb, database) == dict.fromkeys(NAMES, "MATERIALIZED")
    local = frames.load(written.path, cache=False).requests
    src = frames.clickhouse_source(chdb, database=database)
    assert_frame_equal(prefix_hit_rate_per_model(src), polars_hit_rate(local))
    args = ["export", "clickhouse-columns", "--chdb", chdb_path, "--database", database]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "were all there" in out.output
    bad = CliRunner().invoke(app, [*args[:-1], "nowhere"])
    assert bad.exit_code == 1
    assert "nowhere.otel_traces does not exist" in bad.output
