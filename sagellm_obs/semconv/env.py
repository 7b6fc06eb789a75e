"""Environment variables sagellm-obs reads (``OTEL_SEMCONV_STABILITY_OPT_IN``: in stability)."""

from __future__ import annotations

from typing import Final

# --- Environment variables ----------------------------------------------------------------------
ENV_CAPTURE_CONTENT: Final = "SAGELLM_OBS_CAPTURE_CONTENT"
ENV_RUN_DIR: Final = "SAGELLM_OBS_RUN_DIR"
ENV_ENGINE_ID: Final = "SAGELLM_ENGINE_ID"
ENV_STORE: Final = "SAGELLM_OBS_STORE"
ENV_MODEL_CACHE: Final = "SAGELLM_OBS_MODEL_CACHE"
ENV_VLLM_TRACING: Final = "SAGELLM_OBS_VLLM_TRACING"  # configure(vllm_tracing=...) default
ENV_LOG_LEVEL: Final = "SAGELLM_OBS_LOG_LEVEL"  # what vLLM/torch print at start (engine/quiet.py)
