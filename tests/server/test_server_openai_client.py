"""The official ``openai`` client, unchanged, against the server over loopback HTTP."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from sagellm_obs import semconv as sc
from sagellm_obs.protocol import ChatCompletionResponse, CompletionResponse
from sagellm_obs.workload.server_counters import parse_counters

if TYPE_CHECKING:
    from conftest import ServerHarness

pytestmark = pytest.mark.engine


@pytest.fixture
def oai(harness: ServerHarness) -> OpenAI:
    return OpenAI(base_url=f"{harness.url}/v1", api_key=harness.api_key, max_retries=0, timeout=60)


def test_completion(oai: OpenAI, harness: ServerHarness) -> None:
    raw = oai.completions.with_raw_response.create(
        model=harness.model, prompt="def fib(n):", max_tokens=8, extra_body={"ignore_eos": True}
    )
    out = raw.parse()
    assert out.object == "text_completion"
    assert out.model == harness.model
    assert out.choices[0].finish_reason == "length"
    assert isinstance(out.choices[0].text, str)
    assert out.usage is not None
    assert out.usage.completion_tokens == 8
    assert out.usage.total_tokens == out.usage.prompt_tokens + 8
    assert out.created > 0
    span = harness.engine_span(out.id)
    assert span.attributes is not None
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == out.usage.prompt_tokens
    assert span.attributes[sc.GEN_AI_OPERATION_NAME] == sc.OP_TEXT_COMPLETION
    assert raw.headers["x-trace-id"] == f"{span.context.trace_id:032x}"


def test_chat_and_wire_compatibility(oai: OpenAI, harness: ServerHarness) -> None:
    out = oai.chat.completions.create(
        model=harness.model,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Say hi."}]},
        ],
        max_completion_tokens=6,
        seed=7,
        user="someone",
        extra_body={"ignore_eos": True},
    )
    assert out.object == "chat.completion"
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].finish_reason == "length"
    assert out.usage is not None and out.usage.completion_tokens == 6
    span = harness.engine_span(out.id)
    assert span.attributes is not None
    assert span.attributes[sc.GEN_AI_OPERATION_NAME] == sc.OP_CHAT
    assert span.attributes[sc.GEN_AI_REQUEST_SEED] == 7
    # The protocol's OpenAI types parse what we send.
    ChatCompletionResponse.model_validate(out.model_dump())
    comp = oai.completions.create(model=harness.model, prompt="x", max_tokens=2)
    CompletionResponse.model_validate(comp.model_dump())


def test_streaming_chat_with_usage(oai: OpenAI, harness: ServerHarness) -> None:
    messages = [{"role": "user", "content": "Count to five."}]
    common = {"model": harness.model, "messages": messages, "max_tokens": 12, "temperature": 0.0}
    whole = oai.chat.completions.create(**common, extra_body={"ignore_eos": True})  # type: ignore[call-overload]
    stream = oai.chat.completions.create(  # type: ignore[call-overload]
        **common,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert len(chunks) >= 4
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content  # greedy: same text either way
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 12
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens  # type: ignore[union-attr]
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["length"]
    assert len({c.id for c in chunks}) == 1
    span = harness.engine_span(chunks[0].id)
    assert span.attributes is not None
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True


def test_streaming_completion(oai: OpenAI, harness: ServerHarness) -> None:
    chunks = list(
        oai.completions.create(
            model=harness.model,
            prompt="import os\n",
            max_tokens=5,
            stream=True,
            extra_body={"ignore_eos": True},
        )
    )
    assert chunks[-1].choices[0].finish_reason == "length"
    assert sum(1 for c in chunks if c.choices[0].text) >= 1


def test_models_list(oai: OpenAI, harness: ServerHarness) -> None:
    models = oai.models.list()
    assert [m.id for m in models.data] == [harness.model]


def _vllm_view(c: httpx.Client) -> tuple[float, float, float]:
    """vLLM's own prefix-cache hits, TTFT histogram sum and count (its /metrics)."""
    text = c.get("/metrics").text
    hits = parse_counters(text).prefix_hits
    ttft = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == sc.VLLM_TIME_TO_FIRST_TOKEN:
            for sample in family.samples:
                kind = sample.name.rsplit("_", 1)[-1]
                if kind in ttft:
                    ttft[kind] += sample.value
    return hits, ttft["sum"], ttft["count"]


def test_cached_tokens_and_metrics_header(harness: ServerHarness, long_prompt: str) -> None:
    body = {"prompt": long_prompt, "max_tokens": 3, "ignore_eos": True}
    with harness.client() as c:
        first = c.post("/v1/completions", json=body)
        before = _vllm_view(c)
        second = c.post(
            "/v1/completions",
            json=body,
            headers={"X-Sagellm-Metrics": "1", "X-Request-Id": "my-request-7"},
        )
        after = _vllm_view(c)
        for _ in range(200):  # vLLM may count the last step after handing its output over
            if after[2] - before[2] >= 1:
                break
            time.sleep(0.05)
            after = _vllm_view(c)
    assert first.status_code == second.status_code == 200
    assert "metrics" not in first.json()
    out = second.json()
    assert out["id"] == "my-request-7" == second.headers["x-request-id"]
    cached = out["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 128  # at least one full KV block reused
    # against vLLM's own counters over that one request, not against our span
    assert after[0] - before[0] == cached
    assert after[2] - before[2] == 1
    metrics = out["metrics"]
    assert metrics["ttft_ms"] == pytest.approx((after[1] - before[1]) * 1000, rel=1e-6)
    span = harness.engine_span("my-request-7")
    assert span.attributes is not None
    assert span.attributes[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == cached
    assert metrics["queue_ms"] >= 0 and metrics["e2e_ms"] >= metrics["ttft_ms"]
    assert 0 < metrics["prefix_hit_rate"] <= 1
