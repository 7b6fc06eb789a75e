"""Every notebook runs top to bottom in a fresh kernel (nbclient) and shows its charts.

The static checks (stored without outputs, a markdown introduction first, the offline renderer
enabled before any chart) are fast; executing the notebooks starts vLLM once or twice each and is
marked ``engine``, and what each must show is :func:`notebook_checks.check_executed`. Each
notebook runs in its own temporary working directory, so its run folders (``sagellm-runs/``) land
there. Timings go to ``test-artifacts/notebook-timings.json``. 07_live runs in
``test_live_notebook`` instead, which makes the same checks.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import nbformat
import pytest
from notebook_checks import check_executed
from notebook_helpers import ARTIFACTS, KERNEL, NOTEBOOKS, NOTEBOOKS_DIR, notebook_client

from tests.conftest import selected, work_ahead

CELL_TIMEOUT = 300  # seconds; an engine start on a busy CI machine can take a minute
# 07_live is executed by test_live_notebook, which watches its view while the run writes and then
# makes these same checks: one engine start fewer than running it here as well.
EXECUTED = tuple(n for n in NOTEBOOKS if n != "07_live")
CHART_CALL = re.compile(r"\bcharts\.\w+\(|\balt\.Chart\(|\bexplore\(|\blive\(")


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)


def test_the_notebooks_are_there() -> None:
    assert sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")) == list(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_clean(name: str) -> None:
    path = NOTEBOOKS_DIR / f"{name}.ipynb"
    nb = _read(name)
    nbformat.validate(nb)
    assert path.stat().st_size < 40_000, "notebooks are stored small, without outputs"
    assert "widgets" not in nb.metadata
    assert nb.metadata["kernelspec"]["name"] == KERNEL
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    sources = [c.source for c in code]
    offline = next(i for i, s in enumerate(sources) if "enable_offline_renderer()" in s)
    drawing = [CHART_CALL.search(s.replace("charts.enable_offline_renderer(", "")) for s in sources]
    first_chart = next(i for i, found in enumerate(drawing) if found)
    assert offline < first_chart
    assert "SAGELLM_OBS_NOTEBOOK_REQUESTS" in sources[offline]


@dataclass
class Executed:
    nb: nbformat.NotebookNode
    folder: Path  # the notebook's working directory
    seconds: float


def _execute(name: str, folder: Path) -> Executed:
    nb = _read(name)
    client = notebook_client(
        nb, timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(folder)}}
    )
    start = time.monotonic()
    client.execute()  # raises CellExecutionError naming the cell on the first error
    return Executed(nb, folder, time.monotonic() - start)


@pytest.fixture(scope="module")
def executed(
    request: pytest.FixtureRequest,
    notebook_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[Executed]]]:
    """The selected notebooks, executed two at a time in their own kernels.

    Most of a notebook's minute is one thread's work (imports in the kernel and in vLLM's
    EngineCore, which starts by spawn), so two overlap on two cores: the nine took 227 s instead
    of 411 s one after the other (2 cores, 2026-12-07). Each test waits for its own notebook.
    """
    names = selected(request, "test_notebook_executes", "name")
    with work_ahead({n: partial(_execute, n, tmp_path_factory.mktemp(n)) for n in names}) as done:
        yield done


@pytest.mark.engine
@pytest.mark.parametrize("name", EXECUTED)
def test_notebook_executes(name: str, executed: dict[str, Future[Executed]]) -> None:
    run = executed[name].result()
    _record_timing(name, run.seconds)
    check_executed(name, run.nb, run.folder)


def _record_timing(name: str, seconds: float) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "notebook-timings.json"
    try:
        timings = json.loads(path.read_text())
    except (OSError, ValueError):
        timings = {}
    timings[name] = round(seconds, 1)
    path.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")
