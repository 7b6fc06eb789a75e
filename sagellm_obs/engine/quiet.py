"""What vLLM and torch print while an engine starts: hidden by default, shown on request.

vLLM logs every start-up step, torch warns (``torch.distributed.reduce_op`` is deprecated, "Triton
not available", the NUMA binding notice) and the weight loader draws a progress bar; in a notebook
cell or the terminal that buries what matters. :func:`engine_start_output` sets the level for an
engine's start; the level is ``EngineConfig.log_level``, else ``$SAGELLM_OBS_LOG_LEVEL``, else
``"error"``:

* ``error`` (default): only errors. Python warnings raised in vllm, torch, transformers or triton
  modules are ignored here and every warning in vLLM's EngineCore process (it is started with
  ``PYTHONWARNINGS=ignore``); torch's Python loggers (``TORCH_LOGS=-all``) and its C++ log
  (``TORCH_CPP_LOG_LEVEL``) show errors only; the weight loader draws no progress bar.
* ``warning``: vLLM's and torch's warnings as well.
* ``info``: vLLM's start-up lines too (vLLM's own default); ``debug``: its debug lines.

``sagellm-obs run|serve --log-level LEVEL`` (``--verbose`` is ``info``) sets the variable.
Environment variables the user set (``VLLM_LOGGING_LEVEL``, ``TORCH_LOGS``,
``TORCH_CPP_LOG_LEVEL``, ``PYTHONWARNINGS``) are left as they are. Our own loggers
(``sagellm_obs.*``) are not touched.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from sagellm_obs import semconv as sc

__all__ = ["DEFAULT_LEVEL", "LEVELS", "engine_start_output", "resolve_level"]

LEVELS: Final = ("debug", "info", "warning", "error")
"""The levels, most verbose first."""

DEFAULT_LEVEL: Final = "error"

_NOISY_MODULES: Final = r"(vllm|torch|transformers|triton)(\.|$)"

# Environment values this module set (a later start at another level may change them; a value
# the user set is never changed).
_ours: dict[str, str] = {}
_filter_added = False


def resolve_level(level: str | None = None) -> str:
    """The level for ``level`` (None: ``$SAGELLM_OBS_LOG_LEVEL``, else ``"error"``).

    Raises:
        ValueError: Not one of :data:`LEVELS`.
    """
    name = (level or os.environ.get(sc.ENV_LOG_LEVEL) or DEFAULT_LEVEL).strip().lower()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}; got {name!r}")
    return name


def _put(key: str, value: str) -> None:
    """Set ``key`` unless the user set it."""
    current = os.environ.get(key)
    if current is None or _ours.get(key) == current:
        os.environ[key] = value
        _ours[key] = value


def _drop(key: str) -> None:
    """Unset ``key`` if this module set it."""
    if key in _ours and os.environ.get(key) == _ours.pop(key):
        del os.environ[key]


def _ignore_library_warnings(on: bool) -> None:
    global _filter_added
    if on and not _filter_added:
        warnings.filterwarnings("ignore", module=_NOISY_MODULES)
        _filter_added = True
    elif not on and _filter_added:
        filters: list[Any] = warnings.filters  # type: ignore[assignment]  # a list at runtime
        filters[:] = [
            f for f in filters if not (f[0] == "ignore" and _pattern(f[3]) == _NOISY_MODULES)
        ]
        mutated = getattr(warnings, "_filters_mutated", None)  # what filterwarnings() calls
        if callable(mutated):
            mutated()
        _filter_added = False


def _pattern(module: Any) -> str | None:
    return getattr(module, "pattern", None)


@contextmanager
def engine_start_output(level: str | None = None) -> Iterator[dict[str, Any]]:
    """Sets what vLLM and torch print for the start of an engine inside the block.

    Args:
        level: One of :data:`LEVELS`; None: ``$SAGELLM_OBS_LOG_LEVEL``, else ``"error"``.

    Yields:
        ``AsyncEngineArgs`` keywords the level implies (``use_tqdm_on_load=False`` when quiet);
        the engine's own arguments win over them.

    Raises:
        ValueError: Unknown level.
    """
    name = resolve_level(level)
    quiet = name == "error"
    _put("VLLM_LOGGING_LEVEL", name.upper())
    # vLLM reads its variable when it is first imported: set its logger for a later start too.
    logging.getLogger("vllm").setLevel(os.environ["VLLM_LOGGING_LEVEL"].upper())
    if quiet:
        _put("TORCH_CPP_LOG_LEVEL", "ERROR")  # read when torch's C++ library loads
        _put("TORCH_LOGS", "-all")  # read when torch is imported
        if "torch" in sys.modules and os.environ.get("TORCH_LOGS") == "-all":
            logging.getLogger("torch").setLevel(logging.ERROR)
    else:
        for key in ("TORCH_CPP_LOG_LEVEL", "TORCH_LOGS"):
            _drop(key)
        if "torch" in sys.modules and "TORCH_LOGS" not in os.environ:
            logging.getLogger("torch").setLevel(logging.WARNING)  # torch's own default
    _ignore_library_warnings(quiet)
    # vLLM's EngineCore process starts inside the block; only there is every warning vLLM's.
    scoped = quiet and "PYTHONWARNINGS" not in os.environ
    if scoped:
        os.environ["PYTHONWARNINGS"] = "ignore"
    try:
        yield {"use_tqdm_on_load": False} if quiet else {}
    finally:
        if scoped:
            os.environ.pop("PYTHONWARNINGS", None)
