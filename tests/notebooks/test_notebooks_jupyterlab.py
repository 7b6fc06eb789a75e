"""01_quickstart in a real JupyterLab, driven by headless Chromium: charts draw, widgets work.

Starts ``jupyter lab`` (:mod:`lab_helpers`) with a copy of the notebook and its kernel, opens the
notebook from the file browser, runs every cell from the Run menu and waits for the last one.
Then: one kernel ran every cell, the charts (vega-embed SVG/canvas) have a size, the explorer's
widgets are visible, no output holds a traceback, and choosing a request in the explorer's list
redraws its waterfall (a round trip through the kernel). No request leaves the machine. The
screenshot goes to ``test-artifacts/jupyterlab-01.png``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_helpers import (
    ALL_RAN,
    CHART_SIZES,
    KERNEL_IDLE,
    RUN_ALL_TIMEOUT_S,
    Lab,
    diagnose,
    kernels_of_notebook,
    launch,
    local_only,
    log_tail,
    need_browser,
    open_notebook,
    run_all,
    start_lab,
    start_session,
    wait_for,
)
from notebook_helpers import ARTIFACTS

NOTEBOOK = "01_quickstart.ipynb"
SHOT = ARTIFACTS / "jupyterlab-01.png"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A running JupyterLab serving a copy of the notebook."""
    with start_lab(tmp_path, [NOTEBOOK]) as running:
        yield running


@pytest.mark.engine
@pytest.mark.browser
def test_quickstart_runs_in_jupyterlab(lab: Lab) -> None:
    sync_playwright = need_browser()
    log = lab.log
    ARTIFACTS.mkdir(exist_ok=True)
    external: list[str] = []
    page_errors: list[str] = []

    kernel_id = start_session(lab, NOTEBOOK)
    profile = log.parent / "chromium-profile"
    with sync_playwright() as p:
        browser = launch(p, profile)
        try:
            page = browser.new_page()
            local_only(page, external)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            try:
                open_notebook(page, lab, NOTEBOOK, kernel_id)
                run_all(page)
                wait_for(page, ALL_RAN, RUN_ALL_TIMEOUT_S, stall_check=True)
                wait_for(page, KERNEL_IDLE, 60)
                explorer = page.locator(".sagellm-explorer").first
                explorer.wait_for(state="visible", timeout=60_000)
                # Every vega-embed drew something (charts in hidden explorer tabs excepted).
                page.wait_for_function(
                    f"() => ({CHART_SIZES})().filter(([w, h, n]) => w > 0 && h > 0 && n > 0)"
                    ".length >= 6",
                    timeout=90_000,
                    polling=500,
                )
            except Exception as exc:
                page.screenshot(path=str(SHOT))
                pytest.fail(f"{exc}\n{diagnose(page, log, SHOT)}")
            sizes = page.evaluate(CHART_SIZES)
            tracebacks = page.locator(
                '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]',
                has_text="Traceback",
            ).count()
            widgets = {
                sel: page.locator(f".sagellm-explorer {sel}").count()
                for sel in (".widget-dropdown", ".widget-hslider", ".widget-select", ".widget-tab")
            }
            first_title = _waterfall_title(page)
            select = explorer.locator(".widget-select select")
            options = select.locator("option")
            target = options.nth(2).get_attribute("value") or ""
            label = options.nth(2).inner_text()
            select.select_option(index=2)
            chosen = label.replace("\xa0", " ").split(" · ")[0]  # ipywidgets shows nbsp
            page.wait_for_function(
                "(id) => [...document.querySelectorAll('.sagellm-explorer .vega-embed text')]"
                ".some((t) => t.textContent.includes('Request ' + id))",
                arg=chosen,
                timeout=30_000,
            )
            first_chart = page.locator(".jp-Notebook .jp-OutputArea .vega-embed").first
            first_chart.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-01-charts.png"))
            explorer.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOT))
            explorer.screenshot(path=str(ARTIFACTS / "jupyterlab-01-explorer.png"))
            # Another tab: its charts are built when it opens, and draw.
            explorer.locator('.lm-TabBar-tabLabel:text-is("Dashboard")').click()
            page.wait_for_function(
                "() => [...document.querySelectorAll('.sagellm-explorer .vega-embed text')]"
                ".some((t) => t.textContent === 'Run dashboard')",
                timeout=60_000,
            )
            page.wait_for_timeout(500)
            explorer.screenshot(path=str(ARTIFACTS / "jupyterlab-01-dashboard.png"))
        finally:
            browser.close()
    shutil.rmtree(profile, ignore_errors=True)

    drawn = [s for s in sizes if s[0] > 0 and s[1] > 0 and s[2] > 0]
    assert len(drawn) >= 6, f"charts drawn: {sizes} (see {SHOT})"
    assert tracebacks == 0, f"an output holds a traceback (see {SHOT})"
    assert all(n > 0 for n in widgets.values()), f"explorer widgets: {widgets}"
    assert first_title and chosen not in first_title and target
    assert not external, f"requests left the machine: {external}"
    assert not page_errors, f"errors in the page: {page_errors}"
    # One kernel the whole run: a replaced kernel would have run some cells in a fresh namespace.
    assert kernels_of_notebook(lab, NOTEBOOK) == [kernel_id], (
        f"the notebook's kernel changed from {kernel_id}: {kernels_of_notebook(lab, NOTEBOOK)}"
    )
    started = log.read_text(errors="replace").count("Kernel started:")
    assert started == 1, f"{started} kernels started:\n{log_tail(log)}"


def _waterfall_title(page: Any) -> str:
    texts: list[str] = page.evaluate(
        "() => [...document.querySelectorAll('.sagellm-explorer .vega-embed text')]"
        ".map((t) => t.textContent).filter((t) => t.startsWith('Request '))"
    )
    return texts[0] if texts else ""
