"""Helpers of the notebook tests: the notebooks, a kernelspec for this venv, a contained env.

The kernelspec is installed with ``ipykernel install --prefix <tmp>`` and found through
``JUPYTER_PATH``: nothing is written outside the test's temporary folders (Jupyter's runtime,
config, data and IPython dirs point there too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts"
NOTEBOOKS = (
    "01_quickstart",
    "02_latency_anatomy",
    "03_kv_and_prefix_cache",
    "04_loading_traces",
    "05_comparing_runs",
    "06_tool_using_app",
    "07_live",
    "08_clickhouse",
    "09_kv_events",
)
KERNEL = "python3"  # the name the notebooks' metadata asks for
REQUESTS = "16"  # SAGELLM_OBS_NOTEBOOK_REQUESTS for the tests: small workloads


def notebook_client(nb: Any, **kw: Any) -> Any:
    """An nbclient ``NotebookClient`` for ``nb`` (``kw`` its options) whose kernel listens on IPC
    sockets in Jupyter's runtime dir, not on loopback TCP, about which ipykernel warns at every
    start ("Kernel is running over TCP without encryption"). The sockets' prefix is short and
    unique: a socket path has at most 107 bytes, and kernels may start side by side."""
    from jupyter_core.paths import jupyter_runtime_dir
    from nbclient import NotebookClient
    from traitlets.config import Config

    sockets = Path(jupyter_runtime_dir()) / f"k-{uuid.uuid4().hex[:8]}"
    # Sockets are <prefix>-<n> (a digit or two): the path must fit a sockaddr_un (108 bytes).
    assert len(os.fsencode(sockets)) + 4 <= 107, f"IPC socket path too long: {sockets}"
    cfg = Config({"KernelManager": {"transport": "ipc", "ip": str(sockets)}})
    return NotebookClient(nb, kernel_name=KERNEL, config=cfg, **kw)


def install_kernelspec(prefix: Path) -> Path:
    """A ``python3`` kernelspec running this interpreter, under ``prefix``; returns its data dir."""
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", KERNEL],
        check=True,
        capture_output=True,
        text=True,
    )
    data = prefix / "share" / "jupyter"
    spec = json.loads((data / "kernels" / KERNEL / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable, spec
    return data


def jupyter_env(base: Path) -> dict[str, str]:
    """Environment variables that keep Jupyter, IPython and the notebooks inside ``base``."""
    data = install_kernelspec(base / "kernel-prefix")
    dirs = {
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "IPYTHONDIR": base / "ipython",
        "JUPYTERLAB_SETTINGS_DIR": base / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "lab-workspaces",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env = {key: str(path) for key, path in dirs.items()}
    env["JUPYTER_PATH"] = str(data)
    env["SAGELLM_OBS_NOTEBOOK_REQUESTS"] = REQUESTS
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env
