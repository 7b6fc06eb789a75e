"""What every executed notebook must show, whoever ran it (nbclient, or the live test).

:func:`check_executed` is the whole check of one notebook run top to bottom: no error, none of
vLLM's start-up noise in the cells, every displayed widget stored, its charts drawn, its run
folder written, and what the notebook itself is about (07_live's view ended with the run,
09_kv_events' charts hold every block event).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat

from sagellm_obs import semconv as sc

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
VEGA_MIMES = ("application/vnd.vegalite.v5+json", "application/vnd.vegalite.v6+json")
JUPYTER_CHART = "altair.jupyter.jupyter_chart.JupyterChart"
# Fewest charts each notebook shows (JupyterChart widgets, explorer charts included).
MIN_CHARTS = {
    "01_quickstart": 9,
    "02_latency_anatomy": 4,
    "03_kv_and_prefix_cache": 5,
    "04_loading_traces": 1,
    "05_comparing_runs": 7,
    "06_tool_using_app": 2,
    "07_live": 5,
    "08_clickhouse": 2,
    "09_kv_events": 2,
}
EXPLORERS = {"01_quickstart": 1, "05_comparing_runs": 1}
STARTUP_NOISE = re.compile(
    r"FutureWarning|Triton not available|NUMA binding|Loading safetensors"
    r"|\b(?:INFO|WARNING) \d\d-\d\d \d\d:\d\d:\d\d"  # vLLM's log lines
)


def widget_states(nb: nbformat.NotebookNode) -> dict[str, Any]:
    state: dict[str, Any] = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return state


def _outputs(nb: nbformat.NotebookNode) -> list[Any]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def _charts(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """Vega-Lite specs of the charts the notebook drew: JupyterChart widgets (displayed alone or
    inside another widget, e.g. the explorer) and plain Vega-Lite outputs."""
    specs = [
        dict(model["state"]["spec"])
        for model in widget_states(nb).values()
        if model["state"].get("_anywidget_id") == JUPYTER_CHART and model["state"].get("spec")
    ]
    for out in _outputs(nb):
        data = out.get("data", {})
        specs.extend(dict(data[m]) for m in VEGA_MIMES if m in data)
    return specs


def check_executed(name: str, nb: nbformat.NotebookNode, folder: Path) -> None:
    """Checks notebook ``name``, executed as ``nb`` (widget state saved) in directory ``folder``."""
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    stderr = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "Traceback" not in stderr, stderr[-3000:]
    # vLLM's and torch's start-up output stays out of the cells (nothing in the notebooks asks
    # for quiet: the engine start does it).
    printed = "".join(o.text for o in outputs if o.output_type == "stream")
    noise = STARTUP_NOISE.findall(printed)
    assert not noise, noise

    # Every widget view displayed refers to a widget whose state was stored.
    states = widget_states(nb)
    views = [
        o["data"][WIDGET_VIEW]["model_id"] for o in outputs if WIDGET_VIEW in o.get("data", {})
    ]
    assert views and all(v in states for v in views)
    charts = _charts(nb)
    assert len(charts) >= MIN_CHARTS[name], f"{len(charts)} charts"
    drawn = [c for c in charts if c.get("datasets") or c.get("data")]
    assert len(drawn) >= MIN_CHARTS[name]
    explorers = [
        m for m in states.values() if "sagellm-explorer" in m["state"].get("_dom_classes", [])
    ]
    assert len(explorers) == EXPLORERS.get(name, 0)
    if name == "07_live":
        _check_live(nb, states)
    runs = [p for p in (folder / "sagellm-runs").iterdir() if (p / "manifest.json").is_file()]
    assert runs, "the notebook wrote no run folder"
    if name == "09_kv_events":
        _check_kv_events(charts, runs)


def _check_live(nb: nbformat.NotebookNode, states: dict[str, Any]) -> None:
    """The live view ended with the run and its charts hold the whole run's data."""
    views = [m for m in states.values() if "sagellm-live" in m["state"].get("_dom_classes", [])]
    assert len(views) == 1
    printed = "".join(o.get("text", "") for o in _outputs(nb) if o.output_type == "stream")
    assert "ended: True" in printed, printed
    statuses = [
        m["state"]["value"]
        for m in states.values()
        if m["model_name"] == "HTMLModel" and "refresh" in m["state"].get("value", "")
    ]
    assert statuses and "ended" in statuses[0], statuses


def _check_kv_events(charts: list[dict[str, Any]], runs: list[Path]) -> None:
    """The cache evicted, and the two KV-event charts hold every block event of the run folder.

    Counted from the run's kv-events lines as written (plain JSON, not the frames the charts
    were built from): one residency per stored block, one evicted residency per removal.
    """
    assert len(runs) == 1, runs
    kinds: dict[str, int] = {}
    for path in sorted(runs[0].glob("kv-events*.jsonl")):
        for line in path.read_text().splitlines():
            kind = json.loads(line)["metadata"][sc.KV_KIND]
            kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds.get("removed", 0) > 0, f"the small KV cache evicted nothing: {kinds}"

    def rows(spec: dict[str, Any]) -> list[dict[str, Any]]:
        (data,) = spec["datasets"].values()
        return list(data)

    (lifetimes,) = [
        c for c in charts if c.get("encoding", {}).get("x", {}).get("field") == "lifetime_s"
    ]
    dots = rows(lifetimes)
    assert len(dots) == kinds["stored"]
    assert sum(d["status"] == "evicted" for d in dots) == kinds["removed"]
    assert sum(d["reuses"] for d in dots) == kinds.get("reused", 0)
    (per_step,) = [c for c in charts if "vconcat" in c]
    buckets = rows(per_step)
    for kind in ("stored", "reused", "removed"):
        assert sum(b[kind] for b in buckets) == kinds.get(kind, 0), kind
