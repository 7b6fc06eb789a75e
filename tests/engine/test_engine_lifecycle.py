"""Engine shutdown after the telemetry was shut down configures nothing new."""

from __future__ import annotations

import os
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


@pytest.mark.engine
def test_in_process_start_leaves_the_environment_as_it_found_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``in_process`` reaches vLLM's EngineCore process, and not the caller's environment (which
    every subprocess started later, e.g. a ``sagellm-obs serve``, would inherit)."""
    import psutil

    from sagellm_obs.engine import Engine

    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    tel = so.configure(run_dir=False, otlp_endpoint=False, make_current=False)
    engine = Engine("tiny", telemetry=tel, in_process=True, kv_cache_memory_bytes=64 * 2**20)
    try:
        assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ
        children = psutil.Process().children(recursive=True)
        seen = {p.pid: p.environ().get("VLLM_ENABLE_V1_MULTIPROCESSING") for p in children}
        assert "0" in seen.values(), f"no child process started with the setting: {seen}"
    finally:
        engine.close()
        tel.shutdown()
