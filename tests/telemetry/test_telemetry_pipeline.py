"""configure() + the telemetry thread: the run's manifest, reconfiguring, a telemetry that is not
current, the memory watch. Spans and metrics: ``test_telemetry_pipeline_spans.py``,
``..._metrics.py``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import psutil

import sagellm_obs.telemetry as telemetry_mod
from sagellm_obs import semconv as sc
from sagellm_obs.store import files_of, iter_jsonl
from sagellm_obs.telemetry import configure
from sagellm_obs.telemetry.pipeline import _MemoryWatch
from tests.telemetry.pipeline_setup import MakeRecord, Setup


def test_manifest_describes_the_run(setup: Setup) -> None:
    manifest = json.loads((setup.run_dir / "manifest.json").read_text())
    assert manifest["engine_id"] == "engine-test"
    assert manifest["capture_content"] is False
    assert manifest["otlp"] == []
    assert manifest["service_name"] == sc.SERVICE_NAME_DEFAULT
    assert "python" in manifest["versions"]


def _telemetry_threads() -> set[threading.Thread]:
    names = ("sagellm-obs-telemetry", "OtelBatchSpanRecordProcessor", "OtelPeriodicExporting")
    return {t for t in threading.enumerate() if t.is_alive() and t.name.startswith(names)}


def test_reconfigure_twice_is_safe_and_leaves_no_thread(
    tmp_path: Path, records: MakeRecord
) -> None:
    before = _telemetry_threads()
    first = configure(run_dir=tmp_path / "a", engine_id="e1", otlp_endpoint=False)
    assert telemetry_mod.current() is first
    first_thread = first.pipeline._thread
    assert first_thread.is_alive()
    second = configure(run_dir=tmp_path / "b", engine_id="e2", otlp_endpoint=False)
    try:
        assert telemetry_mod.current() is second
        assert not first_thread.is_alive()
        first.shutdown()  # already shut down by configure(): a no-op
        assert json.loads((tmp_path / "a" / "manifest.json").read_text())["ended_at"] is not None
        second.submit_request(records(second.anchor, 0))
        assert second.flush()
        assert second.stats()["requests_recorded"] == 1
        third = configure(run_dir=tmp_path / "c", engine_id="e3", otlp_endpoint=False)
        assert not second.pipeline._thread.is_alive()
        assert telemetry_mod.current() is third
    finally:
        telemetry_mod.shutdown()
    assert telemetry_mod.current() is None
    telemetry_mod.shutdown()  # nothing current: a no-op
    leftover = _telemetry_threads() - before
    assert not [t.name for t in leftover if t.name == "sagellm-obs-telemetry"]
    assert leftover == set(), [t.name for t in leftover]
    # The spans of the second run reached its store before it was replaced.
    lines = [obj for f in files_of(tmp_path / "b", "traces") for _, obj in iter_jsonl(f)]
    assert sum(len(ss["spans"]) for o in lines for rs in o["resourceSpans"]
               for ss in rs["scopeSpans"]) == 4  # fmt: skip


def test_make_current_false_leaves_the_current_one_alone(tmp_path: Path) -> None:
    current = configure(run_dir=tmp_path / "cur", otlp_endpoint=False)
    try:
        side = configure(run_dir=tmp_path / "side", otlp_endpoint=False, make_current=False)
        assert telemetry_mod.current() is current
        assert current.pipeline._thread.is_alive()
        side.shutdown()
        assert current.pipeline._thread.is_alive()
    finally:
        telemetry_mod.shutdown()


def test_memory_watch_lists_children_when_asked_not_at_every_sample() -> None:
    """Listing child processes reads every process's stat file: done on request (an engine
    has started) or every ``rescan_s``; each sample reads the known processes' RSS only."""
    watch = _MemoryWatch(rescan_s=3600)
    watch.sample()
    assert watch.scans == 1
    code = (
        "import sys, time; b = bytearray(300 * 2**20); print('ready', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        unlisted = watch.sample()  # no child of 300 MB at the last listing
        assert watch.scans == 1
        listed = watch.sample(rescan=True)
        assert watch.scans == 2
        # The child's 300 MB of bytearray (other children, if any, were counted in both).
        assert listed - unlisted >= 250
        own_mb = psutil.Process().memory_info().rss / 2**20
        assert listed >= own_mb + 290
    finally:
        child.kill()
        child.wait()
    watch.sample()  # the known child is gone: listed again at the next sample
    watch.sample()
    assert watch.scans == 3
