"""SIGKILL mid-run: the run folder still loads and at most the last flush interval is missing.

A real run (configure() + the tiny model on vLLM's multi-process layout) in a child process prints
each request as it returns; once the store holds some spans, the whole process group gets SIGKILL.
What the child reported done longer ago than one flush window (the telemetry thread's interval
plus the batch span processor's delay) must be in the store, with its phase spans. Rotated files
are sealed (their columnar copies written) during the run, oldest first; the sealing thread runs
at the lowest CPU priority, so on a busy machine it may be any number of files behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import polars as pl
import pytest
from hardening_procs import LinePump, child_env, group_alive, kill_group, wait_until
from polars.testing import assert_frame_equal

from sagellm_obs import semconv as sc
from sagellm_obs.frames import load
from sagellm_obs.frames.lines import TORN
from sagellm_obs.run_summary import summarize
from sagellm_obs.store import StoreWarning
from sagellm_obs.store.layout import columnar_copy, data_files

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]

CHILD = Path(__file__).with_name("sigkill_child.py")
KILL_AFTER_DONE = 60  # requests the child must have reported before the kill
RUN_FOR_S = 6.0  # and for this long, so that most of them are older than the flush window
# Scheduling slack on a loaded 2-core machine, on top of the flush window (seconds).
SLACK_S = 1.0


def _first_traces_file_sealed(run_dir: Path) -> bool:
    """A traces file was rotated away (so the store holds spans) and sealed during the run."""
    traces = data_files(run_dir, "traces")
    return len(traces) >= 2 and columnar_copy(traces[0], "spans").is_file()


def test_sigkill_mid_run_loses_at_most_the_last_flush(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(run_dir)],
        env=child_env(VLLM_LOGGING_LEVEL="ERROR", TQDM_DISABLE="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the child leads a process group: EngineCore is in it too
    )
    assert proc.stdout is not None
    pump = LinePump(proc.stdout, tmp_path / "child.log")
    done: dict[str, float] = {}
    intervals: dict[str, float] = {}

    def read_lines() -> None:
        while not pump.lines.empty():
            _, line = pump.lines.get_nowait()
            if line.startswith("done "):
                _, rid, stamp, _reason = line.split()
                done[rid] = float(stamp)
            elif line.startswith("intervals "):
                intervals.update(json.loads(line.split(" ", 1)[1]))

    def mid_run() -> bool:
        read_lines()
        assert proc.poll() is None, (tmp_path / "child.log").read_text()[-4000:]
        if len(done) < KILL_AFTER_DONE or time.time() - min(done.values()) < RUN_FOR_S:
            return False
        return _first_traces_file_sealed(run_dir)

    try:
        wait_until(
            mid_run, 240, "the child to finish requests, write spans and seal a file", every=0.05
        )
        killed_at = time.time()
        kill_group(proc.pid)
        assert proc.wait(30) == -signal.SIGKILL
        pump.join(10)
        wait_until(lambda: not group_alive(proc.pid), 30, "the process group to be gone")
    finally:
        if proc.poll() is None:
            kill_group(proc.pid)
            proc.wait(30)
    read_lines()
    done = {rid: t for rid, t in done.items() if t <= killed_at}
    assert intervals, "the child did not report its telemetry intervals"

    # The run folder loads as it is; a torn last line is the only damage allowed (once per file).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        frames = load(run_dir, cache=False)
    per_file: dict[str, int] = {}
    for path, _line, reason in frames.report.skipped:
        assert reason == TORN, frames.report.skipped
        per_file[path] = per_file.get(path, 0) + 1
    assert all(n <= 1 for n in per_file.values()), per_file
    assert len([w for w in caught if issubclass(w.category, StoreWarning)]) <= 1
    assert frames.manifest["run_id"]
    assert frames.manifest["ended_at"] is None  # it never got to close
    assert frames.steps.height > 0

    # At most the last flush window is missing.
    window = intervals["pipeline_interval"] + intervals["span_batch_delay"]
    stored = set(frames.requests["request_id"].to_list())
    missing = set(done) - stored
    recent = {rid for rid, t in done.items() if killed_at - t <= window + SLACK_S}
    late = sorted(missing - recent)
    assert not late, (
        f"{len(late)} request(s) reported done more than {window + SLACK_S:.1f} s before the "
        f"kill are missing: {late[:10]}"
    )
    assert len(missing) <= len(recent)
    # The store may hold requests the child had finished but not yet printed, no more.
    assert len(stored - set(done)) <= intervals["concurrency"]
    assert stored, "nothing reached the store"

    # Every stored request older than the window is complete: its phase spans are there too.
    spans = frames.spans
    request_spans = spans.filter(pl.col("request_id").is_not_null())
    assert request_spans["request_id"].n_unique() == request_spans.height  # no duplicates
    old = request_spans.filter(
        pl.col("request_id").is_in([r for r in stored if r in done and r not in recent])
    )
    children = (
        spans.filter(pl.col("name").is_in(list(sc.PHASE_SPANS)))
        .group_by("parent_span_id")
        .agg(pl.col("name").sort())
    )
    phases = dict(zip(children["parent_span_id"], children["name"].to_list(), strict=True))
    for row in old.select("request_id", "span_id").iter_rows():
        assert phases.get(row[1]) == sorted(sc.PHASE_SPANS), row

    # The files sealed before the kill are the oldest ones, with no gap (a copy is written whole
    # or not at all); a load builds the missing ones (those still queued or open at the kill)
    # and gives the same frames as the JSON alone.
    traces = data_files(run_dir, "traces")
    assert len(traces) >= 2, "the child should have rotated its traces files"
    sealed = [columnar_copy(f, "spans").is_file() for f in traces]
    assert sealed[0] and not sealed[-1], sealed
    assert sealed == sorted(sealed, reverse=True), sealed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        copied = load(run_dir)
        assert ("traces", "missing") in {
            (Path(f).name.split("-")[0], why) for f, why in copied.rebuilt
        }, copied.rebuilt
        for name, df in frames.frames().items():
            assert_frame_equal(copied.frames()[name], df)
        assert load(run_dir).from_cache

    # A summary of the killed run can still be made from the folder alone.
    summary = summarize(run_dir)
    assert summary.requests == len(stored)
    assert summary.ok == len(stored)
