"""vLLM's settings from the environment, cached in this process once an engine has started.

vLLM reads each ``VLLM_*`` setting from ``os.environ`` every time its code asks for it, unless
``vllm.envs.enable_envs_cache()`` was called: EngineCore calls it after start-up, vLLM's frontend
(``AsyncLLM``) does not, and its output processor asks for one setting per request per step (the
NaN check in ``vllm/v1/metrics/stats.py``: two ``os.getenv`` calls, 2.4 µs a read uncached
against 0.4 µs cached, ``timeit`` on a quiet machine). Caching it is vLLM's own remedy, with
vLLM's own rule: settings changed after start-up are not seen. Holds nest
(:class:`~sagellm_obs.engine.holds.NestedHold`, as :mod:`~sagellm_obs.engine.gc_heap`'s): the
cache is dropped when the last engine holding it shuts down, and an engine starting drops it
first so that it reads the environment afresh.
"""

from __future__ import annotations

from typing import Any

from sagellm_obs.engine.holds import NestedHold


def _envs() -> Any:
    import vllm.envs

    # vLLM < 0.11 has no cache: nothing to do.
    return vllm.envs if hasattr(vllm.envs, "enable_envs_cache") else None


def read_afresh() -> None:
    """Drop the cache (if any) so that an engine starting now reads the environment as it is;
    the holders' engines read uncached until :func:`hold` caches it again."""
    envs = _envs()
    if envs is not None:
        envs.disable_envs_cache()


def _cache_afresh() -> None:
    # Afresh: vLLM's in-process EngineCore caches them while the engine's start-up settings are
    # still in the environment.
    envs = _envs()
    if envs is not None:
        envs.disable_envs_cache()
        envs.enable_envs_cache()


_cache = NestedHold(_cache_afresh, read_afresh)


def hold() -> None:
    """Cache vLLM's settings as they are now (one hold)."""
    _cache.hold()


def release() -> None:
    """Drop one hold of :func:`hold`; the last one drops the cache."""
    _cache.release()


def holders() -> int:
    """How many holds of :func:`hold` are not released."""
    return _cache.holders


def cached() -> bool:
    """Whether vLLM's settings are cached in this process now (by us or by vLLM)."""
    envs = _envs()
    return envs is not None and hasattr(getattr(envs, "__getattr__", None), "cache_clear")
