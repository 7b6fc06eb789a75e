"""The examples a user copies must keep working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["quickstart.py", "trace_context.py", "llama_stack_chat.py", "fleet.py"]
)
def test_example_runs(name: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TTFT" in proc.stdout
    assert list((tmp_path / "sagellm-runs").glob("*/traces-*.jsonl"))
