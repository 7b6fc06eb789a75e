"""The instrumented engine over vLLM (imported lazily: it pulls in vllm)."""

from __future__ import annotations

from sagellm_obs.engine.config import EngineConfig
from sagellm_obs.engine.core import InstrumentedEngine
from sagellm_obs.engine.sync import Engine

__all__ = ["Engine", "EngineConfig", "InstrumentedEngine"]
