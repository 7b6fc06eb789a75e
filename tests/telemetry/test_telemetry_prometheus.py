"""The optional /metrics endpoint: names as semconv predicts, counts as recorded, loopback only."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from sagellm_obs import AdvancedOptions, configure
from sagellm_obs import semconv as sc
from sagellm_obs.telemetry import RequestRecord


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def test_prometheus_endpoint_serves_semconv_names(
    records: Callable[..., RequestRecord],
) -> None:
    tel = configure(
        run_dir=False,
        otlp_endpoint=False,
        prometheus_port=0,
        make_current=False,
        advanced=AdvancedOptions(simple_processors=True),
    )
    try:
        assert tel.prometheus_port
        n = 7
        for i in range(n):
            tel.submit_request(records(tel.anchor, i))
        tel.submit_step(
            {
                sc.STEP_TIME_UNIX_NANO: 1,
                sc.STEP_ENGINE_ID: "e",
                sc.STEP_INDEX: 1,
                sc.STEP_RUNNING: 3,
                sc.STEP_WAITING: 1,
                sc.STEP_KV_USAGE: 0.25,
                sc.STEP_PREFIX_QUERIES: 100,
                sc.STEP_PREFIX_HITS: 64,
                sc.STEP_PROMPT_TOKENS: 100,
                sc.STEP_CACHED_PROMPT_TOKENS: 64,
                sc.STEP_GENERATION_TOKENS: 5,
                sc.STEP_PREEMPTIONS: 0,
                sc.STEP_FINISHED: 0,
            }
        )
        assert tel.flush()
        samples = _scrape(tel.prometheus_port)
        for spec in (s for s in sc.REQUEST_METRICS if s not in sc.LEGACY_METRICS):
            if spec.kind == "histogram":
                name = f"{spec.prometheus_name}_count"
                assert name in samples, (name, sorted(samples))
        assert samples[f"{sc.M_TTFT.prometheus_name}_count"] == n
        assert samples[f"{sc.M_REQUEST_DURATION.prometheus_name}_count"] == n
        assert samples[sc.M_REQUESTS.prometheus_name] == n
        assert samples[sc.M_PREFIX_HITS.prometheus_name] == 64
        assert samples[sc.M_KV_USAGE.prometheus_name] == 0.25
        # A second configuration in the same process keeps its own samples.
        other = configure(
            run_dir=False,
            otlp_endpoint=False,
            prometheus_port=0,
            make_current=False,
            advanced=AdvancedOptions(simple_processors=True),
        )
        try:
            for i in range(3):
                other.submit_request(records(other.anchor, i))
            assert other.flush()
            assert other.prometheus_port
            assert _scrape(other.prometheus_port)[f"{sc.M_TTFT.prometheus_name}_count"] == 3
            assert _scrape(tel.prometheus_port)[f"{sc.M_TTFT.prometheus_name}_count"] == n
        finally:
            other.shutdown()
    finally:
        tel.shutdown()


def test_registry_only_opens_no_listener(records: Callable[..., RequestRecord]) -> None:
    """``prometheus_port="registry"``: the metrics land in a registry an app serves itself."""
    from prometheus_client import generate_latest

    tel = configure(
        run_dir=False,
        otlp_endpoint=False,
        prometheus_port="registry",
        make_current=False,
        advanced=AdvancedOptions(simple_processors=True),
    )
    try:
        assert tel.prometheus_port is None and tel._prometheus_server is None
        for i in range(4):
            tel.submit_request(records(tel.anchor, i))
        assert tel.flush()
        text = generate_latest(tel.prometheus_registry).decode()
        counts = {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert counts[f"{sc.M_TTFT.prometheus_name}_count"] == 4
    finally:
        tel.shutdown()
