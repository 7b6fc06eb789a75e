"""07_live in a real kernel (nbclient): the live view's widgets advance while the run writes.

The notebook's cells run one by one up to the live view; then, in the same kernel and while the
workload is still running, the view's widgets are read twice (:data:`live_probe.PROBE`): the
steps drawn by the KV chart, its newest bucket and the requests the TTFT chart's buckets count
grow.
The notebook's last cell ends the run; the view then stops by itself, and the final picture (the
widget state saved in the notebook, as a reader opening it sees it) draws every step of the run,
counted by the loader, and the notebook passes every executed notebook's checks
(:func:`notebook_checks.check_executed`; this is 07_live's only execution by nbclient).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from live_probe import LIVE_REQUESTS, PROBE, drawn_steps_of_run, run_folder
from notebook_checks import JUPYTER_CHART, check_executed, widget_states
from notebook_helpers import NOTEBOOKS_DIR, notebook_client

CELL_TIMEOUT = 300
WAIT_S = 120  # generous: the condition is polled, never slept on


def _probe(client: Any, index: int) -> dict[str, Any]:
    """Runs the probe cell (the notebook's last, added by the test) and decodes what it printed."""
    cell = client.nb.cells[index]
    client.execute_cell(cell, index)
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    seen: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return seen


def _until(client: Any, index: int, ok: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        seen = _probe(client, index)
        if ok(seen):
            return seen
        assert not seen["run_done"], f"the run ended before {what}: {seen}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {seen}"
        time.sleep(0.2)


@pytest.mark.engine
def test_the_live_view_advances_while_the_run_writes(
    notebook_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGELLM_OBS_NOTEBOOK_REQUESTS", LIVE_REQUESTS)
    nb = nbformat.read(NOTEBOOKS_DIR / "07_live.ipynb", as_version=4)
    live_cell = next(
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "live(" in c.source
    )
    cells = len(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))  # run by the test only, index ``cells``
    client = notebook_client(
        nb, timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(tmp_path)}}
    )
    with client.setup_kernel():
        for index in range(live_cell + 1):
            client.execute_cell(nb.cells[index], index)
        first = _until(client, cells, lambda s: s["steps"] > 0 and s["ttft_requests"] > 0, "data")
        second = _until(
            client,
            cells,
            lambda s: (
                s["steps"] > first["steps"]
                and s["ttft_requests"] > first["ttft_requests"]
                and s["latest_ms"] > first["latest_ms"]
            ),
            "the view to advance",
        )
        # Both seen while the workload was still running, by a view that says so.
        assert not first["run_done"] and not second["run_done"], (first, second)
        # (No claim on ``refreshes``: the probe may read charts a refresh drew before it counts.)
        assert "live" in first["status"] and "live" in second["status"]
        for index in range(live_cell + 1, cells):
            client.execute_cell(nb.cells[index], index)
        final = _probe(client, cells)
        client.set_widgets_metadata()
    # The last cell waited for the view to end: it stopped refreshing by itself.
    assert final["run_done"] and final["ended"] and not final["thread_alive"], final
    assert "ended" in final["status"]
    run = run_folder(tmp_path)
    steps = drawn_steps_of_run(run)  # in the view's window (the run's last 120 s)
    assert final["steps"] == steps
    assert steps > second["steps"] or steps < drawn_steps_of_run(run, 1e9)  # or it slid past
    # The final picture is what the notebook keeps: the saved KV chart draws the same steps.
    saved = _saved_kv_steps(nb)
    assert saved == steps
    # And what every executed notebook must show (test_notebooks_execute leaves 07_live to this).
    check_executed("07_live", nb, tmp_path)


def _saved_kv_steps(nb: nbformat.NotebookNode) -> int:
    """Steps drawn by the KV-usage chart in the widget state saved with the notebook."""
    states = widget_states(nb)
    counts: list[int] = []
    for model in states.values():
        state = model["state"]
        if state.get("_anywidget_id") != JUPYTER_CHART or not state.get("spec"):
            continue
        rows = [r for rs in state["spec"].get("datasets", {}).values() for r in rs]
        if any("steps" in r and "peak" in r for r in rows):
            counts.append(int(sum(r["steps"] for r in rows if "steps" in r)))
    assert len(counts) == 1, counts  # one KV chart
    return counts[0]
