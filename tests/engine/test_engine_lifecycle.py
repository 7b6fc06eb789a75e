"""Engine shutdown after the telemetry was shut down configures nothing new."""

from __future__ import annotations

import gc
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
    every subprocess started later, e.g. a ``sagellm-obs serve``, would inherit). The engine
    freezes the start-up heap (``freeze_gc``) and releases it at close."""
    import psutil

    from sagellm_obs.engine import Engine, gc_heap

    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    tel = so.configure(run_dir=False, otlp_endpoint=False, make_current=False)
    holds = gc_heap.holders()
    engine = Engine("tiny", telemetry=tel, in_process=True, kv_cache_memory_bytes=64 * 2**20)
    try:
        assert gc_heap.holders() == holds + 1
        assert gc.get_freeze_count() > 100_000  # torch's and vLLM's objects, out of reach
        assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ
        children = psutil.Process().children(recursive=True)
        seen = {p.pid: p.environ().get("VLLM_ENABLE_V1_MULTIPROCESSING") for p in children}
        assert "0" in seen.values(), f"no child process started with the setting: {seen}"
    finally:
        engine.close()
        tel.shutdown()
    assert gc_heap.holders() == holds
    if holds == 0:
        assert gc.get_freeze_count() == 0


def test_gc_heap_freezes_nest_and_the_last_release_unfreezes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run from no holds even when an engine of this session holds one (its freeze is put back)."""
    from sagellm_obs.engine import gc_heap

    held = gc_heap.holders()
    monkeypatch.setattr(gc_heap._heap, "holders", 0)
    gc.unfreeze()
    try:
        gc_heap.freeze()
        gc_heap.freeze()
        assert gc_heap.holders() == 2 and gc.get_freeze_count() > 0
        gc_heap.release()
        assert gc.get_freeze_count() > 0  # another holder still relies on it
        gc_heap.release()
        assert gc_heap.holders() == 0 and gc.get_freeze_count() == 0
        gc_heap.release()  # one release too many is ignored
        assert gc_heap.holders() == 0 and gc.get_freeze_count() == 0
    finally:
        monkeypatch.setattr(gc_heap._heap, "holders", held)
        if held:
            gc.freeze()


def test_vllm_env_holds_nest_and_the_last_release_reads_the_environment_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run from no holds even when an engine of this session holds one (its cache is put back)."""
    import vllm.envs

    from sagellm_obs.engine import vllm_env

    held = vllm_env.holders()
    monkeypatch.setattr(vllm_env._cache, "holders", 0)
    monkeypatch.delenv("VLLM_RAISE_ON_LOGIT_NANS", raising=False)
    monkeypatch.setenv("VLLM_COMPUTE_NANS_IN_LOGITS", "0")
    vllm_env.read_afresh()
    try:
        vllm_env.hold()
        vllm_env.hold()
        monkeypatch.setenv("VLLM_COMPUTE_NANS_IN_LOGITS", "1")
        assert vllm_env.cached() and vllm.envs.VLLM_COMPUTE_NANS_IN_LOGITS is False
        vllm_env.release()
        assert vllm.envs.VLLM_COMPUTE_NANS_IN_LOGITS is False  # another holder relies on it
        vllm_env.release()
        assert not vllm_env.cached() and vllm.envs.VLLM_COMPUTE_NANS_IN_LOGITS is True
        vllm_env.release()  # one release too many is ignored
        assert vllm_env.holders() == 0 and not vllm_env.cached()
    finally:
        monkeypatch.setenv("VLLM_COMPUTE_NANS_IN_LOGITS", "0")
        monkeypatch.setattr(vllm_env._cache, "holders", held)
        if held:
            vllm_env.hold()
            monkeypatch.setattr(vllm_env._cache, "holders", held)
