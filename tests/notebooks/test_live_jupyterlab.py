"""07_live in a real JupyterLab (headless Chromium): the live view draws more while the run goes.

JupyterLab opens the notebook (:mod:`lab_helpers`) and runs every cell; the workload runs in the
background while the last cell waits for its end, and the view's refresh thread keeps sending
widget updates. The page is observed twice while the run writes, seconds apart, each time with a
screenshot: the status widget in the page (its text is the model's ``value``) and the chart
models the browser received over the kernel's websocket (comm ``update`` messages of the
JupyterChart widgets, the state vega-embed draws from: the KV chart's steps, the requests the
TTFT chart's buckets count). The later observation shows more requests finished, more steps and
more requests drawn; the view
ends with the run and says so. Screenshots: ``test-artifacts/jupyterlab-07-live-{1,2,ended}.png``.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1
from lab_helpers import (
    ALL_RAN,
    RUN_ALL_TIMEOUT_S,
    diagnose,
    launch,
    local_only,
    need_browser,
    open_notebook,
    run_all,
    start_lab,
    start_session,
    wait_for,
)
from live_probe import LIVE_REQUESTS, drawn_steps_of_run, run_folder
from notebook_helpers import ARTIFACTS

NOTEBOOK = "07_live.ipynb"
SHOTS = {name: ARTIFACTS / f"jupyterlab-07-live-{name}.png" for name in ("1", "2", "ended")}
FAILED_SHOT = ARTIFACTS / "jupyterlab-07-live-failed.png"
WAIT_S = 240  # generous: conditions are polled, never slept on

_STATUS = """() => {
    const live = document.querySelector('.sagellm-live');
    const html = live && live.querySelector('.widget-html-content');
    return html ? html.textContent : null;
}"""


class ChartModels:
    """The latest state of each JupyterChart model, as the browser received it."""

    def __init__(self) -> None:
        self.specs: dict[str, dict[str, Any]] = {}

    def on_frame(self, payload: str | bytes) -> None:
        msg = _decode(payload)  # None, or a message of another websocket (events, terminals)
        if not isinstance(msg, dict) or not isinstance(msg.get("header"), dict):
            return
        if msg["header"].get("msg_type") not in ("comm_open", "comm_msg"):
            return
        content = msg.get("content") or {}
        state = (content.get("data") or {}).get("state") or {}
        if isinstance(state, dict) and state.get("spec") and "comm_id" in content:
            self.specs[content["comm_id"]] = state["spec"]

    def rows(self) -> list[list[dict[str, Any]]]:
        return [
            [r for rs in spec.get("datasets", {}).values() for r in rs]
            for spec in self.specs.values()
        ]

    def steps(self) -> int:
        """Steps drawn by the KV-usage chart (the sum of its buckets' step counts)."""
        kv = [rows for rows in self.rows() if any("peak" in r for r in rows)]
        return sum(r.get("steps", 0) for r in kv[0]) if kv else 0

    def ttft_requests(self) -> int:
        """Requests the TTFT-over-time chart draws: the sum of its buckets' request counts (its
        dots are a bounded sample)."""
        ttft = [rows for rows in self.rows() if any("quantile" in r for r in rows)]
        return sum(r["requests"] for r in ttft[0] if r.get("quantile") == "p50") if ttft else 0


def _decode(payload: str | bytes) -> dict[str, Any] | None:
    """A kernel message from a websocket frame (the v1 binary protocol, or legacy JSON)."""
    try:
        if isinstance(payload, str):
            msg: dict[str, Any] = json.loads(payload)
            return msg
        _channel, parts = deserialize_msg_from_ws_v1(payload)
        header, _parent, _metadata, content = (json.loads(p) for p in parts[:4])
        return {"header": header, "content": content}
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


def _observe(page: Any, models: ChartModels) -> dict[str, Any]:
    status = page.evaluate(_STATUS) or ""
    state = re.search(r": (live|paused|ended) ·", status)
    finished = re.search(r"([\d,]+) requests finished", status)
    return {
        "state": state.group(1) if state else None,
        "requests": int(finished.group(1).replace(",", "")) if finished else 0,
        "steps": models.steps(),
        "ttft_requests": models.ttft_requests(),
        "status": status,
    }


def _until(
    page: Any,
    models: ChartModels,
    ok: Callable[[dict[str, Any]], bool],
    what: str,
    *,
    live: bool = True,
) -> dict[str, Any]:
    """Polls the page until ``ok``; with ``live``, fails once the view says the run ended."""
    deadline = time.monotonic() + WAIT_S
    while True:
        seen = _observe(page, models)
        if ok(seen):
            return seen
        if live and seen["state"] == "ended":
            raise AssertionError(f"the run ended before {what}: {seen}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}: {seen}")
        page.wait_for_timeout(250)


@pytest.mark.engine
@pytest.mark.browser
def test_the_live_view_advances_in_jupyterlab(tmp_path: Path) -> None:
    sync_playwright = need_browser()
    ARTIFACTS.mkdir(exist_ok=True)
    external: list[str] = []
    page_errors: list[str] = []
    models = ChartModels()
    overrides = {"SAGELLM_OBS_NOTEBOOK_REQUESTS": LIVE_REQUESTS}
    with start_lab(tmp_path, [NOTEBOOK], overrides) as lab:
        kernel_id = start_session(lab, NOTEBOOK)
        profile = tmp_path / "chromium-profile"
        with sync_playwright() as p:
            browser = launch(p, profile)
            try:
                page = browser.new_page()
                local_only(page, external)
                page.on("pageerror", lambda e: page_errors.append(str(e)))
                page.on("websocket", lambda ws: ws.on("framereceived", models.on_frame))
                try:
                    open_notebook(page, lab, NOTEBOOK, kernel_id)
                    run_all(page)
                    live = page.locator(".sagellm-live").first
                    live.wait_for(state="visible", timeout=RUN_ALL_TIMEOUT_S * 1000)
                    first = _until(
                        page,
                        models,
                        lambda s: (
                            s["state"] == "live" and s["ttft_requests"] > 0 and s["requests"] > 0
                        ),
                        "the first data",
                    )
                    live.screenshot(path=str(SHOTS["1"]))
                    second = _until(
                        page,
                        models,
                        lambda s: (
                            s["requests"] > first["requests"]
                            and s["steps"] > first["steps"]
                            and s["ttft_requests"] > first["ttft_requests"]
                        ),
                        "the view to advance",
                    )
                    live.screenshot(path=str(SHOTS["2"]))
                    wait_for(page, ALL_RAN, RUN_ALL_TIMEOUT_S, stall_check=True)
                    # The last cell returned after the telemetry shut down: the folder is whole.
                    steps = drawn_steps_of_run(run_folder(tmp_path / "notebooks"))
                    final = _until(
                        page,
                        models,
                        lambda s: s["state"] == "ended" and s["steps"] == steps,
                        f"the final picture of the run's {steps} steps",
                        live=False,
                    )
                    live.screenshot(path=str(SHOTS["ended"]))
                except Exception as exc:
                    page.screenshot(path=str(FAILED_SHOT))
                    pytest.fail(f"{exc}\n{diagnose(page, lab.log, FAILED_SHOT)}")
            finally:
                browser.close()
        shutil.rmtree(profile, ignore_errors=True)

    assert first["state"] == second["state"] == "live", (first, second)
    assert (
        second["requests"] > first["requests"] and second["ttft_requests"] > first["ttft_requests"]
    )
    assert second["steps"] > first["steps"]
    # The final picture the browser keeps draws every step of the run's last 120 s (the
    # view's window; counted by the loader): more than before, unless the window slid past.
    assert final["state"] == "ended" and final["steps"] == steps
    assert steps > second["steps"] or steps < drawn_steps_of_run(
        run_folder(tmp_path / "notebooks"), 1e9
    )
    assert not external, f"requests left the machine: {external}"
    assert not page_errors, f"errors in the page: {page_errors}"
