"""The dashboards and alert rules against a real stack: real serve, real collector, real Prometheus.

``sagellm-obs serve`` (a real vLLM engine on CPU) answers completions while exporting its metrics
over OTLP to rotel (a real collector), which forwards them to the collector path's Prometheus
endpoint (collector_path.py). A real Prometheus scrapes serve's ``/metrics`` as job ``sagellm-obs``
(OpenMetrics, exemplars stored) and the collector path as job ``otel-collector``: the double path
the dashboards' single-choice ``$job`` picker guards against. On each job, every panel's query and
every alert expression is evaluated, and the totals are held against the run folder.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
import yaml

from sagellm_obs import AdvancedOptions, configure
from sagellm_obs import semconv as sc
from tests._procs import ROTEL_HOW, Prometheus, find_rotel, prometheus, rotel_agent
from tests.conftest import need
from tests.dashboards.collector_path import PromEndpoint

pytestmark = pytest.mark.engine

ROOT = Path(__file__).parents[2] / "dashboards"
ENGINE_ID = "dash-engine"
JOBS = ("sagellm-obs", "otel-collector")
PROMPT = "Count the apples in the basket and say how many there are. " * 6


@dataclass
class Stack:
    prom: Prometheus
    server_url: str
    model: str
    run_dir: Path
    telemetry: Any
    endpoint: PromEndpoint

    @property
    def prometheus(self) -> str:
        return self.prom.base


def _get(url: str, timeout: float = 10) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{exc}: {exc.read().decode(errors='replace')} ({url})") from None
    assert body["status"] == "success", body
    return body


def query(base: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query, now or at the Unix time ``at``."""
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    body = _get(f"{base}/api/v1/query?" + urllib.parse.urlencode(params))
    return list(body["data"]["result"])


def scalar(base: str, expr: str) -> float:
    result = query(base, expr)
    return float(result[0]["value"][1]) if result else float("nan")


def _wait(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    rotel = find_rotel()
    need(rotel is not None, "rotel-agent (an OTLP collector)", ROTEL_HOW)
    assert rotel is not None
    from sagellm_obs.engine import EngineConfig
    from sagellm_obs.server import BackgroundServer, ServerOptions

    work = tmp_path_factory.mktemp("dash-live")
    endpoint = PromEndpoint().start()
    try:
        with rotel_agent(rotel, endpoint.url, work / "rotel") as collector:
            tel = configure(
                run_dir=work / "run",
                engine_id=ENGINE_ID,
                service_name="sagellm-obs",
                otlp_endpoint=collector.http_endpoint,
                otlp_protocol="http/protobuf",
                prometheus_port="registry",
                make_current=False,
                advanced=AdvancedOptions(metric_export_interval=1.0, span_batch_delay=0.2),
            )
            server = BackgroundServer(
                EngineConfig(in_process=True, kv_cache_memory_bytes=64 * 2**20),
                telemetry=tel,
                options=ServerOptions(port=0),
            )
            server.start()
            serve_target = urllib.parse.urlsplit(str(server.url)).netloc
            collector_target = urllib.parse.urlsplit(endpoint.url).netloc
            scrape = [
                {"job_name": "sagellm-obs", "static_configs": [{"targets": [serve_target]}]},
                {"job_name": "otel-collector", "static_configs": [{"targets": [collector_target]}]},
            ]
            try:
                with prometheus(
                    work / "prometheus", scrape, rule_files=[ROOT / "alerts.yaml"], exemplars=True
                ) as prom:
                    yield Stack(
                        prom, str(server.url), server.engine.model_name, work / "run", tel, endpoint
                    )
            finally:
                server.stop()
                tel.shutdown()
    finally:
        endpoint.stop()


@dataclass
class Traffic:
    requests: pl.DataFrame  # the run folder's
    #: When Prometheus had scraped it all: panels and rules are evaluated at this instant.
    at: float
    #: Their rate window: from a sample of the counters taken before the traffic to ``at``.
    window: str


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> Traffic:
    """A first completion, scraped on both paths, then completions spread over several scrapes,
    then the run folder. rate() needs a counter's samples from before and after an increase: the
    first completion's guarantees the before, whatever happens to the scrapes during the traffic
    (a slow ``/metrics`` answer is a missed sample), and the window reaches back to it."""
    from sagellm_obs.frames import load

    queries = sc.M_PREFIX_QUERIES.prometheus_name
    with httpx.Client(base_url=stack.server_url, timeout=120) as client:

        def complete(prompt: str, max_tokens: int) -> None:
            body = {"model": stack.model, "prompt": prompt, "max_tokens": max_tokens}
            r = client.post("/v1/completions", json={**body, "ignore_eos": True})
            assert r.status_code == 200, r.text

        complete(PROMPT + "A first basket.", 2)
        stack.telemetry.flush()
        for job in JOBS:
            _wait(
                lambda job=job: bool(query(stack.prometheus, f'{queries}{{job="{job}"}}')),
                f"job {job} has no sample of {queries}",
            )
        before = time.time()
        for round_ in range(6):
            for i in range(3):
                complete(PROMPT + f"Basket {round_}-{i}.", 2 + (round_ + i) % 5)
            time.sleep(1.0)
    stack.telemetry.flush()
    requests = load(stack.run_dir, cache=False).requests
    n = requests.height
    for job in JOBS:
        _wait(
            lambda job=job: (
                scalar(stack.prometheus, f'sum({sc.M_REQUESTS.prometheus_name}{{job="{job}"}})')
                == n
            ),
            f"job {job} does not count the run's {n} requests",
        )
    at = time.time()
    return Traffic(requests, at, f"{math.ceil(at - before) + 10}s")


def _exprs() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "grafana").glob("*.json")):
        board = json.loads(path.read_text())
        defaults = {
            t["name"]: t["current"]["value"]
            for t in board["templating"]["list"]
            if t["type"] == "custom"
        }
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for name, value in defaults.items():
                    expr = expr.replace(f"${{{name}}}", value)
                out.append((f"{path.name}: {panel['title']}", expr))
    return out


@pytest.mark.parametrize("job", JOBS)
def test_every_panel_returns_data_on_each_metrics_path(
    stack: Stack, traffic: Traffic, job: str
) -> None:
    for title, expr in _exprs():
        concrete = (
            expr.replace("$__rate_interval", traffic.window)
            .replace("$job", job)
            # a regex inside a PromQL string: its backslashes doubled
            .replace("$model", re.escape(stack.model).replace("\\", "\\\\"))
            .replace("$engine", ENGINE_ID)
        )
        assert "$" not in concrete, concrete
        result = query(stack.prometheus, concrete, traffic.at)
        assert result, f"[{job}] {title} returned no data: {concrete}"
        values = [float(r["value"][1]) for r in result]
        if all(math.isnan(v) for v in values):  # 0/0: the counters' samples say why
            names = sorted(set(re.findall(r"(sagellm_\w+)\{", concrete)))
            samples = {
                n: query(stack.prometheus, f'{n}{{job="{job}"}}[3m]', traffic.at) for n in names
            }
            raise AssertionError(f"[{job}] {title}: NaN at {traffic.at:.3f}: {samples}")


@pytest.mark.parametrize("job", JOBS)
def test_totals_on_each_path_equal_the_run_folder(stack: Stack, traffic: Traffic, job: str) -> None:
    requests = traffic.requests
    sel = f'job="{job}",sagellm_engine_id="{ENGINE_ID}"'
    base = stack.prometheus
    assert scalar(base, f"sum({sc.M_REQUESTS.prometheus_name}{{{sel}}})") == requests.height
    tokens_in = sc.M_REQUEST_INPUT_TOKENS.prometheus_name
    tokens_out = sc.M_REQUEST_OUTPUT_TOKENS.prometheus_name
    assert scalar(base, f"sum({tokens_in}_sum{{{sel}}})") == requests["input_tokens"].sum()
    assert scalar(base, f"sum({tokens_out}_sum{{{sel}}})") == requests["output_tokens"].sum()
    ttft = requests["ttft_s"].drop_nulls()
    name = sc.M_TTFT.prometheus_name
    assert scalar(base, f"sum({name}_count{{{sel}}})") == ttft.len()
    assert math.isclose(scalar(base, f"sum({name}_sum{{{sel}}})"), ttft.sum(), rel_tol=1e-6)
    # the engine picker filters latency: another engine id has none of it
    assert not query(base, f'{name}_count{{job="{job}",sagellm_engine_id="no-such-engine"}}')


def test_both_paths_at_once_count_every_request_twice(stack: Stack, traffic: Traffic) -> None:
    """Why the job picker is single-choice and the rules aggregate by job."""
    total = scalar(stack.prometheus, f"sum({sc.M_REQUESTS.prometheus_name})")
    assert total == 2 * traffic.requests.height


def test_alert_expressions_evaluate_on_the_real_series(stack: Stack, traffic: Traffic) -> None:
    doc = yaml.safe_load((ROOT / "alerts.yaml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    for rule in rules:
        if rule["alert"] == "SagellmTelemetryDropped":
            continue  # its counter appears once something was dropped (never, here)
        # the part before the threshold must see series on both paths
        lhs = re.split(r"\s[<>]=?\s[\d.]+$", rule["expr"])[0]
        lhs = lhs.replace("[5m]", f"[{traffic.window}]").replace("[10m]", f"[{traffic.window}]")
        jobs = {r["metric"].get("job") for r in query(stack.prometheus, lhs, traffic.at)}
        assert jobs == set(JOBS), (rule["alert"], lhs, jobs)
    loaded = _get(f"{stack.prometheus}/api/v1/rules")["data"]["groups"]
    assert {r["name"] for g in loaded for r in g["rules"]} == {r["alert"] for r in rules}
    assert all(r["health"] == "ok" for g in loaded for r in g["rules"]), loaded


def test_exemplars_on_metrics_are_the_runs_trace_ids(stack: Stack, traffic: Any) -> None:
    """serve's /metrics in OpenMetrics carries exemplars: Prometheus stores them, and each is the
    trace id of one of the run's requests (the latency panels link to traces without the
    collector)."""
    from sagellm_obs.frames import load

    # A collection hands each exemplar out once (as the SDK's reservoirs do) and Prometheus
    # scrapes every second: ask right after a request, a few times if Prometheus was quicker.
    with httpx.Client(base_url=stack.server_url, timeout=30) as client:
        for _ in range(10):
            r = client.post(
                "/v1/completions", json={"model": stack.model, "prompt": PROMPT, "max_tokens": 2}
            )
            assert r.status_code == 200, r.text
            stack.telemetry.pipeline.flush(5)
            om = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
            if "# {span_id=" in om.text:
                break
        plain = client.get("/metrics")
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert re.search(
        r'_bucket\{[^}]*\} \S+ # \{span_id="[0-9a-f]{16}",trace_id="[0-9a-f]{32}"\}', om.text
    )
    assert "trace_id" not in plain.text  # the classic format has no exemplars
    now = time.time()
    body = _get(
        f"{stack.prometheus}/api/v1/query_exemplars?"
        + urllib.parse.urlencode(
            {
                "query": f'{sc.M_TTFT.prometheus_name}_bucket{{job="sagellm-obs"}}',
                "start": now - 600,
                "end": now + 60,
            }
        )
    )
    found = {e["labels"]["trace_id"] for s in body["data"] for e in s["exemplars"]}
    assert found, body
    spans = load(stack.run_dir, cache=False).spans
    ours = set(spans["trace_id"].unique().to_list())
    assert found <= ours, found - ours
