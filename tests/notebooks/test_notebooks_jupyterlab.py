"""01_quickstart in a real JupyterLab, driven by headless Chromium: charts draw, widgets work.

Starts ``jupyter lab`` from this venv on 127.0.0.1 (a free port, a random token, a temporary
copy of the notebook as its root) and the notebook's kernel through its REST API, opens the
notebook from the file browser (it attaches to that kernel), runs every cell from the Run menu
and waits for the last one. Then: one kernel ran every cell, the charts (vega-embed SVG/canvas)
have a size, the explorer's widgets are visible, no output holds a traceback, and choosing a
request in the explorer's list redraws its waterfall (a round trip through the kernel). No
request leaves the machine. The screenshot goes to ``test-artifacts/jupyterlab-01.png``.

Needs ``/usr/bin/chromium`` (``apt-get install chromium chromium-driver``) and pip ``playwright``
(never ``playwright install``); skipped without them, failed when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from notebook_helpers import ARTIFACTS, KERNEL, NOTEBOOKS_DIR, jupyter_env

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
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
NOTEBOOK = "01_quickstart.ipynb"
SHOT = ARTIFACTS / "jupyterlab-01.png"
RUN_ALL_TIMEOUT_S = 420
STALL_S = 60  # an idle kernel with pending cells and no change for STALL_S means they were lost
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def _need(ok: bool, message: str) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _lab_config(env: dict[str, str]) -> None:
    """No news feed, no update check, no extension manager queries; every cell in the DOM."""
    config = {
        "LabApp": {
            "news_url": None,
            "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
            "extension_manager": "readonly",
        }
    }
    config_dir = Path(env["JUPYTER_CONFIG_DIR"])
    for name in ("jupyter_server_config.json", "jupyter_lab_config.json"):
        (config_dir / name).write_text(json.dumps(config))
    settings = Path(env["JUPYTERLAB_SETTINGS_DIR"])
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    # Windowing would detach (or skip drawing) cells outside the viewport.
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: its base URL, token and server log."""

    base: str
    token: str
    log: Path
    runtime_dir: Path  # the kernels' connection files

    @property
    def url(self) -> str:
        return f"{self.base}/lab?reset&token={self.token}"

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call of the Jupyter server's REST API; the decoded JSON answer."""
        request = urllib.request.Request(
            f"{self.base}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read() or b"null")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A running JupyterLab serving a copy of the notebook."""
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy(NOTEBOOKS_DIR / NOTEBOOK, root / NOTEBOOK)
    env = {**os.environ, **jupyter_env(tmp_path / "jupyter")}
    for key in [k for k in env if k.startswith("OTEL_EXPORTER_OTLP")]:
        del env[key]
    _lab_config(env)
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_path / "jupyter-lab.log"
    jupyter = Path(sys.executable).parent / "jupyter"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(jupyter),
                "lab",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--ServerApp.port_retries=0",
                "--no-browser",
                "--allow-root",
                f"--ServerApp.token={token}",
                f"--ServerApp.root_dir={root}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield Lab(base, token, log, Path(env["JUPYTER_RUNTIME_DIR"]))
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stops the server we started (it shuts its kernels down); its process group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # Kernels the server started share its process group; none may outlive the test.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


_ALL_RAN = """() => {
    const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
    return prompts.length > 0 && prompts.every((p) => /\\[\\d+\\]/.test(p.textContent));
}"""

_STARTED = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
    .some((p) => /\\[(\\*|\\d+)\\]/.test(p.textContent))"""

_KERNEL_IDLE = """() => {
    const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
    return !!status && status.dataset.status === 'idle' && !document.querySelector('.jp-Dialog');
}"""

_CHART_SIZES = """() => [...document.querySelectorAll('.jp-Notebook .vega-embed')].map((el) => {
    const g = el.querySelector('svg, canvas');
    const r = g ? g.getBoundingClientRect() : null;
    return r ? [r.width, r.height, g.querySelectorAll('path, rect, text').length] : [0, 0, 0];
})"""


def _start_session(lab: Lab) -> str:
    """The notebook's session and kernel, created through the REST API before the page opens;
    returns the kernel id once that kernel is idle.

    Left to itself, JupyterLab starts the kernel from the page, and on a slow machine the test
    ran cells before it had: the execution indicator reads "idle" before any kernel exists, and
    Run All Cells dispatches every code cell at once, each of which starts a kernel when it finds
    none; every start replaces the kernel before (CI: three "Kernel started" within 1.5 s, one
    killed while importing ipykernel), so later cells ran in a fresh kernel (``NameError``). A
    start that failed in that churn asked "Select Kernel", and accepting started yet another.
    A notebook whose path already has a session attaches to it and starts nothing.
    """
    specs = lab.api("GET", "/api/kernelspecs")
    assert KERNEL in specs["kernelspecs"], f"no {KERNEL!r} kernelspec: {list(specs['kernelspecs'])}"
    metadata = json.loads((NOTEBOOKS_DIR / NOTEBOOK).read_text())["metadata"]["kernelspec"]
    assert metadata["name"] == KERNEL, f"the notebook asks for {metadata['name']!r}"
    session = lab.api(
        "POST",
        "/api/sessions",
        {"path": NOTEBOOK, "name": NOTEBOOK, "type": "notebook", "kernel": {"name": KERNEL}},
    )
    kernel_id: str = session["kernel"]["id"]
    # The server reports "starting" until it sees the kernel's status change on IOPub, which
    # a kernel only sends when asked something: ask for its info (as JupyterLab does on
    # connecting) over its connection file, again until the server has seen an answer (its
    # IOPub subscription may join after the first one).
    client = BlockingKernelClient(connection_file=str(lab.runtime_dir / f"kernel-{kernel_id}.json"))
    client.load_connection_file()
    client.start_channels()
    deadline = time.monotonic() + 120
    try:
        client.wait_for_ready(timeout=120)
        while (state := lab.api("GET", f"/api/kernels/{kernel_id}")["execution_state"]) != "idle":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server still reports {state!r}")
            client.kernel_info(reply=True, timeout=30)
            time.sleep(0.5)
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(f"kernel {kernel_id} not ready: {exc}\n{_log_tail(lab.log)}")
    finally:
        client.stop_channels()
    return kernel_id


def _kernels_of_notebook(lab: Lab) -> list[str]:
    return [s["kernel"]["id"] for s in lab.api("GET", "/api/sessions") if s["path"] == NOTEBOOK]


@pytest.mark.engine
def test_quickstart_runs_in_jupyterlab(lab: Lab) -> None:
    _need(CHROMIUM.exists(), "chromium not installed: apt-get install chromium chromium-driver")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the environment
        _need(False, "playwright not installed: pip install playwright (no 'playwright install')")
        raise
    log = lab.log
    ARTIFACTS.mkdir(exist_ok=True)
    external: list[str] = []
    page_errors: list[str] = []

    def route(r: Any) -> None:
        parsed = urlparse(r.request.url)
        if parsed.scheme in ("http", "https", "ws", "wss") and parsed.hostname not in LOCAL_HOSTS:
            external.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    kernel_id = _start_session(lab)
    profile = log.parent / "chromium-profile"
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
            viewport={"width": 1440, "height": 3000},  # most of the notebook at once
        )
        try:
            page = browser.new_page()
            page.route("**/*", route)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(lab.url)
            # Open the notebook as a user does, from the file browser (opening it through a
            # /lab/tree/ URL races JupyterLab's layout restorer, which can start kernels twice).
            item = page.locator(f'.jp-DirListing-item[title*="{NOTEBOOK}"]')
            item.wait_for(timeout=90_000)
            item.dblclick()
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            try:
                # The page is connected to our kernel (the server counts its websocket): only
                # then does Run All find a kernel (the indicator says "idle" before one exists).
                deadline = time.monotonic() + 120
                while not lab.api("GET", f"/api/kernels/{kernel_id}")["connections"]:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the page did not connect to kernel {kernel_id}")
                    page.wait_for_timeout(500)
                _wait_for(page, _KERNEL_IDLE, 120)
                _run_all(page)
                _wait_for(page, _ALL_RAN, RUN_ALL_TIMEOUT_S, stall_check=True)
                _wait_for(page, _KERNEL_IDLE, 60)
                explorer = page.locator(".sagellm-explorer").first
                explorer.wait_for(state="visible", timeout=60_000)
                # Every vega-embed drew something (charts in hidden explorer tabs excepted).
                page.wait_for_function(
                    f"() => ({_CHART_SIZES})().filter(([w, h, n]) => w > 0 && h > 0 && n > 0)"
                    ".length >= 6",
                    timeout=90_000,
                    polling=500,
                )
            except Exception as exc:
                page.screenshot(path=str(SHOT))
                pytest.fail(f"{exc}\n{_diagnose(page, log)}")
            sizes = page.evaluate(_CHART_SIZES)
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
    assert _kernels_of_notebook(lab) == [kernel_id], (
        f"the notebook's kernel changed from {kernel_id}: {_kernels_of_notebook(lab)}"
    )
    started = log.read_text(errors="replace").count("Kernel started:")
    assert started == 1, f"{started} kernels started:\n{_log_tail(log)}"


def _run_all(page: Any, attempts: int = 3) -> None:
    """Run > Run All Cells; the menu again only if no cell started at all (a dropped click)."""
    for _ in range(attempts):
        page.locator('.lm-MenuBar-itemLabel:text-is("Run")').click()
        page.locator('.lm-Menu-itemLabel:text-is("Run All Cells")').click()
        try:
            _wait_for(page, _STARTED, 20)
            return
        except TimeoutError:
            continue
    raise TimeoutError("Run All Cells did not start any cell")


class _Stalled(TimeoutError):
    """The kernel is idle, cells are pending and nothing changed in STALL_S seconds."""


def _wait_for(page: Any, condition: str, seconds: float, stall_check: bool = False) -> None:
    """Polls a JavaScript condition. Stops early when JupyterLab asks for a kernel (ours is
    attached before the page opens, so accepting would replace it), a cell shows a traceback or
    the kernel died: waiting longer cannot help then."""
    deadline = time.monotonic() + seconds
    last: tuple[Any, Any] | None = None
    changed = time.monotonic()
    while True:
        if page.evaluate(condition):
            return
        state = page.evaluate(_STATE)
        if any("Select Kernel" in d for d in state["dialogs"]):
            raise RuntimeError("JupyterLab asks for a kernel although one is attached")
        if state["tracebacks"]:
            raise RuntimeError("a cell raised:\n" + "\n---\n".join(state["tracebacks"]))
        if state["status"] == "dead":
            raise RuntimeError("the kernel died")
        if stall_check:
            snapshot = (state["status"], state["prompts"])
            if snapshot != last:
                last, changed = snapshot, time.monotonic()
            elif state["status"] == "idle" and time.monotonic() - changed > STALL_S:
                raise _Stalled(f"idle kernel, prompts unchanged for {STALL_S} s")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {seconds} s waiting for {condition}")
        page.wait_for_timeout(1000)


_STATE = """() => ({
    status: document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status ?? null,
    prompts: [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
        .map((p) => p.textContent.trim()),
    dialogs: [...document.querySelectorAll('.jp-Dialog')].map((d) => d.innerText.slice(0, 500)),
    tracebacks: [...document.querySelectorAll(
        '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]')]
        .map((o) => o.innerText).filter((t) => t.includes('Traceback')).map((t) => t.slice(-3000)),
})"""


def _diagnose(page: Any, log: Path) -> str:
    """What a failed run looked like: the kernel status, each cell's prompt, open dialogs, the
    stderr outputs and the end of the server's log (kernel restarts and errors show there)."""
    try:
        state = page.evaluate(_STATE)
        stderr = page.evaluate(
            "() => [...document.querySelectorAll("
            "'.jp-RenderedText[data-mime-type=\"application/vnd.jupyter.stderr\"]')]"
            ".map((o) => o.innerText.slice(-1500))"
        )
    except Exception as exc:  # the page itself may be gone
        state, stderr = {"error": repr(exc)}, []
    return (
        f"page state: {json.dumps(state, indent=1)}\nstderr outputs: {json.dumps(stderr, indent=1)}"
        f"\njupyter lab log (end):\n{_log_tail(log)}\nscreenshot: {SHOT}"
    )


def _log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-6000:] if log.exists() else "(no log)"


def _waterfall_title(page: Any) -> str:
    texts: list[str] = page.evaluate(
        "() => [...document.querySelectorAll('.sagellm-explorer .vega-embed text')]"
        ".map((t) => t.textContent).filter((t) => t.startsWith('Request '))"
    )
    return texts[0] if texts else ""
