"""Run folders written by the real telemetry pipeline, shared by the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_run import build_run


@pytest.fixture(scope="session")
def run_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("runs") / "baseline", 50, seed=1)


@pytest.fixture(scope="session")
def run_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("runs") / "slower", 40, seed=2, slowdown=2.0)
