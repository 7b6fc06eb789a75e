"""sagellm-obs: observability for LLM inference, with Jupyter as its home.

The public facade. Importing it is light: vllm, torch, altair and ipywidgets load only when the
engine, the model builder or the charts are used.

Example:
    .. code-block:: python

        import sagellm_obs as so

        so.configure()  # local run folder; OTLP too when OTEL_EXPORTER_OTLP_ENDPOINT is set
        with so.Engine("tiny", in_process=True) as engine:
            print(engine.completion("def fib(n):", max_tokens=16).metrics.ttft_ms)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sagellm_obs import _deferred_imports
from sagellm_obs.telemetry import AdvancedOptions, Telemetry, configure, current, shutdown

_deferred_imports.defer()  # before anything imports altair (and jsonschema with it)

if TYPE_CHECKING:
    from sagellm_obs.engine import Engine, EngineConfig, InstrumentedEngine

_LAZY = {
    "Engine": "sagellm_obs.engine",
    "EngineConfig": "sagellm_obs.engine",
    "InstrumentedEngine": "sagellm_obs.engine",
}

__all__ = [
    "AdvancedOptions",
    "Engine",
    "EngineConfig",
    "InstrumentedEngine",
    "Telemetry",
    "__version__",
    "configure",
    "current",
    "shutdown",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("sagellm-obs")
        except metadata.PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module 'sagellm_obs' has no attribute {name!r}")
