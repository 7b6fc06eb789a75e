"""What the live view of notebook 07_live shows, read from its widgets, and the run's own count.

Both live-view notebook tests (nbclient and JupyterLab) run 07_live with a workload long enough to
be watched (:data:`LIVE_REQUESTS`), observe the view twice while the run writes, and compare its
final picture with the run folder loaded independently (:func:`drawn_steps_of_run`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

LIVE_REQUESTS = "800"
"""SAGELLM_OBS_NOTEBOOK_REQUESTS for the live tests: 07_live runs twice as many requests, long
enough (~15 s here; 4 s at 200) for many refreshes while the run writes."""

PROBE = """
import json as _json
def _drawn(widget):
    spec = widget.spec or {}
    return [row for rows in spec.get("datasets", {}).values() for row in rows]
_kv = [r for r in _drawn(view.views["kv"]) if "steps" in r]
_ttft = [r for r in _drawn(view.views["ttft"]) if r.get("quantile") == "p50"]
print(_json.dumps({
    "steps": sum(r["steps"] for r in _kv),
    "latest_ms": max((r["time"] for r in _kv), default=None),
    "ttft_requests": sum(r["requests"] for r in _ttft),
    "run_done": done.done(),
    "ended": view.ended,
    "refreshes": view.refreshes,
    "thread_alive": view._thread is not None and view._thread.is_alive(),
    "status": view.status.value,
}))
"""
"""Run in the notebook's kernel: what the view's widgets hold (the state sent to the browser):
the steps the KV chart draws (the sum of its buckets' step counts) and its newest bucket, the
requests the TTFT chart's quantiles are taken over (the sum of its buckets' request counts: its
dots are a bounded sample) and whether the run's workload is done."""


def drawn_steps_of_run(run_dir: Path, window_s: float = 120.0) -> int:
    """Steps with a KV usage in the run folder, read by the loader (not by the live view), in
    the view's final window: the last ``window_s`` seconds (notebook 07's ``window_s``) before
    the newest span start, step or metric (a run slowed by a loaded machine outlasts it)."""
    from datetime import timedelta

    from sagellm_obs.frames import load

    frames = load(run_dir, cache=False)
    newest = [
        frames.spans["start"].max(),
        frames.steps["time"].max(),
        frames.metrics["time"].max() if frames.metrics.height else None,
    ]
    cut = max(t for t in newest if t is not None) - timedelta(seconds=window_s)  # type: ignore[operator]
    return frames.steps.filter(
        pl.col("kv_cache_usage").is_not_null()
        & pl.col("kv_cache_usage").is_not_nan()
        & (pl.col("time") >= cut)
    ).height


def run_folder(root: Path) -> Path:
    """The one run folder the notebook wrote under ``root``."""
    (run,) = [p for p in (root / "sagellm-runs").iterdir() if (p / "manifest.json").is_file()]
    return run
