"""Low-cardinality text is Categorical on every path into the frames, with the JSON's values.

The declared dtypes (``frames.schemas``) are checked on each way a frame is made: the store's
columnar copies, a JSON-only load, a lazy scan, many sources at once, the Parquet cache of a
collector's folder, frames saved and loaded back, and copies or saved frames of the format before
(String text) that must be rebuilt or cast. The values are compared with the OTLP/JSON lines read
by a plain ``json`` parse, independent of the loader.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from frames_otlp import WrittenRun, write_run
from polars.testing import assert_frame_equal

from sagellm_obs import semconv as sc
from sagellm_obs.frames import SCHEMAS, Frames, load, scan
from sagellm_obs.frames.schemas import RUNS, SAVED_SCHEMAS
from sagellm_obs.store.layout import COLUMNAR_DIR

# OTLP's enum numbers (opentelemetry-proto trace.proto), written out here rather than imported.
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}

TEXT_COLUMNS = {
    "spans": (
        "name",
        "kind",
        "status_code",
        "service_name",
        "engine_id",
        "run_id",
        "scope",
        "operation",
        "model",
        "finish_reason",
        "error_type",
        "source_file",
    ),
    "requests": (
        "model",
        "engine_id",
        "run_id",
        "operation",
        "finish_reason",
        "error_type",
        "source",
        "workload",
        "workload_phase",
    ),
    "steps": ("engine_id", "run_id"),
    "metrics": (
        "name",
        "kind",
        "unit",
        "temporality",
        "service_name",
        "engine_id",
        "run_id",
        "source_file",
    ),
    "kv_events": (
        "engine_id",
        "run_id",
        "event",
        "kind",
        "evict_reason",
        "medium",
        "source_file",
    ),
}
IDS = ("trace_id", "span_id", "parent_span_id", "request_id")


def _assert_compact(f: Frames) -> None:
    frames = {**f.frames(), "kv_events": f.kv_events}
    for name, cols in TEXT_COLUMNS.items():
        schema = frames[name].schema
        for col in cols:
            assert schema[col] == pl.Categorical, (name, col, schema[col])
        assert schema == SAVED_SCHEMAS[name] | {
            c: schema[c] for c in schema if c not in SAVED_SCHEMAS[name]
        }
    for col in IDS:  # ids stay text
        assert frames["spans"].schema[col] == pl.String
    key = pl.Struct({"key": pl.Categorical, "value": pl.String})
    assert frames["spans"].schema["attributes"] == pl.List(key)
    event = pl.Struct({"name": pl.Categorical, "time": pl.Datetime("ns", "UTC")})
    assert frames["spans"].schema["events"] == pl.List(event)
    for col in ("run_id", "kind", "model", "engine_id", "workload"):
        assert f.runs.schema[col] == pl.Categorical


def _same(a: Frames, b: Frames) -> None:
    for name in SCHEMAS:
        assert_frame_equal(a.frames()[name], b.frames()[name])
    assert_frame_equal(a.kv_events, b.kv_events)


def _copy(written: WrittenRun, dest: Path) -> Path:
    shutil.copytree(written.path, dest)
    return dest


def test_every_path_gives_the_compact_dtypes(written: WrittenRun, tmp_path: Path) -> None:
    run = _copy(written, tmp_path / "run")
    reference = load(run, cache=False)
    _assert_compact(reference)
    copies = load(run)
    assert copies.from_cache
    _assert_compact(copies)
    _same(copies, reference)
    lazy = scan(run)
    for name, schema in SAVED_SCHEMAS.items():
        assert lazy.frames().get(name, lazy.kv_events).collect_schema() == schema
    _same(lazy.collect(), reference)

    # A collector's folder: built from the JSON, then read from the Parquet cache.
    export = tmp_path / "export"
    export.mkdir()
    for p in run.glob("*.jsonl"):
        shutil.copy(p, export / p.name)
    built, cached = load(export), load(export)
    assert not built.from_cache and cached.from_cache
    for f in (built, cached, load(export / ".cache")):
        _assert_compact(f)
        for name in SCHEMAS:  # without the manifest, steps have no run_id
            assert_frame_equal(
                f.frames()[name].drop("run_id"), reference.frames()[name].drop("run_id")
            )

    saved = load(reference.save(tmp_path / "saved"))
    _assert_compact(saved)
    _same(saved, reference)


def test_many_sources_keep_the_compact_dtypes_and_join_runs(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [({"i": 0, "model": "model-a"},)], engine_id="engine-a")
    b = write_run(
        tmp_path / "b", [({"i": 1, "model": "model-b", "operation": "chat"},)], engine_id="engine-b"
    )
    both = load([a.path, b.path])
    _assert_compact(both)
    assert both.requests["model"].to_list() == ["model-a", "model-b"]
    assert both.steps.filter(pl.col("engine_id") == "engine-b").height == len(b.steps)
    assert both.requests.filter(pl.col("run_id") == b.run_id)["model"].to_list() == ["model-b"]
    assert both.requests.filter(pl.col("model").is_in(["model-a", "nope"])).height == 1
    # runs joins every frame on run_id without a cast.
    joined = both.requests.join(both.runs.select("run_id", "path"), on="run_id", how="left")
    assert joined["path"].to_list() == [str(a.path), str(b.path)]
    # Each source alone, concatenated: the same rows (categories are global).
    alone = pl.concat([load(a.path).requests, load(b.path).requests])
    assert_frame_equal(alone.drop("run_id"), both.requests.drop("run_id"))
    lazy = scan([a.path, b.path]).requests.filter(pl.col("model") == "model-b").collect()
    assert lazy["request_id"].to_list() == both.requests["request_id"].to_list()[1:]


def _text(v: dict[str, Any] | None) -> str | None:
    if v is None:
        return None
    if "arrayValue" in v:
        values = v["arrayValue"].get("values", [])
        return _text(values[0]) if values else None
    for k in ("stringValue", "intValue", "doubleValue", "boolValue"):
        if k in v:
            return str(v[k]) if k != "boolValue" else str(v[k]).lower()
    return None


def _json_spans(run: Path) -> dict[str, dict[str, Any]]:
    """Every span of the traces files, read with ``json`` alone, by span id."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(run.glob("traces-*.jsonl")):
        for line in path.read_text().splitlines():
            for rs in json.loads(line).get("resourceSpans", []):
                res = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
                for ss in rs["scopeSpans"]:
                    for sp in ss["spans"]:
                        attrs = {a["key"]: a["value"] for a in sp.get("attributes", [])}
                        engine = attrs.get(sc.SAGELLM_ENGINE_ID) or res.get(sc.RESOURCE_ENGINE_ID)
                        out[sp["spanId"]] = {
                            "name": sp["name"],
                            "kind": KINDS[sp.get("kind", 0)],
                            "status_code": STATUS[sp.get("status", {}).get("code", 0)],
                            "service_name": _text(res["service.name"]),
                            "scope": ss["scope"]["name"],
                            "engine_id": _text(engine),
                            "run_id": _text(res.get(sc.RESOURCE_RUN_ID)),
                            "operation": _text(attrs.get(sc.GEN_AI_OPERATION_NAME)),
                            "model": _text(attrs.get(sc.GEN_AI_REQUEST_MODEL)),
                            "finish_reason": _text(attrs.get(sc.GEN_AI_RESPONSE_FINISH_REASONS)),
                            "error_type": _text(attrs.get(sc.ERROR_TYPE)),
                            "source_file": path.name,
                            "events": [e["name"] for e in sp.get("events", [])],
                            "keys": set(attrs),
                        }
    return out


def test_text_values_equal_a_plain_json_read(written: WrittenRun) -> None:
    want = _json_spans(written.path)
    f = load(written.path)
    assert f.from_cache
    cols = list(TEXT_COLUMNS["spans"])
    rows = f.spans.select("span_id", *cols, "events", "attributes").to_dicts()
    assert len(rows) == len(want) > 10
    for row in rows:
        expect = want[row["span_id"]]
        assert {c: row[c] for c in cols} == {c: expect[c] for c in cols}
        assert [e["name"] for e in row["events"]] == expect["events"]
        assert {a["key"] for a in row["attributes"]} <= expect["keys"]
    # The requests frame's text is its request span's.
    for row in f.requests.select("span_id", *TEXT_COLUMNS["requests"]).to_dicts():
        expect = want[row["span_id"]]
        for col in ("model", "engine_id", "run_id", "operation", "finish_reason", "error_type"):
            assert row[col] == expect[col], col
        assert row["source"] == "sagellm"

    # Metric names and units, one row per data point.
    points: Counter[tuple[str, str]] = Counter()
    for path in written.path.glob("metrics-*.jsonl"):
        for line in path.read_text().splitlines():
            for rm in json.loads(line).get("resourceMetrics", []):
                for sm in rm["scopeMetrics"]:
                    for m in sm["metrics"]:
                        body = next(m[k] for k in ("sum", "gauge", "histogram") if k in m)
                        points[(m["name"], m.get("unit", ""))] += len(body["dataPoints"])
    got = Counter(zip(f.metrics["name"].to_list(), f.metrics["unit"].to_list(), strict=True))
    assert got == points
    assert f.steps["engine_id"].to_list() == [s[sc.STEP_ENGINE_ID] for s in written.steps]


def _as_text(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with every Categorical (nested too) as String: the dtypes of the format before."""
    text_attrs = pl.List(pl.Struct({"key": pl.String, "value": pl.String}))
    out = df.with_columns(pl.col(pl.Categorical).cast(pl.String))
    if "attributes" in df.columns and df.schema["attributes"] != pl.String:
        events = pl.List(pl.Struct({"name": pl.String, "time": pl.Datetime("ns", "UTC")}))
        out = out.with_columns(pl.col("attributes").cast(text_attrs), pl.col("events").cast(events))
    return out


def test_frames_saved_with_text_columns_load_compact(written: WrittenRun, tmp_path: Path) -> None:
    reference = load(written.path, cache=False)
    saved = reference.save(tmp_path / "saved")
    for p in saved.glob("*.parquet"):
        _as_text(pl.read_parquet(p)).write_parquet(p)
    assert pl.read_parquet_schema(saved / "spans.parquet")["name"] == pl.String
    back = load(saved)
    _assert_compact(back)
    _same(back, reference)


def test_copies_of_the_format_before_are_rebuilt(
    written: WrittenRun, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _copy(written, tmp_path / "run")
    reference = load(run, cache=False)
    for copy in (run / COLUMNAR_DIR).glob("*.parquet"):
        meta = {k: v for k, v in pl.read_parquet_metadata(copy).items() if k.startswith("sagellm")}
        (key,) = meta
        footer = json.loads(meta[key])
        footer["format"] = 3  # the last format with String text
        _as_text(pl.read_parquet(copy)).write_parquet(copy, metadata={key: json.dumps(footer)})
    with caplog.at_level(logging.INFO, logger="sagellm_obs.frames.sources"):
        rebuilt = load(run)
    assert {why for _, why in rebuilt.rebuilt} == {"older format"}
    assert len(rebuilt.rebuilt) == 3
    assert "older format" in caplog.text
    _assert_compact(rebuilt)
    _same(rebuilt, reference)
    again = load(run)
    assert again.from_cache and again.rebuilt == []
    assert (
        pl.read_parquet_schema(next((run / COLUMNAR_DIR).glob("*.spans.parquet")))["name"]
        == pl.Categorical
    )
    assert RUNS["run_id"] == pl.Categorical
