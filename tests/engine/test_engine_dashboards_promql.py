"""Every dashboard panel's PromQL returns data from a real Prometheus after a real run."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_harness import SHARED_PREFIX, EngineHarness

from sagellm_obs import semconv as sc
from tests._procs import prometheus as start_prometheus
from tests.hardening.hardening_procs import wait_until

pytestmark = pytest.mark.engine

DASHBOARDS = Path(__file__).parents[2] / "dashboards" / "grafana"


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.fixture
def prometheus(harness: EngineHarness, tmp_path: Path) -> Iterator[str]:
    target = f"127.0.0.1:{harness.telemetry.prometheus_port}"
    scrape = [{"job_name": "sagellm-obs", "static_configs": [{"targets": [target]}]}]
    with start_prometheus(tmp_path / "prometheus", scrape) as prom:
        yield prom.base


def test_dashboard_queries_return_data(harness: EngineHarness, prometheus: str) -> None:
    # Prometheus scrapes a new target first some seconds after it is ready: traffic sent before
    # that first scrape would show no increase to rate() (a ratio of 0/0).
    up = 'up{job="sagellm-obs"} == 1'
    wait_until(lambda: _query(prometheus, up), 30, "Prometheus's first scrape of the engine", 0.2)
    ttft = f"{sc.M_TTFT.prometheus_name}_count"
    before = _scalar(prometheus, f"sum({ttft})")
    before = 0.0 if before != before else before  # no request recorded yet: no series
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
    done = f"sum({ttft}) >= {before + n}"
    wait_until(
        lambda: _query(prometheus, done), 30, "Prometheus's scrape of the last requests", 0.2
    )
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        slo = {t["name"]: t["current"]["value"] for t in board["templating"]["list"]
               if t["type"] == "custom"}  # fmt: skip
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for name, value in slo.items():
                    expr = expr.replace(f"${{{name}}}", value)
                expr = (
                    expr.replace("$__rate_interval", "30s")
                    .replace("$job", "sagellm-obs")
                    .replace("$model", ".*")
                    .replace("$engine", ".*")
                )
                result = _query(prometheus, expr)
                assert result, f"{path.name}: panel {panel['title']!r} returned no data: {expr}"
                values = [float(r["value"][1]) for r in result]
                assert any(v == v for v in values), (panel["title"], values)  # not all NaN


def _scalar(base: str, expr: str) -> float:
    result = _query(base, expr)
    return float(result[0]["value"][1]) if result else float("nan")


def _bucket_of(bounds: list[float], value: float) -> tuple[float, float]:
    """The Prometheus bucket ``(lower, le]`` holding ``value``; past the last bound, Prometheus
    answers with the last bound, so the bucket is that bound alone."""
    lower = 0.0
    for le in bounds:
        if value <= le:
            return lower, le
        lower = le
    return bounds[-1], bounds[-1]


def test_promql_matches_the_local_store(harness: EngineHarness, prometheus: str) -> None:
    """What Prometheus scraped equals what the local store holds: request and token counts
    exactly, histogram quantiles within the bucket that holds the store's exact quantile."""
    import math

    from sagellm_obs.frames import load

    reqs = [
        {
            "request_id": f"promx-{i}",
            "trace_id": f"promx-{i}",
            "prompt": SHARED_PREFIX + f"question {i} " * (1 + i % 5),
            "max_tokens": 2 + i % 7,
            "metadata": {"ignore_eos": True},
        }
        for i in range(24)
    ]
    harness.engine.generate_batch(reqs)
    harness.flush()
    # The harness is shared by the session: the store holds every request this telemetry
    # recorded, which is exactly what its registry counted.
    requests = load(harness.run_dir, cache=False).requests
    n = requests.height
    deadline = time.monotonic() + 30
    while _scalar(prometheus, f"sum({sc.M_REQUESTS.prometheus_name})") != n:
        assert time.monotonic() < deadline, (
            f"Prometheus counts {_scalar(prometheus, f'sum({sc.M_REQUESTS.prometheus_name})')} "
            f"requests, the store {n}"
        )
        time.sleep(0.5)
    tokens_in = _scalar(prometheus, f"sum({sc.M_REQUEST_INPUT_TOKENS.prometheus_name}_sum)")
    tokens_out = _scalar(prometheus, f"sum({sc.M_REQUEST_OUTPUT_TOKENS.prometheus_name}_sum)")
    assert tokens_in == requests["input_tokens"].sum()
    assert tokens_out == requests["output_tokens"].sum()
    for spec, column in (
        (sc.M_TTFT, "ttft_s"),
        (sc.M_REQUEST_DURATION, "e2e_s"),
        (sc.M_QUEUE, "queue_s"),
        (sc.M_PREFILL, "prefill_s"),
        (sc.M_DECODE, "decode_s"),
    ):
        values = sorted(requests[column].drop_nulls().to_list())
        name = spec.prometheus_name
        assert _scalar(prometheus, f"sum({name}_count)") == len(values), name
        assert math.isclose(_scalar(prometheus, f"sum({name}_sum)"), sum(values), rel_tol=1e-9)
        bounds = [float(b) for b in spec.buckets]
        for q in (0.5, 0.9, 0.99):
            exact = values[max(0, math.ceil(q * len(values)) - 1)]
            estimate = _scalar(prometheus, f"histogram_quantile({q}, sum by (le) ({name}_bucket))")
            lower, upper = _bucket_of(bounds, exact)
            assert lower <= estimate <= upper, (name, q, exact, estimate, (lower, upper))
