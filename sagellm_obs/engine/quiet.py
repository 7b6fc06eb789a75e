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
``TORCH_CPP_LOG_LEVEL``, ``PYTHONWARNINGS``) are left as they are; ours are set for the start only,
so a later subprocess sees the environment as it was. Our own loggers
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


def resolve_level(level: str | None = None) -> str:
    """The level for ``level`` (None: ``$SAGELLM_OBS_LOG_LEVEL``, else ``"error"``).

    Raises:
        ValueError: Not one of :data:`LEVELS`.
    """
    name = (level or os.environ.get(sc.ENV_LOG_LEVEL) or DEFAULT_LEVEL).strip().lower()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}; got {name!r}")
    return name


def _ignore_library_warnings(on: bool) -> None:
    """Adds or removes our filter; looks at the filters in place (``catch_warnings`` blocks, as
    pytest's, restore them behind our back)."""
    filters: list[Any] = warnings.filters  # type: ignore[assignment]  # a list at runtime
    ours = [f for f in filters if f[0] == "ignore" and _pattern(f[3]) == _NOISY_MODULES]
    if on and not ours:
        warnings.filterwarnings("ignore", module=_NOISY_MODULES)
    elif not on and ours:
        filters[:] = [f for f in filters if f not in ours]
        mutated = getattr(warnings, "_filters_mutated", None)  # what filterwarnings() calls
        if callable(mutated):
            mutated()


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
    wanted = {"VLLM_LOGGING_LEVEL": name.upper()}
    if quiet:
        # TORCH_CPP_LOG_LEVEL: read when torch's C++ library loads (the NUMA notice); TORCH_LOGS:
        # when torch is imported; PYTHONWARNINGS: by vLLM's EngineCore process, where every
        # warning is vLLM's.
        wanted |= {"TORCH_CPP_LOG_LEVEL": "ERROR", "TORCH_LOGS": "-all", "PYTHONWARNINGS": "ignore"}
    added = {key: value for key, value in wanted.items() if key not in os.environ}
    os.environ.update(added)
    # vLLM reads its variable when it is first imported: set its logger for a later start too.
    logging.getLogger("vllm").setLevel(os.environ["VLLM_LOGGING_LEVEL"].upper())
    if "torch" in sys.modules and os.environ.get("TORCH_LOGS") == added.get("TORCH_LOGS"):
        # torch was imported before (its variable is read then): set its logger (not the user's).
        logging.getLogger("torch").setLevel(logging.ERROR if quiet else logging.WARNING)
    _ignore_library_warnings(quiet)
    try:
        yield {"use_tqdm_on_load": False} if quiet else {}
    finally:
        # Scoped to the start: later subprocesses (and tests) see the environment as it was.
        for key in added:
            os.environ.pop(key, None)
