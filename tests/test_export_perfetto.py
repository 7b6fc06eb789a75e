"""``sagellm-obs export perfetto``: a real run's timeline in the JSON trace-event format.

The run folder is written by the real telemetry writer. The output is checked against the
format's rules (event types and their required fields) and against the run's own frames: every
request is a slice with its phases where its phase spans are, lanes never overlap, every step is
on the counter tracks.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from sagellm_obs.frames import load
from tests.frames.frames_otlp import live_run

# The trace-event format's required fields per event type used here.
REQUIRED = {
    "X": {"name", "ph", "ts", "dur", "pid", "tid"},
    "C": {"name", "ph", "ts", "pid", "args"},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = live_run(tmp_path_factory.mktemp("perfetto") / "run")
    for n in (3, 5, 2):
        run.batch(n, steps=4)
    run.tel.shutdown()
    return run.path


@pytest.fixture(scope="module")
def trace(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("out") / "trace.json"
    cmd = "from sagellm_obs.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", cmd, "export", "perfetto", str(run_dir), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "10 requests" in done.stdout
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def test_every_event_is_well_formed(trace: dict[str, Any], run_dir: Path) -> None:
    events = trace["traceEvents"]
    assert trace["displayTimeUnit"] == "ms"
    for e in events:
        assert e["ph"] in ("X", "C", "M"), e
        assert REQUIRED.get(e["ph"], {"name", "ph", "pid", "args"}) <= e.keys(), e
        if e["ph"] == "X":
            assert e["dur"] >= 0
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    engines = set(load(run_dir, cache=False).steps["engine_id"])
    assert names == {f"engine {engine}" for engine in engines}


def test_every_request_with_its_phases(trace: dict[str, Any], run_dir: Path) -> None:
    frames = load(run_dir, cache=False)
    events = trace["traceEvents"]
    slices = [e for e in events if e["ph"] == "X" and e["name"] == "request"]
    assert sorted(e["args"]["request_id"] for e in slices) == sorted(frames.requests["request_id"])
    by_request = {e["args"]["request_id"]: e for e in slices}
    phases = defaultdict(dict)
    for e in events:
        if e["ph"] == "X" and e["cat"] == "phase":
            phases[e["args"]["request_id"]][e["name"]] = e
    spans = frames.spans
    for row in frames.requests.iter_rows(named=True):
        rid = row["request_id"]
        req = by_request[rid]
        assert req["ts"] == pytest.approx(row["arrival"].timestamp() * 1e6, abs=1)
        assert req["dur"] == pytest.approx(row["e2e_s"] * 1e6, abs=1)
        children = spans.filter(spans["parent_span_id"] == row["span_id"])
        for child in children.iter_rows(named=True):
            got = phases[rid][child["name"]]
            assert got["ts"] == pytest.approx(child["start"].timestamp() * 1e6, abs=1)
            assert got["dur"] == pytest.approx(child["duration_s"] * 1e6, abs=1)
            assert got["tid"] == req["tid"] and got["pid"] == req["pid"]
        assert set(phases[rid]) == {"queue", "prefill", "decode"}


def test_lanes_never_overlap(trace: dict[str, Any]) -> None:
    lanes: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "X" and e["name"] == "request":
            lanes[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    assert lanes
    for slots in lanes.values():
        slots.sort()
        for (_, end), (start, _) in itertools.pairwise(slots):
            assert start >= end


def test_every_step_is_on_the_counters(trace: dict[str, Any], run_dir: Path) -> None:
    steps = load(run_dir, cache=False).steps
    counters = [e for e in trace["traceEvents"] if e["ph"] == "C"]
    kv = [e for e in counters if e["name"] == "KV-cache usage (%)"]
    queue = [e for e in counters if e["name"] == "requests"]
    assert len(kv) == len(queue) == steps.height == 12
    assert [e["args"]["used"] for e in kv] == pytest.approx(
        [100 * v for v in steps.sort("time")["kv_cache_usage"]]
    )
    assert [e["args"]["running"] for e in queue] == steps.sort("time")["running"].to_list()


def test_a_missing_run(tmp_path: Path) -> None:
    cmd = "from sagellm_obs.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", cmd, "export", "perfetto", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "no such run folder" in done.stderr


def test_the_export_reads_the_phase_spans_without_loading_the_spans(run_dir: Path) -> None:
    from sagellm_obs.export.perfetto import PHASES, trace_events

    frames = load(run_dir)
    doc = trace_events(frames)
    assert not frames.spans_loaded
    assert doc == trace_events(load(run_dir, spans="eager"))
    assert {e["name"] for e in doc["traceEvents"]} & set(PHASES)
