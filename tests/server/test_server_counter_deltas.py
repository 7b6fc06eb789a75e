"""Our counters over a real batch, against vLLM's own Prometheus counters of the same interval.

vLLM's ``vllm:*`` counters (its PrometheusStatLogger) and ours (our stat logger, through the
OpenTelemetry SDK to ``/metrics`` and to the run folder's OTLP metric points) are scraped or read
before and after one batch of requests on a real server; the deltas must be equal, and equal to
what the client was answered (the responses' ``usage``). The unit tests of ``counter_delta`` use
synthetic records; this one uses a real engine's.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sagellm_obs import semconv as sc
from sagellm_obs.frames import counter_delta, load
from sagellm_obs.workload.server_counters import ServerCounters, counters_delta, parse_counters

if TYPE_CHECKING:
    from conftest import ServerHarness

pytestmark = pytest.mark.engine

ENGINE = "test-server-engine"  # the harness's engine id
# ours -> the ServerCounters field of vLLM's counter it must equal
OURS = {
    sc.M_PROMPT_TOKENS: "prompt_tokens",
    sc.M_GENERATION_TOKENS: "generation_tokens",
    sc.M_PREFIX_QUERIES: "prefix_queries",
    sc.M_PREFIX_HITS: "prefix_hits",
    sc.M_REQUESTS: "requests",
}


def _ours(text: str) -> dict[str, float]:
    """Our counters on ``/metrics`` (this engine's series), by metric name."""
    wanted = {m.prometheus_name.removesuffix("_total"): m.name for m in OURS}
    out = dict.fromkeys(wanted.values(), 0.0)
    label = sc.SAGELLM_ENGINE_ID.replace(".", "_")
    for family in text_string_to_metric_families(text):
        name = wanted.get(family.name)
        if name is None:
            continue
        out[name] += sum(
            s.value
            for s in family.samples
            if s.name.endswith("_total") and s.labels.get(label) == ENGINE
        )
    return out


def _scrape(harness: ServerHarness) -> tuple[ServerCounters, dict[str, float]]:
    with harness.client() as c:
        resp = c.get("/metrics")
    assert resp.status_code == 200
    return parse_counters(resp.text), _ours(resp.text)


def _batch(harness: ServerHarness, long_prompt: str) -> list[dict[str, Any]]:
    """Six requests: completions and a streamed chat, shared long prefixes (prefix hits)."""
    tag = secrets.token_hex(4)
    usages: list[dict[str, Any]] = []
    with harness.client() as c:
        for i in range(5):
            body = {
                "prompt": f"{long_prompt} case {tag}-{i % 2}",
                "max_tokens": 3 + i,
                "ignore_eos": True,
            }
            resp = c.post("/v1/completions", json=body)
            assert resp.status_code == 200, resp.text
            usages.append(resp.json()["usage"])
        chat = {
            "messages": [{"role": "user", "content": f"{long_prompt} chat {tag}"}],
            "max_tokens": 4,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with c.stream("POST", "/v1/chat/completions", json=chat) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    chunk = json.loads(line[6:])
                    if chunk.get("usage"):
                        usages.append(chunk["usage"])
    assert len(usages) == 6
    return usages


def test_counter_deltas_agree_with_vllms_over_a_real_batch(
    harness: ServerHarness, long_prompt: str
) -> None:
    harness.flush()
    vllm_before, ours_before = _scrape(harness)
    t0 = time.time()
    usages = _batch(harness, long_prompt)
    # vLLM counts a step after handing its outputs over: wait for the last request to be counted
    deadline = time.monotonic() + 30
    while True:
        vllm_after, _ = _scrape(harness)
        if counters_delta(vllm_before, vllm_after).requests >= 6:
            break
        assert time.monotonic() < deadline, "vLLM never counted the batch"
        time.sleep(0.05)
    harness.flush()
    t1 = time.time()
    vllm_after, ours_after = _scrape(harness)
    vllm = counters_delta(vllm_before, vllm_after)
    # the client's view: what the responses said
    assert vllm.requests == 6
    assert vllm.prompt_tokens == sum(u["prompt_tokens"] for u in usages)
    assert vllm.generation_tokens == sum(u["completion_tokens"] for u in usages)
    assert vllm.prefix_hits == sum(u["prompt_tokens_details"]["cached_tokens"] for u in usages)
    assert vllm.prefix_hits > 0  # the repeats hit
    assert vllm.prefix_queries == vllm.prompt_tokens
    # ours on /metrics, same scrapes
    for metric, field in OURS.items():
        assert ours_after[metric.name] - ours_before[metric.name] == getattr(vllm, field), metric
    # ours as OTLP metric points in the run folder, over the same interval
    points = load(harness.run_dir, cache=False).metrics
    for metric, field in OURS.items():
        assert counter_delta(points, metric.name, t0, t1) == getattr(vllm, field), metric
