from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

# One OpenMP thread per test engine, set before torch loads (engines, kernels and subprocesses
# inherit it): on the tiny model a second thread gains nothing, and on two cores it spins against
# the notebook kernel, the frontend or another engine (the suite ran 29 min instead of 39 here).
# make run and make bench keep vLLM's default.
os.environ.setdefault("OMP_NUM_THREADS", "1")

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


T = TypeVar("T")


def module_tests(request: pytest.FixtureRequest) -> list[pytest.Function]:
    """The requesting module's tests that this session runs (after ``-k``, ``-m``, deselection)."""
    return [
        item
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.path == request.path
    ]


def selected(request: pytest.FixtureRequest, test: str, param: str) -> list[str]:
    """The values of ``param`` of the selected items of ``test`` in the requesting module."""
    return [
        str(item.callspec.params[param])
        for item in module_tests(request)
        if item.originalname == test
    ]


@contextmanager
def work_ahead(
    jobs: Mapping[str, Callable[[], T]], workers: int = 2
) -> Iterator[dict[str, Future[T]]]:
    """Start ``jobs`` at once, ``workers`` at a time; each test waits for its own future.

    For module fixtures whose tests' slow part is a subprocess that is mostly one thread's
    imports (an engine start, a notebook kernel): two overlap on two cores. Jobs not started
    when the block ends are cancelled; the running ones are waited for.
    """
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ahead")
    try:
        yield {key: pool.submit(job) for key, job in jobs.items()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def writer(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveRun]:
    """A run folder being written by the real telemetry writer (``batch()`` adds to it; shut
    ``.tel`` down to end the run). Parametrize indirectly with a size to rotate files at it."""
    run = live_run(tmp_path / "run", store_max_bytes=getattr(request, "param", None))
    try:
        yield run
    finally:
        run.tel.shutdown()
