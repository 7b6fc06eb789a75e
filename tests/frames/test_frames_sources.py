"""Sources: collector-style directories, single files, Parquet directories and the cache."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from frames_otlp import (
    T0,
    WrittenRun,
    histogram_metric,
    metrics_line,
    resource,
    span,
    sum_metric,
    traces_line,
    write_lines,
)
from polars.testing import assert_frame_equal

from sagellm_obs import semconv as sc
from sagellm_obs.frames import (
    KV_EVENTS,
    SCHEMAS,
    Frames,
    load,
    load_metrics,
    load_spans,
    load_steps,
)

SOURCE_COLUMNS = ("source_file", "source_line")
files_mod = importlib.import_module("sagellm_obs.frames.files")


def _collector_span(i: int, **attrs: Any) -> dict[str, Any]:
    """A span as the Collector's file exporter writes it: flags, empty parentSpanId, version."""
    return span(
        f"{i + 1:032x}",
        f"{i + 1:016x}",
        "chat m",
        parent="",
        kind=2,
        start_ns=T0 + i * 10**9,
        attributes={
            sc.SAGELLM_REQUEST_ID: f"r{i}",
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_REQUEST_MODEL: "m",
            sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN: 0.1 * (i + 1),
            sc.GEN_AI_USAGE_INPUT_TOKENS: 10 * (i + 1),
            **attrs,
        },
        flags=257,
        status={"code": 2, "message": "boom"} if i == 1 else {},
    )


def _collector_dir(path: Path) -> Path:
    path.mkdir()
    res = resource(service="collector-svc", engine_id="e1", run_id="run-c")
    traces = traces_line([_collector_span(0), _collector_span(1)], res=res)
    traces["resourceSpans"][0]["schemaUrl"] = ""
    traces["resourceSpans"][0]["scopeSpans"][0]["scope"]["version"] = ""
    counter = sum_metric("sagellm.requests", [(T0 + 5 * 10**9, 7)], attributes={"k": "v"})
    hist = histogram_metric(
        "gen_ai.server.time_to_first_token", [(T0 + 5 * 10**9, [1, 2, 0], 0.4)], [0.1, 0.5]
    )
    gauge = {
        "name": "sagellm.kv_cache.usage",
        "unit": "1",
        "gauge": {"dataPoints": [{"timeUnixNano": str(T0 + 5 * 10**9), "asDouble": 0.5}]},
    }
    mixed = [
        traces,
        metrics_line([counter, hist, gauge], res=res),
        {"resourceLogs": [{"resource": res, "scopeLogs": []}]},  # logs are ignored
        traces_line([_collector_span(2)], res=res),
    ]
    write_lines(path / "otel-export.json", mixed)
    write_lines(path / "more.jsonl", [metrics_line([counter], res=res)])
    return path


def test_collector_directory_with_mixed_lines(tmp_path: Path) -> None:
    out = load(_collector_dir(tmp_path / "collector"), cache=False)
    spans = out.spans.sort("start")
    assert spans["request_id"].to_list() == ["r0", "r1", "r2"]
    assert spans["parent_span_id"].to_list() == [None, None, None]  # "" means a root
    assert spans["service_name"].unique().to_list() == ["collector-svc"]
    assert spans["engine_id"].unique().to_list() == ["e1"]
    assert spans["run_id"].unique().to_list() == ["run-c"]
    assert spans["status_code"].to_list() == ["UNSET", "ERROR", "UNSET"]
    assert spans["source_line"].to_list() == [1, 1, 4]
    assert out.requests["ttft_s"].to_list() == pytest.approx([0.1, 0.2, 0.3])
    m = out.metrics
    assert sorted(m["source_file"].unique().to_list()) == ["more.jsonl", "otel-export.json"]
    counter = m.filter(pl.col("name") == "sagellm.requests")
    assert counter["kind"].to_list() == ["counter", "counter"]
    assert counter["value"].to_list() == [7.0, 7.0]
    assert counter["attributes"].to_list() == ['{"k":"v"}'] * 2
    assert counter["temporality"].to_list() == ["cumulative"] * 2
    hist = m.filter(pl.col("kind") == "histogram").row(0, named=True)
    assert hist["count"] == 3
    assert hist["bucket_counts"] == [1, 2, 0]
    assert hist["explicit_bounds"] == [0.1, 0.5]
    gauge = m.filter(pl.col("kind") == "gauge").row(0, named=True)
    assert gauge["value"] == 0.5
    assert gauge["attributes"] == "{}"
    assert gauge["start_time"] is None
    # A collector's export holds no KV cache events: the frame is empty, typed.
    assert out.kv_events.is_empty() and out.kv_events.schema == KV_EVENTS


def test_numbers_where_strings_are_due_are_accepted(tmp_path: Path) -> None:
    """Some producers write int64 as JSON numbers and enums by name: same frames."""
    strict = _collector_dir(tmp_path / "strict")
    loose = tmp_path / "loose"
    loose.mkdir()
    for f in strict.iterdir():
        text = f.read_text()
        text = text.replace('"intValue":"10"', '"intValue":10').replace(
            '"kind":2', '"kind":"SPAN_KIND_SERVER"'
        )
        text = text.replace('"asInt":"7"', '"asInt":7').replace(
            '"aggregationTemporality":2',
            '"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE"',
        )
        (loose / f.name).write_text(text)
    assert '"intValue":10' in (loose / "otel-export.json").read_text()
    a, b = load(strict, cache=False), load(loose, cache=False)
    for name in ("spans", "requests", "metrics"):
        assert_frame_equal(a.frames()[name], b.frames()[name])
    assert b.report.skipped == []


def test_a_run_re_exported_as_one_mixed_file_gives_the_same_frames(
    frames: Frames, written: WrittenRun, tmp_path: Path
) -> None:
    mixed = tmp_path / "collector" / "all.json"
    mixed.parent.mkdir()
    lines = []
    for kind in ("metrics", "traces"):
        for f in sorted(written.path.glob(f"{kind}-*.jsonl")):
            lines.extend(f.read_text().splitlines())
    mixed.write_text("\n".join(lines) + "\n")
    for source in (mixed.parent, mixed):
        out = load(source, cache=False)
        key = ["trace_id", "span_id"]
        assert_frame_equal(
            out.spans.drop(SOURCE_COLUMNS).sort(key), frames.spans.drop(SOURCE_COLUMNS).sort(key)
        )
        mkey = ["time", "name", "attributes"]
        assert_frame_equal(
            out.metrics.drop(SOURCE_COLUMNS).sort(mkey),
            frames.metrics.drop(SOURCE_COLUMNS).sort(mkey),
        )


def test_single_files_of_a_run(written: WrittenRun) -> None:
    (traces,) = written.path.glob("traces-*.jsonl")
    (steps,) = written.path.glob("steps-*.jsonl")
    (metrics,) = written.path.glob("metrics-*.jsonl")
    assert load_spans(traces, cache=False).height == 4 * len(written.records)
    assert load_steps(steps, cache=False).height == len(written.steps)
    assert load_metrics(metrics, cache=False).height > 0
    only_steps = load(steps, cache=False)
    assert only_steps.spans.is_empty() and only_steps.manifest == {}


def test_steps_frame_values(frames: Frames, written: WrittenRun) -> None:
    steps = frames.steps
    assert steps["step"].to_list() == [s[sc.STEP_INDEX] for s in written.steps]
    assert steps["time"].dt.epoch("ns").to_list() == [
        s[sc.STEP_TIME_UNIX_NANO] for s in written.steps
    ]
    assert steps["prefix_hit_rate"].to_list() == [0.25] * len(written.steps)
    assert steps["run_id"].unique().to_list() == [written.run_id]


def test_step_without_queries_has_a_null_hit_rate(tmp_path: Path) -> None:
    from frames_otlp import step_record

    write_lines(tmp_path / "steps-00001.jsonl", [step_record(1, T0, queries=0, hits=0)])
    assert load_steps(tmp_path, cache=False)["prefix_hit_rate"].to_list() == [None]


# --- Parquet ----------------------------------------------------------------------------------


def _copy(written: WrittenRun, dest: Path) -> Path:
    """The run's JSON-lines files alone, as a collector-style folder (no manifest, no copies):
    the folder the whole-frames Parquet cache serves (run folders have columnar copies)."""
    dest.mkdir()
    for f in written.path.glob("*.jsonl"):
        shutil.copy2(f, dest / f.name)
    return dest


def _assert_same(a: Frames, b: Frames) -> None:
    for name in SCHEMAS:
        assert_frame_equal(a.frames()[name], b.frames()[name])
    assert_frame_equal(a.kv_events, b.kv_events)


def test_cache_round_trip_and_reuse(
    written: WrittenRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _copy(written, tmp_path / "run")
    first = load(run)
    assert not first.from_cache
    cached = sorted(p.name for p in (run / ".cache").iterdir())
    assert len([p for p in cached if p.endswith(".parquet")]) == 5  # the four and kv_events
    assert len([p for p in cached if p.endswith(".json")]) == 1

    def no_build(*args: Any, **kwargs: Any) -> Frames:
        raise AssertionError("the sources were read although the cache is valid")

    monkeypatch.setattr(files_mod, "build_file", no_build)
    second = load(run)
    assert second.from_cache
    _assert_same(first, second)
    assert second.manifest == first.manifest
    monkeypatch.undo()

    # Touching a source file invalidates the entry; the old entry is replaced.
    (traces,) = run.glob("traces-*.jsonl")
    st = traces.stat()
    os.utime(traces, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = load(run)
    assert not third.from_cache
    _assert_same(first, third)
    assert len(list((run / ".cache").glob("*.json"))) == 1
    assert load(run).from_cache
    assert load(run, errors="skip").from_cache  # a clean entry serves both modes


def test_appending_invalidates_the_cache(written: WrittenRun, tmp_path: Path) -> None:
    run = _copy(written, tmp_path / "run")
    before = load(run).steps.height
    (steps,) = run.glob("steps-*.jsonl")
    with open(steps, "a") as fh:
        fh.write(steps.read_text().splitlines()[0] + "\n")
    after = load(run)
    assert not after.from_cache
    assert after.steps.height == before + 1


def test_cache_false_writes_nothing(written: WrittenRun, tmp_path: Path) -> None:
    run = _copy(written, tmp_path / "run")
    load(run, cache=False)
    assert not (run / ".cache").exists()


def test_damaged_cache_is_rebuilt(written: WrittenRun, tmp_path: Path) -> None:
    run = _copy(written, tmp_path / "run")
    first = load(run)
    for p in (run / ".cache").glob("*.spans.parquet"):
        p.write_bytes(b"not parquet")
    again = load(run)
    assert not again.from_cache
    _assert_same(first, again)


def test_single_file_cache(written: WrittenRun, tmp_path: Path) -> None:
    run = _copy(written, tmp_path / "run")
    (traces,) = run.glob("traces-*.jsonl")
    assert not load(traces).from_cache
    assert load(traces).from_cache
    assert (run / ".cache" / traces.name).is_dir()


def test_cache_directory_and_saved_frames_load_back(
    frames: Frames, written: WrittenRun, tmp_path: Path
) -> None:
    run = _copy(written, tmp_path / "run")
    load(run)
    from_cache_dir = load(run / ".cache")
    assert from_cache_dir.from_cache
    _assert_same(load(run, cache=False), from_cache_dir)

    saved = frames.save(tmp_path / "export")
    assert sorted(p.name for p in saved.iterdir()) == [
        "kv_events.parquet",
        "manifest.json",
        "metrics.parquet",
        "requests.parquet",
        "spans.parquet",
        "steps.parquet",
    ]
    back = load(saved)
    _assert_same(frames, back)
    assert back.manifest == frames.manifest
    # Frames saved before kv_events.parquet was written load with the frame empty, typed.
    (saved / "kv_events.parquet").unlink()
    older = load(saved)
    _assert_same(frames, older)
    assert older.kv_events.is_empty() and older.kv_events.schema == KV_EVENTS


def test_parquet_dir_with_a_wrong_schema_is_refused(tmp_path: Path) -> None:
    pl.DataFrame({"request_id": ["a"]}).write_parquet(tmp_path / "requests.parquet")
    with pytest.raises(ValueError, match="requests"):
        load(tmp_path)


def test_cached_skips_warn_again(tmp_path: Path) -> None:
    good = json.dumps(traces_line([_collector_span(0)]))
    write_lines(tmp_path / "t.jsonl", [good, "{not json", good])
    with pytest.warns(UserWarning, match="skipped 1 bad record"):
        first = load(tmp_path, errors="skip")
    with pytest.warns(UserWarning, match="skipped 1 bad record"):
        second = load(tmp_path, errors="skip")
    assert second.from_cache
    assert second.report.skipped == first.report.skipped
    # The skip-mode entry is not used by a raise-mode load: that one must see the bad line.
    with warnings.catch_warnings(), pytest.raises(ValueError, match=r"t\.jsonl:2"):
        load(tmp_path, errors="raise")


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope")


def test_run_folder_ignores_files_that_are_not_telemetry(tmp_path: Path) -> None:
    from sagellm_obs import AdvancedOptions, configure
    from sagellm_obs.frames import load

    tel = configure(
        run_dir=tmp_path, make_current=False, otlp_endpoint=False,
        advanced=AdvancedOptions(simple_processors=True),
    )  # fmt: skip
    tel.shutdown()
    (tmp_path / "summary.json").write_text('{\n  "requests": 3\n}\n')
    (tmp_path / "notes.jsonl").write_text("not json at all\n")
    frames = load(tmp_path, cache=False)  # errors="raise": would fail on either file
    assert frames.requests.height == 0
