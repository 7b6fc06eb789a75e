"""The examples a user copies must keep working."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import selected, work_ahead

EXAMPLES = Path(__file__).parents[1] / "examples"


def _run(name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    run = [sys.executable, str(EXAMPLES / name)]
    return subprocess.run(run, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ran(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[Future[subprocess.CompletedProcess[str]], Path]]]:
    """The selected examples, run two at a time (most of each is one process's imports)."""
    cwds = {n: tmp_path_factory.mktemp(n) for n in selected(request, "test_example_runs", "name")}
    with work_ahead({n: partial(_run, n, cwd) for n, cwd in cwds.items()}) as done:
        yield {n: (done[n], cwd) for n, cwd in cwds.items()}


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
