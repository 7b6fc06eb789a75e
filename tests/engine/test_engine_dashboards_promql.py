"""Every dashboard panel's PromQL returns data from a real Prometheus after a real run."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from engine_harness import SHARED_PREFIX, EngineHarness

from sagellm_obs import semconv as sc
from tests.conftest import need_binary

pytestmark = pytest.mark.engine

DASHBOARDS = Path(__file__).parents[2] / "dashboards" / "grafana"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.fixture
def prometheus(harness: EngineHarness, tmp_path: Path) -> Any:
    binary = need_binary("prometheus", "apt-get install prometheus")
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sagellm-obs\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{harness.telemetry.prometheus_port}']\n"
    )
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, "prometheus exited"
                assert time.monotonic() < deadline, "prometheus not ready in 30 s"
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def test_dashboard_queries_return_data(harness: EngineHarness, prometheus: str) -> None:
    # Traffic spread over several scrapes so rate() has increases to see.
    n = 0
    for round_ in range(6):
        reqs = [
            {
                "request_id": f"prom-{round_}-{i}",
                "trace_id": f"prom-{round_}-{i}",
                "prompt": SHARED_PREFIX + f"item {i}",
                "max_tokens": 4,
                "metadata": {"ignore_eos": True},
            }
            for i in range(3)
        ]
        harness.engine.generate_batch(reqs)
        n += len(reqs)
        harness.flush()
        time.sleep(1.0)
    time.sleep(2.5)
    ttft_count = _query(prometheus, f"sum({sc.M_TTFT.prometheus_name}_count)")
    assert ttft_count and float(ttft_count[0]["value"][1]) >= n
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = (
                    target["expr"]
                    .replace("$__rate_interval", "30s")
                    .replace("$model", ".*")
                    .replace("$engine", ".*")
                )
                result = _query(prometheus, expr)
                assert result, f"{path.name}: panel {panel['title']!r} returned no data: {expr}"
                values = [float(r["value"][1]) for r in result]
                assert any(v == v for v in values), (panel["title"], values)  # not all NaN
