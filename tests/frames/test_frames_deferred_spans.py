"""``load()`` defers the spans frame: collected (and schema-checked) on first ``.spans``.

The run folder is written by the real store (configure() + the pipeline), columnar copies
included; every expected frame comes from an independent read of the same folder: a
``scan(...).<frame>.collect()`` or a JSON-only ``load(cache=False, spans="eager")``.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import polars as pl
import pytest
from frames_otlp import WrittenRun
from polars.testing import assert_frame_equal

from sagellm_obs.frames import SPANS, Frames, check_schema, load, scan
from sagellm_obs.store import StoreFormatError
from sagellm_obs.store.layout import COLUMNAR_DIR


@pytest.fixture
def run_dir(written: WrittenRun, tmp_path: Path) -> Path:
    """A copy of the written run (its columnar copies included), for loads that may write."""
    return Path(shutil.copytree(written.path, tmp_path / "run"))


def test_load_leaves_spans_unread_and_the_other_frames_equal_an_eager_load(run_dir: Path) -> None:
    run = load(run_dir)
    assert run.from_cache  # read from the store's columnar copies, not the JSON
    assert not run.spans_loaded
    eager = load(run_dir, cache=False, spans="eager")  # from the JSON, every frame collected
    assert eager.spans_loaded
    for name in ("requests", "steps", "metrics", "kv_events"):
        assert_frame_equal(getattr(run, name), getattr(eager, name))
    assert run.requests.height == 5
    assert not run.spans_loaded  # reading the other frames did not load them


def test_first_access_collects_the_scans_spans_once(run_dir: Path) -> None:
    run = load(run_dir)
    expected = check_schema(scan(run_dir).spans.collect(), SPANS, "spans")
    assert expected.height > run.requests.height  # request spans and their children
    got = run.spans
    assert run.spans_loaded
    assert_frame_equal(got, expected)
    assert_frame_equal(got, load(run_dir, cache=False, spans="eager").spans)
    assert run.spans is got  # kept, not collected again


def test_the_spans_are_read_from_the_files_at_first_access(run_dir: Path) -> None:
    run = load(run_dir)
    copies = sorted((run_dir / COLUMNAR_DIR).glob("*.spans.parquet"))
    assert copies
    for copy in copies:
        copy.unlink()
    assert run.requests.height == 5  # collected by load()
    with pytest.raises((FileNotFoundError, pl.exceptions.ComputeError)):
        _ = run.spans
    assert not run.spans_loaded


def test_threads_share_one_collect(run_dir: Path) -> None:
    run = load(run_dir)
    got: list[pl.DataFrame] = []
    threads = [threading.Thread(target=lambda: got.append(run.spans)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4
    assert all(df is got[0] for df in got)


def test_repr_and_scan_spans_do_not_load_the_spans(run_dir: Path) -> None:
    run = load(run_dir)
    text = repr(run)
    assert "spans: not loaded yet" in text
    assert "requests: 5 rows" in text
    server = run.scan_spans().filter(pl.col("kind") == "SERVER").collect()
    assert not run.spans_loaded
    expected = scan(run_dir).spans.filter(pl.col("kind") == "SERVER").collect()
    assert_frame_equal(server, expected)
    assert f"spans: {run.spans.height:,} rows" in repr(run)


def test_eager_option_and_bad_value(run_dir: Path) -> None:
    run = load(run_dir, spans="eager")
    assert run.spans_loaded
    assert_frame_equal(run.spans, scan(run_dir).spans.collect())
    with pytest.raises(ValueError, match="spans must be"):
        load(run_dir, spans="later")  # type: ignore[arg-type]


def test_replace_shares_the_deferred_spans(run_dir: Path) -> None:
    run = load(run_dir)
    view = run.replace(requests=run.requests.head(1))
    assert view.requests.height == 1
    assert run.requests.height == 5
    assert not view.spans_loaded
    spans = view.spans
    assert run.spans_loaded  # one read serves both
    assert run.spans is spans
    with pytest.raises(TypeError, match="no attribute"):
        run.replace(span=spans)


def test_frames_built_from_dataframes_behave_as_before(frames: Frames, tmp_path: Path) -> None:
    spans = frames.spans
    built = Frames(spans, frames.requests, frames.steps, frames.metrics, manifest={"a": 1})
    assert built.spans_loaded
    assert built.spans is spans
    assert built.kv_events.is_empty()
    assert built.runs.is_empty()
    assert built.frames()["spans"] is spans
    assert f"spans: {spans.height:,} rows" in repr(built)
    same = Frames(spans.clone(), frames.requests, frames.steps, frames.metrics, manifest={"a": 1})
    assert built == same
    assert built != built.replace(steps=frames.steps.head(0))
    again = load(built.save(tmp_path / "saved"))
    assert not again.spans_loaded
    assert again.replace(source=None, from_cache=False, runs=built.runs) == built


def test_a_malformed_span_line_still_raises_at_load(run_dir: Path) -> None:
    traces = sorted(run_dir.glob("traces-*.jsonl"))[0]
    lines = traces.read_text().splitlines(keepends=True)
    traces.write_text("".join([lines[0], "not json\n", *lines[1:]]))
    with pytest.raises(StoreFormatError, match=rf"{traces.name}:2: "):
        load(run_dir)  # spans deferred: the files are read (and checked) here all the same
