"""Real Prometheus and a real OTLP collector (rotel) for the tests: one place that starts them.

Debian's ``prometheus`` package (2.42 here) and ``rotel-agent`` (the ``rotel`` wheel) bind
127.0.0.1 on free ports, keep their files in a test's folder, and are stopped by their own process
id (rotel: its process group, which it leads), also when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

PROMETHEUS_HOW = "apt-get install prometheus"
ROTEL_HOW = "pip install -c requirements/constraints.txt 'rotel>=0.0.1a15'"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def free_port() -> int:
    """A port nobody listens on right now (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_prometheus() -> str:
    """The ``prometheus`` binary; skips the test (fails it under CI=true) when missing."""
    path = shutil.which("prometheus")
    if path is None:
        msg = f"prometheus is not available; install it with: {PROMETHEUS_HOW}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@dataclass
class Prometheus:
    """A running Prometheus: its base URL and process."""

    base: str
    proc: subprocess.Popen[bytes]

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """``GET /api/v1/<path>``: its ``data``, after checking ``status`` is ``success``."""
        url = f"{self.base}/api/v1/{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body: dict[str, Any] = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{exc}: {exc.read().decode(errors='replace')} ({url})") from None
        assert body["status"] == "success", body
        return body

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result vector (now, or at the Unix time ``at``)."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        return list(self.get("query", **params)["data"]["result"])

    def ready(self) -> bool:
        assert self.proc.poll() is None, "prometheus exited"
        try:
            urllib.request.urlopen(f"{self.base}/-/ready", timeout=2)
            return True
        except OSError:
            return False


@contextmanager
def prometheus(
    work: Path,
    scrape_configs: Sequence[dict[str, Any]],
    *,
    scrape_interval: str = "1s",
    rule_files: Sequence[Path] = (),
    exemplars: bool = False,
    ready_timeout: float = 30.0,
) -> Iterator[Prometheus]:
    """Prometheus scraping ``scrape_configs`` every ``scrape_interval``, ready to be asked.

    ``rule_files`` are evaluated every second; ``exemplars`` turns on exemplar storage.
    """
    binary = find_prometheus()
    work.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": "1s"},
        "scrape_configs": list(scrape_configs),
    }
    if rule_files:
        config["rule_files"] = [str(p) for p in rule_files]
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    cmd = [
        binary,
        f"--config.file={path}",
        f"--storage.tsdb.path={work / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        *(["--enable-feature=exemplar-storage"] if exemplars else []),
    ]
    with open(work / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    prom = Prometheus(f"http://127.0.0.1:{port}", proc)
    try:
        deadline = time.monotonic() + ready_timeout
        while not prom.ready():
            assert time.monotonic() < deadline, f"prometheus not ready in {ready_timeout} s"
            time.sleep(0.2)
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- rotel ----------------------------------------------------------------------------------------


def find_rotel() -> str | None:
    """The ``rotel-agent`` binary on PATH or in the ``rotel`` wheel; None when neither has it."""
    found = shutil.which("rotel-agent")
    if found:
        return found
    try:
        import rotel
    except ImportError:
        return None
    candidate = Path(rotel.__file__).parent / "rotel-agent"
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


@dataclass
class RotelProcess:
    """A running rotel-agent: its OTLP endpoints and the file its output goes to."""

    proc: subprocess.Popen[bytes]
    grpc_endpoint: str
    http_endpoint: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"rotel-agent exited with {proc.returncode}: {out}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"rotel-agent did not listen on {port} within {timeout} s")


@contextmanager
def rotel_agent(
    binary: str,
    forward_to: str,
    work: Path,
    *,
    extra_args: Sequence[str] = (),
    listen_timeout: float = 15.0,
) -> Iterator[RotelProcess]:
    """rotel-agent on free ports (OTLP gRPC and HTTP in), forwarding everything to ``forward_to``
    over uncompressed OTLP/HTTP, batches sent after 50 ms. ``extra_args``: more rotel options
    (``("--debug-log", "traces")`` logs what it receives to :attr:`RotelProcess.log`)."""
    work.mkdir(parents=True, exist_ok=True)
    grpc_port, http_port = free_port(), free_port()
    while http_port == grpc_port:
        http_port = free_port()
    log = work / "rotel-stdout.log"
    cmd = [
        binary, "start",
        "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
        "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
        "--exporter", "otlp",
        "--otlp-exporter-protocol", "http",
        "--otlp-exporter-endpoint", forward_to,
        "--otlp-exporter-compression", "none",
        "--batch-timeout", "50ms",
        *extra_args,
        "--pid-file", str(work / "rotel.pid"),
        "--log-file", str(work / "rotel.log"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        _wait_listening(grpc_port, proc, listen_timeout, log)
        _wait_listening(http_port, proc, listen_timeout, log)
        yield RotelProcess(
            proc, f"http://127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", log
        )
    finally:
        proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        with suppress(ProcessLookupError):  # whatever is left of its group, which it leads
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(10)
