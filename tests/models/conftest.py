"""Shared fixtures for the tiny-model builder tests: one real build per test session."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sagellm_obs.models import CACHE_ENV, TINY, build_model


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private model cache root for the session."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def tiny_model(model_cache: Path) -> tuple[Path, float]:
    """Build :data:`TINY` once through the default (env-selected) cache dir.

    Returns:
        The model directory and the build time in seconds.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(model_cache))
        started = time.perf_counter()
        path = build_model(TINY)
        elapsed = time.perf_counter() - started
    return path, elapsed


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any accidental hub access fail instead of downloading."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
