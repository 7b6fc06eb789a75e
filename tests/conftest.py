from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

# One OpenMP thread in every process of the suite, set before torch loads (engines, kernels and
# subprocesses inherit it): engines, kernels and browsers running at once then do not spin against
# each other on two cores (the suite ran 30 min instead of 39 here). One engine alone is faster with
# vLLM's default, which make run and make bench keep.
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


# --- two pytest-xdist workers (make test runs -n 2): one test folder at a time on a worker ------
# A folder is the unit: its shared engine or server starts once, and its teardown hooks (which
# stop it after the folder's last test) see the folder's tests in order. Heaviest folders first
# (seconds in a one-process run of 7 Dec in comments), so that the two workers end close together.
_HEAVY_FIRST = (
    "notebooks",  # 611
    "workload",  # 324
    "benchmarks",  # 246
    "hardening",  # 242
    "fleet",  # 158
    "engine",  # 125
    "tests",  # 116: tests/test_*.py, the examples
    "dashboards",  # 111
    "server",  # 91
)
IN_XDIST_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))


def folder_of(nodeid: str) -> str:
    """``tests/<folder>/...`` -> ``<folder>``; a module directly under ``tests/`` -> ``tests``."""
    parts = nodeid.split("::", 1)[0].split("/")
    return parts[1] if len(parts) > 2 else parts[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class ByFolder(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return folder_of(nodeid)

    config.option.loadscopereorder = False  # keep the heaviest-first order below
    return ByFolder(config, log)  # type: ignore[arg-type]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not IN_XDIST_WORKER:
        return
    rank = {name: i for i, name in enumerate(_HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(folder_of(item.nodeid), len(rank)))  # stable


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
    jobs: Mapping[str, Callable[[], T]], workers: int | None = None
) -> Iterator[dict[str, Future[T]]]:
    """Start ``jobs`` at once, ``workers`` at a time; each test waits for its own future.

    For module fixtures whose tests' slow part is a subprocess that is mostly one thread's
    imports (an engine start, a notebook kernel): two overlap on two cores. Under two xdist
    workers the other worker is the overlap, so one at a time (the default). Jobs not started
    when the block ends are cancelled; the running ones are waited for.
    """
    if workers is None:
        workers = 1 if IN_XDIST_WORKER else 2
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
