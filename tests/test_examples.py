"""The examples a user copies must keep working."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import selected

EXAMPLES = Path(__file__).parents[1] / "examples"


def _run(name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    run = [sys.executable, str(EXAMPLES / name)]
    return subprocess.run(run, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ran(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[Future[subprocess.CompletedProcess[str]], Path]]]:
    """The selected examples, run two at a time (most of each is one process's imports)."""
    pool = ThreadPoolExecutor(2, thread_name_prefix="example")
    try:
        work = {
            name: tmp_path_factory.mktemp(name)
            for name in selected(request, "test_example_runs", "name")
        }
        yield {name: (pool.submit(_run, name, cwd), cwd) for name, cwd in work.items()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["quickstart.py", "trace_context.py", "llama_stack_chat.py", "fleet.py"]
)
def test_example_runs(
    name: str, ran: dict[str, tuple[Future[subprocess.CompletedProcess[str]], Path]]
) -> None:
    future, cwd = ran[name]
    proc = future.result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TTFT" in proc.stdout
    assert list((cwd / "sagellm-runs").glob("*/traces-*.jsonl"))
