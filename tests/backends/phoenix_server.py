"""Arize Phoenix for the tests: its own cached virtualenv, a server on loopback, REST read-back.

Phoenix cannot share ``.venv`` with vLLM (their dependencies conflict), so it lives in a cached
virtualenv, ``~/.cache/sagellm-obs/phoenix-venv`` (``$SAGELLM_OBS_PHOENIX_VENV`` moves it), reused
while it holds :data:`PHOENIX_VERSION`. The server runs from that venv on free 127.0.0.1 ports
(HTTP and gRPC, see ``phoenix_loopback.py``), with a temporary working dir and no usage
telemetry, and is stopped by PID.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import platformdirs

PHOENIX_VERSION = "20.26.1"
HERE = Path(__file__).parent
CONSTRAINTS = HERE / "phoenix-constraints.txt"
LAUNCHER = HERE / "phoenix_loopback.py"
# The Python the constraints were frozen on (see the file's header); elsewhere pip resolves freely.
CONSTRAINTS_PYTHON = (3, 11)
INSTALL_TIMEOUT_S = 600.0
START_TIMEOUT_S = 120.0


class PhoenixError(RuntimeError):
    """Phoenix could not be installed or started (the message ends with its log)."""


# --- the virtualenv ------------------------------------------------------------------------------


def venv_dir() -> Path:
    """Where the Phoenix virtualenv lives (created on demand, reused across runs)."""
    custom = os.environ.get("SAGELLM_OBS_PHOENIX_VENV")
    if custom:
        return Path(custom).expanduser()
    return Path(platformdirs.user_cache_dir("sagellm-obs")) / "phoenix-venv"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def installed_version(venv: Path) -> str | None:
    """The arize-phoenix version installed in ``venv``, or None."""
    python = venv_python(venv)
    if not python.exists():
        return None
    code = "import importlib.metadata as m; print(m.version('arize-phoenix'))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() if out.returncode == 0 else None


def install_commands(venv: Path) -> list[list[str]]:
    """The commands that create the venv (also the skip message's install hint)."""
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if sys.version_info[:2] == CONSTRAINTS_PYTHON:
        pip += ["-c", str(CONSTRAINTS)]
    return [
        [sys.executable, "-m", "venv", str(venv)],
        [*pip, f"arize-phoenix=={PHOENIX_VERSION}"],
    ]


@dataclass(frozen=True)
class PhoenixVenv:
    path: Path
    python: Path
    #: Seconds spent creating or upgrading the venv in this session (0.0 when it was reused).
    install_seconds: float


def venv_lock(venv: Path) -> Any:
    """An exclusive lock next to the venv: concurrent sessions must not install at once."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock = open(venv.parent / f"{venv.name}.lock", "w")  # noqa: SIM115 (closed by the caller)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def install(venv: Path, log: Path) -> PhoenixVenv:
    """Create ``venv`` (or move it to the pinned version); call it holding :func:`venv_lock`."""
    started = time.monotonic()
    with open(log, "wb") as out:
        for cmd in install_commands(venv):
            if cmd[1:3] == ["-m", "venv"] and venv_python(venv).exists():
                continue  # a venv with another Phoenix version: pip moves it to the pin
            done = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S
            )
            if done.returncode != 0:
                tail = log.read_text(errors="replace")[-3000:]
                raise PhoenixError(f"installing Phoenix failed ({' '.join(cmd)}):\n{tail}")
    version = installed_version(venv)
    if version != PHOENIX_VERSION:
        raise PhoenixError(f"{venv} holds arize-phoenix {version}, not {PHOENIX_VERSION}")
    return PhoenixVenv(venv, venv_python(venv), time.monotonic() - started)


# --- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    """A port nobody listens on right now (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Phoenix:
    """A running Phoenix server on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log: Path
    venv: PhoenixVenv
    #: Seconds from the launch to /healthz answering and the gRPC port accepting.
    start_seconds: float = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def otlp_http_traces(self) -> str:
        """The full OTLP/HTTP traces URL (what ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` takes)."""
        return f"{self.url}/v1/traces"

    @property
    def otlp_grpc(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def spans(self, project: str, **params: Any) -> list[dict[str, Any]]:
        """Every span of ``project`` the REST API returns for ``params`` (all pages)."""
        out: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 1000, **params}
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while True:
                resp = client.get(f"/v1/projects/{project}/spans", params=query)
                if resp.status_code == 404:  # a project appears with its first span
                    return out
                resp.raise_for_status()
                body = resp.json()
                out.extend(body["data"])
                if not body.get("next_cursor"):
                    return out
                query["cursor"] = body["next_cursor"]

    def wait_for_spans(
        self, project: str, span_ids: set[str], timeout: float = 30.0
    ) -> dict[str, dict[str, Any]]:
        """Poll until every span id in ``span_ids`` is stored in ``project``; span id -> span."""
        deadline = time.monotonic() + timeout
        while True:
            got = {s["context"]["span_id"]: s for s in self.spans(project)}
            if span_ids <= got.keys() or time.monotonic() > deadline:
                return got
            time.sleep(0.25)

    def stop(self) -> None:
        """SIGTERM (Phoenix shuts down cleanly), SIGKILL after 20 s."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def start(venv: PhoenixVenv, work: Path) -> Phoenix:
    """Start Phoenix from ``venv`` on free loopback ports; returns once it accepts both ports."""
    http_port = free_port()
    grpc_port = free_port()
    while grpc_port == http_port:
        grpc_port = free_port()
    # Nothing from the outer environment that would point Phoenix elsewhere (its own OTel
    # export, a Postgres URL, another working dir).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
    env.update(
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(http_port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_WORKING_DIR=str(work / "data"),
        PHOENIX_TELEMETRY_ENABLED="false",
        PHOENIX_DISABLE_AGENT_ASSISTANT="true",
    )
    log = work / "phoenix.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(venv.python), str(LAUNCHER)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=work,
        )
    server = Phoenix(proc, http_port, grpc_port, log, venv)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    server.start_seconds = time.monotonic() - started
    return server


def _wait_ready(server: Phoenix) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise PhoenixError(
                f"Phoenix exited with {server.proc.returncode}:\n{server.log_tail()}"
            )
        try:
            ready = httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
            socket.create_connection(("127.0.0.1", server.grpc_port), 1).close()
        except (httpx.HTTPError, OSError):
            ready = False
        if ready:
            return
        time.sleep(0.25)
    raise PhoenixError(
        f"Phoenix was not ready within {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}"
    )
