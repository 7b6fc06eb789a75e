"""``EngineConfig``: how to start vLLM, and the model folder it loads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
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
        freeze_gc: Once vLLM has started, freeze the process's heap out of the garbage
            collector's reach (``gc.collect(); gc.freeze()``) as vLLM's own server does, so that
            no full collection over torch's and vLLM's objects stalls requests; undone at
            shutdown (see :mod:`sagellm_obs.engine.gc_heap`). False leaves the collector alone.
        cache_vllm_env: Once vLLM has started, cache vLLM's ``VLLM_*`` settings in this process,
            as vLLM's EngineCore does in its own: vLLM's frontend otherwise reads one from
            ``os.environ`` per request per step. Settings changed later are seen at the next
            start; undone at shutdown (see :mod:`sagellm_obs.engine.vllm_env`). False leaves
            vLLM reading them every time.
        extra: More ``AsyncEngineArgs`` keywords (see :func:`check_engine_args`).
        log_level: What vLLM and torch print while the engine starts: ``error`` (default),
            ``warning``, ``info`` or ``debug``; None reads ``$SAGELLM_OBS_LOG_LEVEL`` (see
            :mod:`sagellm_obs.engine.quiet`). Not an engine argument: not recorded with them.
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
    freeze_gc: bool = True
    cache_vllm_env: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    log_level: str | None = None

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


def with_overrides(config: EngineConfig, overrides: Mapping[str, Any]) -> EngineConfig:
    """A copy of ``config`` with ``overrides`` set (``Engine("tiny", max_model_len=512)``).

    Raises:
        TypeError: A key is not an :class:`EngineConfig` field (vLLM's other arguments go in
            ``extra``).
    """
    names = {f.name for f in fields(EngineConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(
            f"unknown engine option {', '.join(map(repr, unknown))}: EngineConfig takes "
            f"{', '.join(sorted(names))}; other vLLM engine arguments go in extra={{...}}"
        )
    return replace(config, **overrides)


def check_engine_args(args: Mapping[str, Any]) -> None:
    """Checks that every key of ``args`` is a field of vLLM's ``EngineArgs`` (imports vLLM).

    Raises:
        ValueError: Unknown keys; the message names the closest fields.
    """
    import dataclasses
    import difflib

    from vllm.engine.arg_utils import EngineArgs

    known = {f.name for f in dataclasses.fields(EngineArgs)}
    for key in args:
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"{key!r} is not a vLLM engine argument (EngineArgs field){hint}")


def resolve_model(model: str) -> str:
    """A model folder for ``model``; ``"tiny"`` builds (once) and returns the offline tiny model."""
    if model == "tiny":
        from sagellm_obs.models import TINY, build_model

        return str(build_model(TINY))
    return model
