"""``EngineConfig``: how to start vLLM, and the model folder it loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class EngineConfig:
    """How to start vLLM. Unknown keys in ``extra`` go straight to ``AsyncEngineArgs``.

    Attributes:
        model: A model folder, or ``"tiny"`` for the offline tiny model (built on first use).
        served_model_name: Name reported in spans and responses; default: the folder name.
        max_model_len: Context length.
        enable_prefix_caching: vLLM automatic prefix caching.
        kv_cache_memory_bytes: KV-cache size (small keeps CPU runs light); None lets vLLM decide.
        block_size: KV block size in tokens (CPU: a multiple of 32; vLLM's CPU default is 128).
        in_process: Run the model worker inside EngineCore's process
            (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): starts in seconds on CPU. EngineCore itself
            stays a process of its own (vLLM's ``AsyncLLM`` always uses its multi-process client).
            None keeps vLLM's default (a worker process of its own too).
        seed: Engine seed.
        dtype: Model dtype (float32 is fastest on CPUs without AVX512-BF16).
        enforce_eager: Skip torch.compile (it costs ~45 s at first start on CPU).
        kv_events: Record vLLM's KV cache events (blocks stored, reused, removed) in the run
            folder's ``kv-events`` file (see :mod:`sagellm_obs.engine.kv_events`).
        extra: More ``AsyncEngineArgs`` keywords.
    """

    model: str = "tiny"
    served_model_name: str | None = None
    max_model_len: int = 1024
    enable_prefix_caching: bool = True
    kv_cache_memory_bytes: int | None = 256 * 2**20
    block_size: int | None = None
    in_process: bool | None = None
    seed: int = 0
    dtype: str = "float32"
    enforce_eager: bool = True
    kv_events: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def engine_args(self, model_path: str) -> dict[str, Any]:
        """Keyword arguments for ``AsyncEngineArgs``."""
        kw: dict[str, Any] = {
            "model": model_path,
            "served_model_name": self.served_model_name or self.model_name(model_path),
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "enable_prefix_caching": self.enable_prefix_caching,
            "enforce_eager": self.enforce_eager,
            "seed": self.seed,
            "disable_log_stats": False,  # RequestOutput.metrics is None without stats
        }
        if self.kv_cache_memory_bytes is not None:
            kw["kv_cache_memory_bytes"] = self.kv_cache_memory_bytes
        if self.block_size is not None:
            kw["block_size"] = self.block_size
        kw.update(self.extra)
        return kw

    def model_name(self, model_path: str) -> str:
        """The served model name."""
        if self.served_model_name:
            return self.served_model_name
        return "tiny-llama" if self.model == "tiny" else Path(model_path).name


def resolve_model(model: str) -> str:
    """A model folder for ``model``; ``"tiny"`` builds (once) and returns the offline tiny model."""
    if model == "tiny":
        from sagellm_obs.models import TINY, build_model

        return str(build_model(TINY))
    return model
