"""Real Prometheus for the tests: one place that starts, asks and stops it.

Debian's ``prometheus`` package (2.42 here) on 127.0.0.1 on a free port, with its TSDB in a test's
folder, scraping what the test lists; stopped by its own process id, also when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

PROMETHEUS_HOW = "apt-get install prometheus"
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
