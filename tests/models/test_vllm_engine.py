"""The built tiny model runs in a real (in-process) vLLM engine."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import pytest

from sagellm_obs.models import TINY, kv_bytes_per_token

KV_CACHE_BYTES = 64 * 2**20


@pytest.mark.engine
def test_vllm_offline_generate(
    tiny_model: tuple[Path, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("vllm")
    import vllm.envs
    from vllm import LLM, SamplingParams
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    path, _ = tiny_model
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # An earlier in-process engine freezes vllm.envs; re-read the environment.
    vllm.envs.disable_envs_cache()
    started = time.perf_counter()
    llm: Any = LLM(
        model=str(path),
        dtype="float32",
        max_model_len=512,
        enforce_eager=True,
        kv_cache_memory_bytes=KV_CACHE_BYTES,
        seed=0,
    )
    try:
        print(f"\nvLLM start-up: {time.perf_counter() - started:.2f} s")
        cache = llm.llm_engine.vllm_config.cache_config
        # vLLM sized the cache with the same per-token cost we compute.
        assert cache.num_gpu_blocks * cache.block_size == KV_CACHE_BYTES // kv_bytes_per_token(TINY)
        params = SamplingParams(max_tokens=8, ignore_eos=True, temperature=0.0)
        outs = llm.generate(["The queue grows when", "Grüße 🙂 世界"], params)
        for out in outs:
            assert len(out.outputs[0].token_ids) == 8
            assert all(0 <= t < TINY.vocab_size for t in out.outputs[0].token_ids)
        chat = llm.chat([{"role": "user", "content": "hi"}], params)
        assert chat[0].prompt_token_ids is not None
        assert chat[0].prompt_token_ids[0] == 3  # <|im_start|>
        assert len(chat[0].outputs[0].token_ids) == 8
    finally:
        del llm
        gc.collect()
        cleanup_dist_env_and_memory()
