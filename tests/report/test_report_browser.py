"""report.html in headless Chromium (Debian's, driven by playwright): every chart draws, offline.

Needs ``/usr/bin/chromium`` (``apt-get install chromium chromium-driver``) and pip ``playwright``;
never ``playwright install``. Skipped when missing, failed under ``CI=true``. The screenshot goes
to ``test-artifacts/report.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from sagellm_obs.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _need(ok: bool, message: str) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def test_report_renders_offline_in_chromium(run_a: Path, tmp_path: Path) -> None:
    _need(CHROMIUM.exists(), "chromium not installed: apt-get install chromium chromium-driver")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the environment
        _need(False, "playwright not installed: pip install playwright (no 'playwright install')")
        raise
    report = write_report(run_a, tmp_path / "report.html")
    ARTIFACTS.mkdir(exist_ok=True)
    profile = tmp_path / "chromium-profile"
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
            viewport={"width": 1300, "height": 900},
        )
        try:
            page = browser.new_page()
            requests: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(report.as_uri())
            try:
                page.wait_for_function(
                    "window.sagellmCharts && window.sagellmCharts.done", timeout=30_000
                )
            except Exception as exc:  # playwright's TimeoutError
                page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
                partial = page.evaluate("window.sagellmCharts || null")
                pytest.fail(
                    f"charts did not finish rendering ({exc}); state={partial}, "
                    f"page errors={errors}; screenshot: {ARTIFACTS / 'report.png'}"
                )
            state: dict[str, Any] = page.evaluate("window.sagellmCharts")
            sizes = page.evaluate(
                """() => [...document.querySelectorAll("div.vega[data-spec]")].map((el) => {
                    const g = el.querySelector("svg, canvas");
                    const r = g ? g.getBoundingClientRect() : null;
                    const marks = g ? g.querySelectorAll("path, rect, line, text").length : 0;
                    return [el.dataset.spec, r ? r.width : 0, r ? r.height : 0, marks];
                })"""
            )
            # A chart wider than its card gets a scroll bar: name the ones that do.
            overflowing = page.evaluate(
                """() => [...document.querySelectorAll("figure.chart")]
                    .filter((f) => f.scrollWidth > f.clientWidth + 1)
                    .map((f) => [f.id, f.scrollWidth, f.clientWidth])"""
            )
            linked = _brush_filters_the_waterfall(page)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    shutil.rmtree(profile, ignore_errors=True)
    shot = ARTIFACTS / "report.png"
    assert not state["failed"], f"charts failed: {state['failed']} (see {shot})"
    assert state["rendered"] == state["total"] == 11, f"{state} (see {shot})"
    empty = [(key, w, h, n) for key, w, h, n in sizes if not (w > 0 and h > 0 and n > 0)]
    assert not empty, f"charts without a drawing: {empty} (see {shot})"
    assert not overflowing, f"charts wider than their card: {overflowing} (see {shot})"
    external = [u for u in requests if not u.startswith(("file:", "data:", "blob:", "about:"))]
    assert not external, f"the report fetched {external}"
    assert not errors, f"errors in the page: {errors}"
    before, after = linked
    assert 0 < after < before, f"brushing did not filter the waterfall: {before} -> {after} bars"


def _brush_filters_the_waterfall(page: Any) -> tuple[int, int]:
    """Drags over part of the dashboard's KV timeline; returns waterfall bars before and after.

    The drag starts inside the plot (the line's box can reach past the plot's left edge, where
    the press would miss the view).
    """
    dash = page.locator("#chart-dashboard")
    bars = dash.locator("g.waterfall_marks path")
    before = bars.count()
    timeline = dash.locator("g.kv_timeline_marks").first
    timeline.scroll_into_view_if_needed()
    box = timeline.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.1, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=8)
    page.mouse.up()
    after = before
    for _ in range(30):  # Vega re-renders asynchronously
        page.wait_for_timeout(100)
        after = bars.count()
        if after != before:
            break
    page.evaluate("window.scrollTo(0, 0)")
    return before, after
