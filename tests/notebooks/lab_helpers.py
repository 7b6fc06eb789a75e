"""A real JupyterLab driven by headless Chromium: the server, the notebook's kernel, the page.

:func:`start_lab` starts ``jupyter lab`` from this venv on 127.0.0.1 (a free port, a random
token, temporary copies of the notebooks as its root); :func:`start_session` starts a notebook's
kernel through the REST API before the page opens; :func:`open_notebook` opens it from the file
browser (it attaches to that kernel), and :func:`run_all` / :func:`wait_for` drive and watch it.
No request leaves the machine (:func:`local_only`).

Needs ``/usr/bin/chromium`` (``apt-get install chromium chromium-driver``) and pip ``playwright``
(never ``playwright install``); :func:`need_browser` skips without them, fails when ``CI=true``.
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
from notebook_helpers import KERNEL, NOTEBOOKS_DIR, jupyter_env

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
RUN_ALL_TIMEOUT_S = 420
STALL_S = 60  # an idle kernel with pending cells and no change for STALL_S means they were lost
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def need(ok: bool, message: str) -> None:
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


def need_browser() -> Any:
    """Playwright's ``sync_playwright`` (skips, or fails under CI, without it or Chromium)."""
    need(CHROMIUM.exists(), "chromium not installed: apt-get install chromium chromium-driver")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the environment
        need(False, "playwright not installed: pip install playwright (no 'playwright install')")
        raise
    return sync_playwright


@contextlib.contextmanager
def start_lab(
    tmp_path: Path, notebooks: list[str], env_overrides: dict[str, str] | None = None
) -> Iterator[Lab]:
    """A running JupyterLab serving copies of ``notebooks`` (file names); stopped on exit."""
    root = tmp_path / "notebooks"
    root.mkdir()
    for name in notebooks:
        shutil.copy(NOTEBOOKS_DIR / name, root / name)
    env = {**os.environ, **jupyter_env(tmp_path / "jupyter"), **(env_overrides or {})}
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


ALL_RAN = """() => {
    const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
    return prompts.length > 0 && prompts.every((p) => /\\[\\d+\\]/.test(p.textContent));
}"""

STARTED = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
    .some((p) => /\\[(\\*|\\d+)\\]/.test(p.textContent))"""

KERNEL_IDLE = """() => {
    const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
    return !!status && status.dataset.status === 'idle' && !document.querySelector('.jp-Dialog');
}"""

CHART_SIZES = """() => [...document.querySelectorAll('.jp-Notebook .vega-embed')].map((el) => {
    const g = el.querySelector('svg, canvas');
    const r = g ? g.getBoundingClientRect() : null;
    return r ? [r.width, r.height, g.querySelectorAll('path, rect, text').length] : [0, 0, 0];
})"""


def start_session(lab: Lab, notebook: str) -> str:
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
    metadata = json.loads((NOTEBOOKS_DIR / notebook).read_text())["metadata"]["kernelspec"]
    assert metadata["name"] == KERNEL, f"the notebook asks for {metadata['name']!r}"
    session = lab.api(
        "POST",
        "/api/sessions",
        {"path": notebook, "name": notebook, "type": "notebook", "kernel": {"name": KERNEL}},
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
        pytest.fail(f"kernel {kernel_id} not ready: {exc}\n{log_tail(lab.log)}")
    finally:
        client.stop_channels()
    return kernel_id


def kernels_of_notebook(lab: Lab, notebook: str) -> list[str]:
    return [s["kernel"]["id"] for s in lab.api("GET", "/api/sessions") if s["path"] == notebook]


def local_only(page: Any, external: list[str]) -> None:
    """Requests to other hosts are aborted and listed in ``external``."""

    def route(r: Any) -> None:
        parsed = urlparse(r.request.url)
        if parsed.scheme in ("http", "https", "ws", "wss") and parsed.hostname not in LOCAL_HOSTS:
            external.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    page.route("**/*", route)


def launch(p: Any, profile: Path) -> Any:
    """Headless Chromium (a persistent context in ``profile``), tall enough for a notebook."""
    return p.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        args=ARGS,
        headless=True,
        viewport={"width": 1440, "height": 3000},  # most of the notebook at once
    )


def open_notebook(page: Any, lab: Lab, notebook: str, kernel_id: str) -> None:
    """Opens the notebook from the file browser, as a user does, and waits until the page is
    connected to its kernel and the kernel is idle."""
    page.goto(lab.url)
    # Opening it through a /lab/tree/ URL races JupyterLab's layout restorer, which can start
    # kernels twice.
    item = page.locator(f'.jp-DirListing-item[title*="{notebook}"]')
    item.wait_for(timeout=90_000)
    item.dblclick()
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    # The page is connected to our kernel (the server counts its websocket): only then does
    # Run All find a kernel (the indicator says "idle" before one exists).
    deadline = time.monotonic() + 120
    while not lab.api("GET", f"/api/kernels/{kernel_id}")["connections"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page did not connect to kernel {kernel_id}")
        page.wait_for_timeout(500)
    wait_for(page, KERNEL_IDLE, 120)


def run_all(page: Any, attempts: int = 3) -> None:
    """Run > Run All Cells; the menu again only if no cell started at all (a dropped click)."""
    for _ in range(attempts):
        page.locator('.lm-MenuBar-itemLabel:text-is("Run")').click()
        page.locator('.lm-Menu-itemLabel:text-is("Run All Cells")').click()
        try:
            wait_for(page, STARTED, 20)
            return
        except TimeoutError:
            continue
    raise TimeoutError("Run All Cells did not start any cell")


class _Stalled(TimeoutError):
    """The kernel is idle, cells are pending and nothing changed in STALL_S seconds."""


def wait_for(page: Any, condition: str, seconds: float, stall_check: bool = False) -> None:
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


def diagnose(page: Any, log: Path, shot: Path) -> str:
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
        f"\njupyter lab log (end):\n{log_tail(log)}\nscreenshot: {shot}"
    )


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-6000:] if log.exists() else "(no log)"
