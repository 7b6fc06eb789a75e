"""The schema contract: every frame of a real run, and of an empty one, has its declared columns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from frames_otlp import WrittenRun

from sagellm_obs import semconv as sc
from sagellm_obs.frames import (
    METRICS,
    REQUESTS,
    REQUIRED_COLUMNS,
    SCHEMAS,
    SPANS,
    STEPS,
    Frames,
    SchemaError,
    attribute,
    check_schema,
    load,
)
from sagellm_obs.frames.schemas import conform, empty


@pytest.mark.parametrize("name", ["spans", "requests", "steps", "metrics"])
def test_real_run_frames_match_their_schemas(frames: Frames, name: str) -> None:
    df = frames.frames()[name]
    assert df.height > 0
    check_schema(df, SCHEMAS[name], name)
    assert df.schema == SCHEMAS[name]  # exactly, in order: nothing extra either
    assert tuple(df.columns) == REQUIRED_COLUMNS[name]


def test_real_run_row_counts(frames: Frames, written: WrittenRun) -> None:
    assert frames.requests.height == len(written.records)
    # A request span plus queue/prefill/decode children for each request.
    assert frames.spans.height == 4 * len(written.records)
    assert frames.steps.height == len(written.steps)
    assert frames.manifest["run_id"] == written.run_id
    assert frames.report.skipped == []


def test_time_columns_are_utc_nanoseconds() -> None:
    for schema in (SPANS, REQUESTS, STEPS, METRICS):
        for col, dtype in schema.items():
            if isinstance(dtype, pl.Datetime):
                assert dtype == pl.Datetime("ns", "UTC"), col


def test_empty_run_folder_gives_empty_frames_with_schema(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"run_id": "r-empty"}')
    for kind in ("traces", "metrics", "steps", "requests-client"):
        (tmp_path / f"{kind}-00001.jsonl").write_bytes(b"")
    out = load(tmp_path, cache=False)
    for name, df in out.frames().items():
        assert df.is_empty()
        assert df.schema == SCHEMAS[name]
    assert out.manifest == {"run_id": "r-empty"}


def test_folder_with_only_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"run_id": "r"}')
    out = load(tmp_path, cache=False)
    assert all(df.is_empty() for df in out.frames().values())
    assert out.requests.schema == REQUESTS


def test_check_schema_names_missing_and_mistyped_columns() -> None:
    df = empty(REQUESTS).drop("ttft_s", "arrival").with_columns(pl.col("e2e_s").cast(pl.Float32))
    with pytest.raises(SchemaError) as info:
        check_schema(df, REQUESTS, "requests")
    msg = str(info.value)
    assert "requests frame" in msg
    assert "ttft_s" in msg and "arrival" in msg
    assert "e2e_s is Float32, expected Float64" in msg


def test_check_schema_allows_extra_columns_and_returns_the_frame() -> None:
    df = empty(STEPS).with_columns(pl.lit(1).alias("extra"))
    assert check_schema(df, STEPS) is df


def test_check_schema_catches_a_wrong_timezone() -> None:
    df = empty(STEPS).with_columns(pl.col("time").dt.replace_time_zone(None))
    with pytest.raises(SchemaError, match="time is Datetime"):
        check_schema(df, STEPS, "steps")


def test_conform_orders_adds_and_casts() -> None:
    df = pl.DataFrame({"output_tokens": [3], "request_id": ["a"], "junk": [1]})
    out = conform(df, REQUESTS)
    assert out.schema == REQUESTS
    assert out.row(0, named=True)["output_tokens"] == 3
    assert out.row(0, named=True)["ttft_s"] is None


def test_attribute_reads_the_rest_of_the_attributes(frames: Frames, written: WrittenRun) -> None:
    req = frames.spans.filter(pl.col("kind") == "SERVER").sort("request_id")
    out = req.select(
        "request_id",
        attribute(sc.GEN_AI_REQUEST_MAX_TOKENS, pl.Int64),
        attribute(sc.GEN_AI_REQUEST_TEMPERATURE, pl.Float64),
        attribute(sc.SAGELLM_KV_TOKENS, pl.Int64),
        attribute("no.such.key"),
    )
    for row in out.iter_rows(named=True):
        record = written.records[row["request_id"]]
        assert row[sc.GEN_AI_REQUEST_MAX_TOKENS] == record.max_tokens
        assert row[sc.GEN_AI_REQUEST_TEMPERATURE] == record.temperature
        assert row[sc.SAGELLM_KV_TOKENS] == record.kv_tokens
        assert row["no.such.key"] is None


def test_typed_attributes_are_not_repeated_in_attributes(frames: Frames) -> None:
    keys = set(frames.spans["attributes"].explode().struct.field("key").drop_nulls().to_list())
    assert sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN not in keys
    assert sc.SAGELLM_REQUEST_ID not in keys
    assert sc.GEN_AI_REQUEST_MAX_TOKENS in keys
    assert sc.GEN_AI_RESPONSE_MODEL in keys  # only a fallback for `model`: kept


def test_importing_frames_pulls_no_engine_or_chart_libraries() -> None:
    code = (
        "import sys, sagellm_obs.frames\n"
        "bad = [m for m in ('vllm', 'torch', 'altair') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
