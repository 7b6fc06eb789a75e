"""Run folders written by the real telemetry pipeline, shared by the explorer tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from explore_run import build_empty_run, build_run


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("explore-runs")


@pytest.fixture(scope="session")
def run_a(runs_root: Path) -> Path:
    return build_run(runs_root / "baseline", 40, seed=1)


@pytest.fixture(scope="session")
def run_b(runs_root: Path) -> Path:
    return build_run(runs_root / "slower", 25, seed=2, slowdown=3.0, prefix="slow")


@pytest.fixture(scope="session")
def run_mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explore-mixed")
    return build_run(
        root / "mixed", 30, seed=3, models=("model-a", "model-b"), engines=("eng-1", "eng-2")
    )


@pytest.fixture(scope="session")
def run_empty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_empty_run(tmp_path_factory.mktemp("explore-empty") / "empty")
