"""Engine shutdown after the telemetry was shut down configures nothing new."""

from __future__ import annotations

from pathlib import Path

import pytest

import sagellm_obs as so
from sagellm_obs.engine import InstrumentedEngine


def test_shutdown_after_telemetry_shutdown_makes_no_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAGELLM_OBS_RUN_DIR", raising=False)
    so.configure(run_dir=tmp_path / "run", otlp_endpoint=False)
    # An engine that follows the current telemetry, its vLLM already stopped: shutdown() then
    # only flushes telemetry (the vLLM part is covered by the engine tests).
    engine = object.__new__(InstrumentedEngine)
    engine.llm = None
    engine._pinned = None
    so.shutdown()
    engine.shutdown()
    assert so.current() is None
    assert not (tmp_path / "sagellm-runs").exists()
