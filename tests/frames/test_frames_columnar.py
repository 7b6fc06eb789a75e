"""Columnar copies of run folders, lazy scans and many runs at once.

The copies are written by the real store (configure() + the pipeline) when files rotate and when
the run closes; every check compares against the same folder read from its JSON alone
(``cache=False``), which never touches the copies.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import warnings
from pathlib import Path

import polars as pl
import pytest
from frames_otlp import T0, WrittenRun, span, traces_line, write_lines, write_run
from polars.testing import assert_frame_equal

from sagellm_obs.frames import RUNS, SCHEMAS, Frames, load, scan
from sagellm_obs.store import RunStore, StoreFormatError, StoreWarning
from sagellm_obs.store.layout import COLUMNAR_DIR, columnar_copy

# Four flushes of two requests: with a 4 KiB rotation size every flush starts a new file.
ROTATING = tuple(({"i": 2 * b}, {"i": 2 * b + 1}) for b in range(4))


def _same(a: Frames, b: Frames) -> None:
    for name in SCHEMAS:
        assert_frame_equal(a.frames()[name], b.frames()[name])


def _copy(written: WrittenRun, dest: Path) -> Path:
    shutil.copytree(written.path, dest)
    return dest


def _copies(run: Path) -> list[str]:
    return sorted(p.name for p in (run / COLUMNAR_DIR).glob("*.parquet"))


def test_the_store_writes_copies_when_the_run_closes(written: WrittenRun) -> None:
    data = sorted(p.name.removesuffix(".jsonl") for p in written.path.glob("*.jsonl"))
    assert data == ["metrics-00001", "steps-00001", "traces-00001"]
    assert _copies(written.path) == [
        "metrics-00001.metrics.parquet",
        "metrics-00001.spans.parquet",
        "steps-00001.steps.parquet",
        "traces-00001.metrics.parquet",
        "traces-00001.spans.parquet",
    ]
    fresh = load(written.path)
    assert fresh.from_cache and fresh.rebuilt == []
    _same(fresh, load(written.path, cache=False))
    # The copy is sorted by time and compressed with zstd.
    spans = pl.read_parquet(columnar_copy(written.path / "traces-00001.jsonl", "spans"))
    assert spans["start"].is_sorted()
    meta = pl.read_parquet_metadata(columnar_copy(written.path / "traces-00001.jsonl", "spans"))
    assert json.loads(meta["sagellm-obs:columnar"])["source"] == "traces-00001.jsonl"


def test_rotated_files_are_sealed_while_the_run_goes_on(tmp_path: Path) -> None:
    sealed: list[str] = []
    release = threading.Event()

    def seal(path: Path) -> None:
        assert threading.current_thread() is not threading.main_thread()
        release.wait(10)
        if path.name == "steps-00002.jsonl":
            raise OSError("disk full")  # logged, counted as done: the wait must not hang
        sealed.append(path.name)

    store = RunStore(tmp_path / "run", max_bytes=200, seal=seal)
    for _ in range(9):  # ~70 bytes a line: two lines a file, five files
        store.write("steps", [{"x": "y" * 60}])
    assert not store.wait_sealed(0.05)  # four rotated files queued behind the held seal
    assert store.files_sealed == 0
    release.set()
    assert store.wait_sealed(10)  # the four rotated files, before the run closes
    assert sealed == [f"steps-{i:05d}.jsonl" for i in (1, 3, 4)]
    assert store.files_sealed == 3
    store.close()  # seals the last file and waits for it
    assert sealed[-1] == "steps-00005.jsonl" and store.files_sealed == 4


def test_a_run_without_copies_writes_none_and_loads_the_same(tmp_path: Path) -> None:
    plain = write_run(tmp_path / "plain", ROTATING, store_max_bytes=4096, columnar_copies=False)
    assert len(list(plain.path.glob("traces-*.jsonl"))) > 1
    assert not (plain.path / COLUMNAR_DIR).exists()
    first = load(plain.path)  # builds (and writes) the copies a sealed run would have had
    assert first.rebuilt and not first.from_cache
    _same(first, load(plain.path, cache=False))
    assert load(plain.path).from_cache


def test_copies_of_a_rotating_run_load_like_its_json(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", ROTATING, store_max_bytes=4096)
    traces = sorted(run.path.glob("traces-*.jsonl"))
    assert len(traces) >= 3, "the run should have rotated its traces files"
    for f in [*traces, *run.path.glob("steps-*.jsonl")]:
        kind = "spans" if f.name.startswith("traces") else "steps"
        assert columnar_copy(f, kind).is_file(), f
    fresh = load(run.path)
    assert fresh.from_cache
    _same(fresh, load(run.path, cache=False))
    assert fresh.requests.height == len(run.records)


def test_missing_stale_and_damaged_copies_are_rebuilt(
    written: WrittenRun, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _copy(written, tmp_path / "run")
    reference = load(run, cache=False)
    shutil.rmtree(run / COLUMNAR_DIR)
    with caplog.at_level(logging.INFO, logger="sagellm_obs.frames.sources"):
        first = load(run)
    assert not first.from_cache
    assert sorted(Path(f).name for f, _ in first.rebuilt) == [
        "metrics-00001.jsonl",
        "steps-00001.jsonl",
        "traces-00001.jsonl",
    ]
    assert {why for _, why in first.rebuilt} == {"missing"}
    assert "built the columnar copies of 3 file(s)" in caplog.text
    _same(first, reference)
    assert load(run).from_cache

    # A damaged copy.
    columnar_copy(run / "traces-00001.jsonl", "spans").write_bytes(b"PAR1 not parquet")
    damaged = load(run)
    assert [(Path(f).name, why.split(" ")[0]) for f, why in damaged.rebuilt] == [
        ("traces-00001.jsonl", "unreadable")
    ]
    _same(damaged, reference)

    # An appended line makes the steps copy stale.
    (steps,) = run.glob("steps-*.jsonl")
    with open(steps, "a") as fh:
        fh.write(steps.read_text().splitlines()[0] + "\n")
    stale = load(run)
    assert [(Path(f).name, why) for f, why in stale.rebuilt] == [("steps-00001.jsonl", "stale")]
    assert stale.steps.height == reference.steps.height + 1
    assert load(run).from_cache


def test_a_copied_folder_keeps_its_copies(written: WrittenRun, tmp_path: Path) -> None:
    # copytree gives new modification times: the copies are still fresh (size + content hash).
    run = _copy(written, tmp_path / "elsewhere")
    again = load(run)
    assert again.from_cache and again.rebuilt == []


def test_cache_false_neither_reads_nor_writes_copies(written: WrittenRun, tmp_path: Path) -> None:
    run = _copy(written, tmp_path / "run")
    shutil.rmtree(run / COLUMNAR_DIR)
    load(run, cache=False)
    assert not (run / COLUMNAR_DIR).exists()
    assert not (run / ".cache").exists()


def test_a_strict_load_does_not_trust_a_copy_that_skipped_lines(
    written: WrittenRun, tmp_path: Path
) -> None:
    run = _copy(written, tmp_path / "run")
    (traces,) = run.glob("traces-*.jsonl")
    with open(traces, "a") as fh:
        fh.write("{not json\n")
        fh.write(traces.read_text().splitlines()[0] + "\n")
    bad_line = traces.read_text().count("\n") - 1
    with pytest.warns(StoreWarning, match="skipped 1 bad record"):
        skipped = load(run, errors="skip")
    assert skipped.report.skipped == [(str(traces), bad_line, skipped.report.skipped[0][2])]
    with pytest.warns(StoreWarning, match="skipped 1 bad record"):
        again = load(run, errors="skip")
    assert again.from_cache  # the copy records what it skipped
    assert again.report.skipped == skipped.report.skipped
    with warnings.catch_warnings(), pytest.raises(StoreFormatError, match=rf":{bad_line}:"):
        load(run)


def test_non_hex_ids_are_named_or_counted(tmp_path: Path) -> None:
    good = span(f"{1:032x}", f"{1:016x}", "ok", start_ns=T0)
    bad_trace = span("not-a-hex-trace-id-at-all-000000", f"{2:016x}", "bad", start_ns=T0)
    bad_span = span(f"{3:032x}", "zz" * 8, "bad", start_ns=T0)
    write_lines(
        tmp_path / "t.jsonl",
        [json.dumps(traces_line([good])), json.dumps(traces_line([bad_trace, bad_span]))],
    )
    with pytest.raises(StoreFormatError, match=r"t\.jsonl:2: traceId is not 32 hex digits"):
        load(tmp_path, cache=False)
    with pytest.warns(StoreWarning, match="skipped 2 bad record"):
        skipped = load(tmp_path, errors="skip", cache=False)
    assert skipped.spans["name"].to_list() == ["ok"]
    assert [m.split(":")[0] for _, _, m in skipped.report.skipped] == [
        "traceId is not 32 hex digits",
        "spanId is not 16 hex digits",
    ]


# --- lazy frames ----------------------------------------------------------------------------------


def test_scan_collects_to_what_load_gives(written: WrittenRun) -> None:
    lazy = scan(written.path)
    assert all(isinstance(lf, pl.LazyFrame) for lf in lazy.frames().values())
    _same(lazy.collect(), load(written.path, cache=False))


def test_filters_and_columns_on_a_scan_match_the_eager_frames(written: WrittenRun) -> None:
    eager = load(written.path, cache=False).requests
    cut = eager["arrival"].sort()[eager.height // 2]
    lazy = (
        scan(written.path)
        .requests.filter(pl.col("arrival") >= cut)
        .select("request_id", "ttft_s")
        .collect()
    )
    expected = eager.filter(pl.col("arrival") >= cut).select("request_id", "ttft_s")
    assert_frame_equal(lazy, expected)
    assert 0 < lazy.height < eager.height


# --- many runs ------------------------------------------------------------------------------------


def test_many_runs_with_one_broken(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    a = write_run(runs / "a", ROTATING[:2])
    b = write_run(runs / "b", ROTATING[:1])
    broken = write_run(runs / "c-broken", ROTATING[:1]).path
    (broken / "manifest.json").write_text("{not json")

    with pytest.raises(StoreFormatError, match=r"c-broken/manifest\.json:1"):
        load(str(runs / "*"))
    with pytest.warns(StoreWarning, match="skipped 1 bad record"):
        both = load(str(runs / "*"), errors="skip")
    assert both.requests.group_by("run_id").len().sort("run_id").rows() == sorted(
        [(a.run_id, 4), (b.run_id, 2)]
    )
    # Step records carry no run id: each run's manifest gives it.
    assert set(both.steps["run_id"].to_list()) == {a.run_id, b.run_id}
    assert_frame_equal(both.spans.filter(pl.col("run_id") == b.run_id), load(b.path).spans)
    assert both.runs.schema == RUNS
    assert both.runs.select("run_id", "path", "kind").rows() == [
        (a.run_id, str(a.path), "run"),
        (b.run_id, str(b.path), "run"),
        ("c-broken", str(broken), None),
    ]
    assert both.runs["problem"].to_list()[:2] == [None, None]
    assert "manifest is not valid JSON" in both.runs["problem"][2]
    assert both.manifest == {}

    # A list of sources, in the order given.
    listed = load([b.path, a.path])
    assert listed.runs["run_id"].to_list() == [b.run_id, a.run_id]
    assert listed.requests["run_id"].unique(maintain_order=True).to_list() == [b.run_id, a.run_id]


def test_a_glob_that_matches_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="matches"):
        load(str(tmp_path / "nope-*"))
