from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagellm_obs.testing import sagellm_capture as sagellm_capture
from tests.frames.frames_otlp import LiveRun, live_run

# The public fixture (sagellm_capture) by import rather than ``pytest_plugins``, which users write:
# frames_otlp imports sagellm_obs.testing first, so pytest could not assert-rewrite it as a plugin.

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, what: str, how: str) -> None:
    """Skip (outside CI) or fail (in CI) when a system component is missing."""
    if condition:
        return
    msg = f"{what} is not available; install it with: {how}"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def need_binary(name: str, how: str) -> str:
    path = shutil.which(name)
    need(path is not None, name, how)
    assert path is not None
    return path


def selected(request: pytest.FixtureRequest, test: str, param: str) -> list[str]:
    """The values of ``param`` of the collected items of ``test`` in the requesting module: what
    a module fixture that works ahead for those tests (two at a time, say) has to do."""
    return [
        str(item.callspec.params[param])
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.path == request.path
        and item.originalname == test
    ]


@pytest.fixture
def writer(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveRun]:
    """A run folder being written by the real telemetry writer (``batch()`` adds to it; shut
    ``.tel`` down to end the run). Parametrize indirectly with a size to rotate files at it."""
    run = live_run(tmp_path / "run", store_max_bytes=getattr(request, "param", None))
    try:
        yield run
    finally:
        run.tel.shutdown()
