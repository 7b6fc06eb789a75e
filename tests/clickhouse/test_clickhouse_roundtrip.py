"""A run folder exported into the exporter's tables (real chdb) loads back as the same frames.

Columns that differ by construction (docs/clickhouse.md): ``source_file`` (the table) and
``source_line`` (null); metric ``time``/``start_time`` keep whole seconds in the current
exporter layout (``DateTime``); ``attributes`` come back in the exporter's order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from sagellm_obs import frames
from sagellm_obs import semconv as sc
from sagellm_obs.clickhouse.connect import ChdbConnection
from sagellm_obs.clickhouse.ddl import KINDS, Tables
from sagellm_obs.clickhouse.write import export_clickhouse
from sagellm_obs.frames import KV_EVENTS
from sagellm_obs.store import layout
from tests.frames.frames_otlp import T0, WrittenRun

LOCATION = ["source_file", "source_line"]


def _sorted_attributes(df: pl.DataFrame) -> pl.DataFrame:
    key = pl.element().struct.field("key")
    return df.with_columns(pl.col("attributes").list.eval(pl.element().sort_by(key)))


def _spans(df: pl.DataFrame) -> pl.DataFrame:
    return _sorted_attributes(df.drop(LOCATION).sort("trace_id", "span_id"))


def _metrics(df: pl.DataFrame, *, truncate: bool) -> pl.DataFrame:
    out = df.drop(LOCATION)
    if truncate:
        out = out.with_columns(pl.col("time", "start_time").dt.truncate("1s"))
    keys = ["name", "time", "attributes", "kind", "value", "count", "sum"]
    return out.sort(keys, nulls_last=True)


@pytest.fixture
def exported(written: WrittenRun, chdb: ChdbConnection, database: str) -> frames.Frames:
    result = export_clickhouse(written.path, chdb, database=database)
    assert result.inserted["traces"] == 20
    return frames.load(frames.clickhouse_source(chdb, database=database))


def test_spans_equal_the_run_folder_load(written: WrittenRun, exported: frames.Frames) -> None:
    local = frames.load(written.path, cache=False)
    assert exported.spans.height == local.spans.height == 20
    assert _spans(exported.spans).equals(_spans(local.spans))
    assert set(exported.spans["source_file"]) == {exported.spans["source_file"][0]}
    assert exported.spans["source_file"][0].endswith(".otel_traces")
    assert exported.spans["source_line"].is_null().all()


def test_requests_and_steps_equal_the_run_folder_load(
    written: WrittenRun, exported: frames.Frames
) -> None:
    local = frames.load(written.path, cache=False)
    assert exported.requests.sort("request_id").equals(local.requests.sort("request_id"))
    assert exported.requests.height == 5
    # Steps travel as gauge and delta-sum points; their exact times as an attribute.
    assert exported.steps.equals(local.steps)
    assert exported.steps.height == len(written.steps)


def test_metrics_equal_the_run_folder_load_to_the_second(
    written: WrittenRun, exported: frames.Frames
) -> None:
    local = frames.load(written.path, cache=False)
    # The step points are not metric points: they come back as steps only.
    assert exported.metrics.height == local.metrics.height
    assert _metrics(exported.metrics, truncate=False).equals(_metrics(local.metrics, truncate=True))


def test_runs_row_names_the_run(written: WrittenRun, exported: frames.Frames) -> None:
    assert exported.runs["run_id"].to_list() == [written.run_id]
    assert exported.runs["kind"].to_list() == ["clickhouse"]


def test_second_export_inserts_nothing(
    written: WrittenRun, chdb: ChdbConnection, database: str
) -> None:
    first = export_clickhouse(written.path, chdb, database=database)
    second = export_clickhouse(written.path, chdb, database=database)
    assert all(n > 0 for n in first.inserted.values())
    assert second.inserted == dict.fromkeys(KINDS, 0)
    assert second.present == first.inserted
    tables = Tables(database=database)
    for kind in KINDS:
        n = chdb.query_arrow(f"SELECT count() AS n FROM {tables.qualified(kind)}")
        assert n.column("n")[0].as_py() == first.inserted[kind]


def test_interrupted_export_is_completed(
    written: WrittenRun, chdb: ChdbConnection, database: str
) -> None:
    first = export_clickhouse(written.path, chdb, database=database)
    tables = Tables(database=database)
    # Lose some spans and metric points, as an export cut short would.
    chdb.command(f"DELETE FROM {tables.qualified('traces')} WHERE SpanName = 'decode'")
    chdb.command(f"DELETE FROM {tables.qualified('histogram')} WHERE MetricName LIKE 'sagellm.%'")
    again = export_clickhouse(written.path, chdb, database=database)
    assert again.inserted["traces"] == 5  # one decode span per request
    assert again.inserted["histogram"] > 0
    assert again.inserted["gauge"] == again.inserted["sum"] == 0
    assert sum(again.inserted.values()) + sum(again.present.values()) == sum(
        first.inserted.values()
    )


def test_filters_run_as_where_clauses(
    written: WrittenRun, chdb: ChdbConnection, database: str
) -> None:
    export_clickhouse(written.path, chdb, database=database)
    everything = frames.load(frames.clickhouse_source(chdb, database=database))
    other = frames.load(frames.clickhouse_source(chdb, database=database, model="other-model"))
    # A model filter keeps whole traces: the request span and its queue/prefill/decode spans.
    assert other.requests["model"].to_list() == ["other-model"]
    assert other.spans.height == 4
    assert other.spans["trace_id"].n_unique() == 1
    one = everything.requests["trace_id"][0]
    by_id = frames.load(frames.clickhouse_source(chdb, database=database, trace_ids=[one]))
    assert set(by_id.spans["trace_id"]) == {one}
    start = everything.spans["start"].sort()
    late = frames.load(frames.clickhouse_source(chdb, database=database, since=start[10]))
    assert late.spans.height == 10
    early = frames.load(frames.clickhouse_source(chdb, database=database, until=start[10]))
    assert early.spans.height == 10
    none = frames.load(frames.clickhouse_source(chdb, database=database, run_id="no-such-run"))
    assert none.spans.is_empty() and none.metrics.is_empty() and none.steps.is_empty()
    mine = frames.load(frames.clickhouse_source(chdb, database=database, run_id=written.run_id))
    assert mine.spans.height == 20 and mine.steps.height == len(written.steps)
    svc = frames.load(frames.clickhouse_source(chdb, database=database, service="elsewhere"))
    assert svc.spans.is_empty()


def test_scan_and_dsn(
    written: WrittenRun, chdb_path: str, chdb: ChdbConnection, database: str
) -> None:
    export_clickhouse(written.path, f"chdb:{chdb_path}?database={database}")
    scan = frames.scan(f"chdb:{chdb_path}?database={database}")
    assert isinstance(scan.spans, pl.LazyFrame)
    assert scan.requests.collect().height == 5
    assert frames.load(f"chdb://{chdb_path}?database={database}").spans.height == 20


def test_cli_exports_with_progress(
    written: WrittenRun, chdb_path: str, chdb: ChdbConnection, database: str
) -> None:
    from sagellm_obs.cli import app

    args = ["export", "clickhouse", str(written.path), "--chdb", chdb_path, "--database", database]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert f"{database}.otel_traces: 20 inserted, 0 already present" in first.output
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert f"{database}.otel_traces: 0 inserted, 20 already present" in second.output
    both = CliRunner().invoke(app, [*args, "--dsn", "clickhouse://localhost/x"])
    assert both.exit_code == 2
    missing = CliRunner().invoke(
        app, ["export", "clickhouse", str(Path(written.path) / "nope"), "--chdb", chdb_path]
    )
    assert missing.exit_code == 1
    assert "not a run folder" in missing.output


def test_one_database_of_many_runs(
    written: WrittenRun,
    chdb: ChdbConnection,
    database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from tests.clickhouse.conftest import BATCHES
    from tests.frames.frames_otlp import write_run

    second = write_run(tmp_path_factory.mktemp("second") / "run", BATCHES[:1])
    for run in (written, second):
        export_clickhouse(run.path, chdb, database=database)
    both = frames.load(frames.clickhouse_source(chdb, database=database))
    assert sorted(both.runs["run_id"]) == sorted([written.run_id, second.run_id])
    assert both.requests.height == 5 + 3
    for run in (written, second):
        one = frames.load(frames.clickhouse_source(chdb, database=database, run_id=run.run_id))
        local = frames.load(run.path, cache=False)
        assert one.requests.sort("request_id").equals(local.requests.sort("request_id"))
        assert one.steps.equals(local.steps)
        assert set(both.steps.filter(pl.col("run_id") == run.run_id)["step"]) == set(
            local.steps["step"]
        )


def test_a_clickhouse_source_is_loaded_on_its_own(written: WrittenRun, chdb_path: str) -> None:
    with pytest.raises(ValueError, match="loaded on its own"):
        frames.load([str(written.path), f"chdb:{chdb_path}"])


def test_export_reports_progress_and_bad_lines(
    written: WrittenRun, chdb: ChdbConnection, database: str, tmp_path: Path
) -> None:
    import shutil

    from sagellm_obs.store import StoreFormatError

    run = tmp_path / "run"
    shutil.copytree(written.path, run)
    traces = sorted(run.glob("traces-*.jsonl"))[0]
    with traces.open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(StoreFormatError, match=traces.name):
        export_clickhouse(run, chdb, database=database)
    calls: list[tuple[str, int, int]] = []
    result = export_clickhouse(
        run, chdb, database=database, errors="skip", progress=lambda *a: calls.append(a)
    )
    assert len(result.report.skipped) == 1
    assert result.inserted["traces"] == 20
    # Per file of the run folder (spans, steps), then the run's metric points: rows inserted
    # so far, of the rows to insert.
    assert (traces.name, 0, 20) in calls and (traces.name, 20, 20) in calls
    steps = sorted(run.glob("steps-*.jsonl"))[0].name
    assert {name for name, _, _ in calls} == {traces.name, steps, "metric points"}
    assert calls[-1][0] == "metric points" and calls[-1][1] == calls[-1][2] > 0


def test_rotated_run_is_exported_file_by_file(
    chdb: ChdbConnection, database: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.clickhouse.conftest import BATCHES
    from tests.frames.frames_otlp import write_run

    run = write_run(tmp_path_factory.mktemp("rotated") / "run", BATCHES, store_max_bytes=4096)
    assert len(list(run.path.glob("traces-*.jsonl"))) > 1
    first = export_clickhouse(run.path, chdb, database=database)
    again = export_clickhouse(run.path, chdb, database=database)
    assert sum(again.inserted.values()) == 0 and again.present == first.inserted
    got = frames.load(frames.clickhouse_source(chdb, database=database))
    local = frames.load(run.path, cache=False)
    assert _spans(got.spans).equals(_spans(local.spans))
    assert got.steps.equals(local.steps)


def test_kv_events_are_not_in_the_tables(
    written: WrittenRun, chdb: ChdbConnection, database: str, tmp_path: Path
) -> None:
    """A run's kv-events file is not exported (the exporter's tables have no place for it), so
    a ClickHouse source's kv_events frame is empty and typed: nothing is guessed."""
    run = tmp_path / "run"
    shutil.copytree(written.path, run)
    block = "00000000000000ff"
    record = {
        "event": "evict_after",
        "request_id": "",
        "trace_id": None,
        "kv_handle": {"handle_id": block, "request_id": "", "num_tokens": 0, "device": "cpu"},
        "evict_reason": "memory_pressure",
        "device": "cpu",
        "elapsed_ms": 0.0,
        "success": True,
        "error_message": None,
        "metadata": {
            sc.KV_TIME_UNIX_NANO: T0,
            sc.KV_ENGINE_ID: "e1",
            sc.KV_KIND: sc.KV_REMOVED,
            sc.KV_BLOCK_HASH: block,
        },
    }
    layout.data_file(run, layout.KV_EVENTS, 1).write_text(json.dumps(record) + "\n")
    assert frames.load(run, cache=False).kv_events["block_hash"].to_list() == [block]
    export_clickhouse(run, chdb, database=database)
    back = frames.load(frames.clickhouse_source(chdb, database=database))
    assert back.spans.height == 20
    assert back.kv_events.is_empty() and back.kv_events.schema == KV_EVENTS
