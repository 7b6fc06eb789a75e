# ruff: noqa: E501  (the table of bad payloads reads best one case a line)
"""The real ``llama-stack-client`` 0.2.12, unchanged, against the server on the real tiny engine.

Numbers are checked against the engine's own: the request span (in memory) and the run folder's
``requests`` frame.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from llama_stack_client import APIStatusError, LlamaStackClient
from openai import OpenAI
from opentelemetry.trace import SpanKind

from sagellm_obs import frames
from sagellm_obs import semconv as sc
from sagellm_obs.protocol import ErrorCode
from sagellm_obs.protocol import llama_stack as ls

if TYPE_CHECKING:
    from conftest import ServerHarness

pytestmark = pytest.mark.engine

GREEDY: Any = {"strategy": {"type": "greedy"}, "max_tokens": 6}
FIXED = {"ignore_eos": True}  # our extension: exactly max_tokens tokens
USER: Any = [{"role": "user", "content": "Say hi."}]


@pytest.fixture
def lsc(harness: ServerHarness) -> LlamaStackClient:
    return LlamaStackClient(
        base_url=harness.url, api_key=harness.api_key, max_retries=0, timeout=60
    )


def _metrics(resp: Any) -> dict[str, tuple[float, str | None]]:
    return {m.metric: (m.value, m.unit) for m in resp.metrics or ()}


def _check_numbers(harness: ServerHarness, rid: str, metrics: dict[str, Any]) -> None:
    """The response's metrics are the engine's: the span's and the run folder's."""
    span = harness.engine_span(rid)
    a = span.attributes
    assert a is not None
    assert metrics["prompt_tokens"] == (a[sc.GEN_AI_USAGE_INPUT_TOKENS], "tokens")
    assert metrics["completion_tokens"] == (a[sc.GEN_AI_USAGE_OUTPUT_TOKENS], "tokens")
    assert (
        metrics["total_tokens"][0] == metrics["prompt_tokens"][0] + metrics["completion_tokens"][0]
    )
    assert metrics["cached_tokens"] == (a[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS], "tokens")
    ttft, unit = metrics["time_to_first_token"]
    assert unit == "ms"
    assert ttft == pytest.approx(a[sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN] * 1000, rel=1e-6)
    for name in ("queue_time", "prefill_time", "decode_time", "request_duration"):
        assert metrics[name][1] == "ms" and metrics[name][0] >= 0
    row = frames.load(harness.run_dir, cache=False).requests.filter(request_id=rid).to_dicts()
    assert len(row) == 1, row
    r = row[0]
    assert r["input_tokens"] == metrics["prompt_tokens"][0]
    assert r["output_tokens"] == metrics["completion_tokens"][0]
    assert r["cached_tokens"] == metrics["cached_tokens"][0]
    assert r["ttft_s"] * 1000 == pytest.approx(ttft, rel=1e-6)
    assert r["prefill_s"] * 1000 == pytest.approx(metrics["prefill_time"][0], rel=1e-6, abs=1e-6)
    assert r["decode_s"] * 1000 == pytest.approx(metrics["decode_time"][0], rel=1e-6, abs=1e-6)
    # queue_time is arrival to first scheduling: the engine span's start to its queue span's end
    # (the queue span itself is EngineCore's share, after the frontend's tokenisation).
    queue = next(k for k in harness.children(span) if k.name == "queue")
    assert queue.end_time is not None and span.start_time is not None
    waited_ms = (queue.end_time - span.start_time) / 1e6
    assert metrics["queue_time"][0] == pytest.approx(waited_ms, abs=1e-3)
    assert r["queue_s"] * 1000 <= metrics["queue_time"][0] + 1e-3


def test_completion(lsc: LlamaStackClient, harness: ServerHarness) -> None:
    raw = lsc.inference.with_raw_response.completion(
        model_id=harness.model,
        content="def fib(n):",
        sampling_params=GREEDY,
        extra_body=FIXED,
        extra_headers={"X-Request-Id": "ls-comp-1"},
    )
    out = raw.parse()
    assert isinstance(out.content, str)
    assert out.stop_reason == "out_of_tokens"
    m = _metrics(out)
    assert m["completion_tokens"] == (6, "tokens")
    _check_numbers(harness, "ls-comp-1", m)
    span = harness.engine_span("ls-comp-1")
    assert span.attributes is not None
    assert span.attributes[sc.GEN_AI_OPERATION_NAME] == sc.OP_TEXT_COMPLETION
    (http,) = harness.http_spans(span.context.trace_id)
    assert http.name == "POST /v1/inference/completion" and http.kind == SpanKind.SERVER
    assert span.parent is not None and span.parent.span_id == http.context.span_id
    assert raw.headers["x-trace-id"] == f"{span.context.trace_id:032x}"
    ls.CompletionResponse.model_validate(out.to_dict())


def test_streaming_completion(lsc: LlamaStackClient, harness: ServerHarness) -> None:
    whole = lsc.inference.completion(
        model_id=harness.model, content="import os\n", sampling_params=GREEDY, extra_body=FIXED
    )
    chunks = list(
        lsc.inference.completion(
            model_id=harness.model,
            content="import os\n",
            sampling_params=GREEDY,
            stream=True,
            extra_body=FIXED,
        )
    )
    assert "".join(c.delta for c in chunks) == whole.content  # greedy: same text
    assert [c.stop_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    last = chunks[-1]
    assert last.stop_reason == "out_of_tokens" and last.delta == ""
    assert _metrics(last)["completion_tokens"] == (6, "tokens")
    assert all(c.metrics is None for c in chunks[:-1])


def test_chat_completion(lsc: LlamaStackClient, harness: ServerHarness) -> None:
    out = lsc.inference.chat_completion(
        model_id=harness.model,
        messages=[{"role": "system", "content": "You are terse."}, *USER],
        sampling_params={
            "strategy": {"type": "top_p", "temperature": 0.7, "top_p": 0.9},
            "max_tokens": 5,
        },
        extra_body=FIXED,
        extra_headers={"X-Request-Id": "ls-chat-1"},
    )
    msg = out.completion_message
    assert msg.role == "assistant" and isinstance(msg.content, str)
    assert msg.stop_reason == "out_of_tokens" and msg.tool_calls == []
    m = _metrics(out)
    assert m["completion_tokens"] == (5, "tokens")
    _check_numbers(harness, "ls-chat-1", m)
    span = harness.engine_span("ls-chat-1")
    assert span.attributes is not None
    assert span.attributes[sc.GEN_AI_OPERATION_NAME] == sc.OP_CHAT
    assert span.attributes[sc.GEN_AI_REQUEST_TEMPERATURE] == pytest.approx(0.7)
    assert span.attributes[sc.GEN_AI_REQUEST_TOP_P] == pytest.approx(0.9)


def test_streaming_chat_event_order(lsc: LlamaStackClient, harness: ServerHarness) -> None:
    common: Any = {
        "model_id": harness.model,
        "messages": USER,
        "sampling_params": {**GREEDY, "max_tokens": 8},
    }
    whole = lsc.inference.chat_completion(**common, extra_body=FIXED)
    chunks = list(lsc.inference.chat_completion(**common, stream=True, extra_body=FIXED))
    kinds = [c.event.event_type for c in chunks]
    assert kinds[0] == "start" and kinds[-1] == "complete"
    assert set(kinds[1:-1]) == {"progress"} and len(kinds) >= 3
    assert all(c.event.delta.type == "text" for c in chunks)
    text = "".join(c.event.delta.text for c in chunks)  # type: ignore[union-attr]
    assert text == whole.completion_message.content
    done = chunks[-1]
    assert done.event.stop_reason == "out_of_tokens"
    assert _metrics(done)["completion_tokens"] == (8, "tokens")
    assert all(c.metrics is None and c.event.stop_reason is None for c in chunks[:-1])


ALARM: Any = {
    "tool_name": "set_alarm",
    "description": "Turn the alarm on or off",
    "parameters": {
        "enabled": {"param_type": "boolean", "description": "on?", "required": True},
        "loud": {"param_type": "bool", "required": True},
    },
}
# Sampling, as the OpenAI routes' tool tests: greedy decoding of the random-weight model loops on
# the whitespace JSON allows, sampling at temperature 1 closes the object. A fixed seed (our
# extension: llama-stack's SamplingParams has none) makes each test's output the same every run.
TOOL_SAMPLING: Any = {
    "strategy": {"type": "top_p", "temperature": 1.0, "top_p": 1.0},
    "max_tokens": 300,
}
SEEDED: Any = {"seed": 7}
LIGHT: Any = {
    "tool_name": "toggle_light",
    "parameters": {"on": {"param_type": "boolean"}},
}


def test_forced_tool_call(lsc: LlamaStackClient, harness: ServerHarness) -> None:
    out = lsc.inference.chat_completion(
        model_id=harness.model,
        messages=[{"role": "user", "content": "Wake me up."}],
        tools=[ALARM, LIGHT],
        tool_config={"tool_choice": "set_alarm"},
        sampling_params=TOOL_SAMPLING,
        extra_body=SEEDED,
    )
    msg = out.completion_message
    assert msg.stop_reason == "end_of_message" and msg.content == ""
    (call,) = msg.tool_calls or []
    assert call.tool_name == "set_alarm" and call.call_id.startswith("call_")
    assert isinstance(call.arguments, dict)
    assert set(call.arguments) == {"enabled", "loud"}
    assert all(isinstance(v, bool) for v in call.arguments.values())
    assert json.loads(call.arguments_json or "") == call.arguments


def test_streamed_tool_call(lsc: LlamaStackClient, harness: ServerHarness) -> None:
    chunks = list(
        lsc.inference.chat_completion(
            model_id=harness.model,
            messages=[{"role": "user", "content": "Lights or alarm?"}],
            tools=[ALARM, LIGHT],
            tool_choice="required",  # the deprecated top-level spelling
            sampling_params=TOOL_SAMPLING,
            stream=True,
            extra_body=SEEDED,
        )
    )
    events = [c.event for c in chunks]
    assert events[0].event_type == "start" and events[-1].event_type == "complete"
    calls = [e.delta for e in events if e.delta.type == "tool_call"]
    statuses = [d.parse_status for d in calls]  # type: ignore[union-attr]
    assert statuses[0] == "started" and statuses[-1] == "succeeded"
    assert set(statuses[1:-1]) == {"in_progress"} and len(statuses) >= 4
    pieces = "".join(d.tool_call for d in calls[1:-1])  # type: ignore[union-attr,misc]
    call = calls[-1].tool_call  # type: ignore[union-attr]
    assert not isinstance(call, str)
    assert call.tool_name in ("set_alarm", "toggle_light")
    assert json.loads(pieces)["name"] == call.tool_name
    assert events[-1].stop_reason == "end_of_message"
    assert _metrics(chunks[-1])["completion_tokens"][0] > 0


def test_batch_completion(lsc: LlamaStackClient, harness: ServerHarness) -> None:
    raw = lsc.inference.with_raw_response.batch_completion(
        model_id=harness.model,
        content_batch=["x = ", "def f():", [{"type": "text", "text": "class A:"}]],
        sampling_params={"max_tokens": 4},
        extra_body=FIXED,
        extra_headers={"X-Request-Id": "ls-batch-1"},
    )
    out = raw.parse()
    assert len(out.batch) == 3
    for i, item in enumerate(out.batch):
        assert item.stop_reason == "out_of_tokens"
        m = _metrics(item)
        assert m["completion_tokens"] == (4, "tokens")
        _check_numbers(harness, f"ls-batch-1-{i}", m)
    # one HTTP span, one engine span per item under it
    spans = [harness.engine_span(f"ls-batch-1-{i}") for i in range(3)]
    (http,) = harness.http_spans(spans[0].context.trace_id)
    assert http.name == "POST /v1/inference/batch-completion"
    assert {s.parent.span_id for s in spans if s.parent} == {http.context.span_id}
    assert {s.context.trace_id for s in spans} == {http.context.trace_id}


def test_batch_chat_completion(lsc: LlamaStackClient, harness: ServerHarness) -> None:
    out = lsc.inference.batch_chat_completion(
        model_id=harness.model,
        messages_batch=[USER, [{"role": "user", "content": "Count to three."}]],
        sampling_params={"max_tokens": 3},
        extra_body=FIXED,
        extra_headers={"X-Request-Id": "ls-bchat-1"},
    )
    assert [r.completion_message.stop_reason for r in out.batch] == ["out_of_tokens"] * 2
    for i, item in enumerate(out.batch):
        _check_numbers(harness, f"ls-bchat-1-{i}", _metrics(item))
    ls.BatchChatCompletionResponse.model_validate(out.to_dict())


def test_models_list_serves_both_clients(lsc: LlamaStackClient, harness: ServerHarness) -> None:
    (model,) = lsc.models.list()
    assert model.identifier == harness.model
    assert model.provider_id == "sagellm-obs"
    assert model.provider_resource_id == harness.model
    assert model.api_model_type == "llm" and model.type == "model"
    with harness.client() as c:
        (entry,) = c.get("/v1/models").json()["data"]
    assert entry["id"] == harness.model and entry["object"] == "model"
    assert entry["owned_by"] == "sagellm-obs"
    ls.Model.model_validate(entry)
    # One model, as both clients retrieve it.
    assert lsc.models.retrieve(harness.model).identifier == harness.model
    oai = OpenAI(base_url=f"{harness.url}/v1", api_key=harness.api_key, max_retries=0)
    assert oai.models.retrieve(harness.model).id == harness.model
    with pytest.raises(APIStatusError) as exc:
        lsc.models.retrieve("llama-99")
    assert exc.value.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/inference/completion",
        "/inference/chat-completion",
        "/inference/chat_completion",
        "/inference/batch_completion",
        "/inference/batch_chat_completion",
    ],
)
def test_unversioned_paths(harness: ServerHarness, path: str) -> None:
    # The draft spec's spelling: "model" rather than "model_id".
    body: dict[str, Any] = {"model": harness.model, "sampling_params": {"max_tokens": 2}}
    if "batch_chat" in path:
        body["messages_batch"] = [USER]
    elif "chat" in path:
        body["messages"] = USER
    elif "batch" in path:
        body["content_batch"] = ["x"]
    else:
        body["content"] = "x"
    with harness.client() as c:
        resp = c.post(path, json=body)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    item = data["batch"][0] if "batch" in data else data
    if "chat" in path:
        ls.ChatCompletionResponse.model_validate(item)
    else:
        ls.CompletionResponse.model_validate(item)
    assert {m["metric"] for m in item["metrics"]} >= {"prompt_tokens", "total_tokens"}


# --- errors ----------------------------------------------------------------------------------------
CHAT = "/v1/inference/chat-completion"
COMP = "/v1/inference/completion"
IMAGE = {"type": "image", "image": {"url": {"uri": "https://x/y.png"}}}

# (id, path, body without model_id, status, code, param)
BAD: list[tuple[str, str, dict[str, Any], int, str, str | None]] = [
    ("no-messages", CHAT, {}, 400, "invalid_argument", "messages"),
    ("seed-text", COMP, {"content": "x", "seed": "7"}, 400, "invalid_argument", "seed"),
    ("bad-role", CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_argument", "messages.0.role"),
    ("bad-strategy", COMP, {"content": "x", "sampling_params": {"strategy": {"type": "beam"}}}, 400, "invalid_argument", "sampling_params.strategy.type"),
    ("top-p-temp-0", COMP, {"content": "x", "sampling_params": {"strategy": {"type": "top_p", "temperature": 0}}}, 400, "invalid_argument", "sampling_params.strategy.top_p.temperature"),
    ("neg-max-tokens", COMP, {"content": "x", "sampling_params": {"max_tokens": -2}}, 400, "invalid_argument", "sampling_params.max_tokens"),
    ("rep-penalty", COMP, {"content": "x", "sampling_params": {"repetition_penalty": 0.5}}, 400, "invalid_argument", "sampling_params.repetition_penalty"),
    ("image", COMP, {"content": [IMAGE]}, 400, "not_implemented", "content"),
    ("chat-image", CHAT, {"messages": [{"role": "user", "content": [IMAGE]}]}, 400, "not_implemented", "messages.0.content"),
    ("logprobs", COMP, {"content": "x", "logprobs": {"top_k": 2}}, 400, "not_implemented", "logprobs"),
    ("grammar", COMP, {"content": "x", "response_format": {"type": "grammar", "bnf": {}}}, 400, "not_implemented", "response_format"),
    ("unknown-tool", CHAT, {"messages": USER, "tools": [LIGHT], "tool_config": {"tool_choice": "nope"}}, 400, "invalid_argument", "tools"),
    ("required-no-tools", CHAT, {"messages": USER, "tool_choice": "required"}, 400, "invalid_argument", "tool_config"),
    ("tool-choice-clash", CHAT, {"messages": USER, "tool_choice": "none", "tool_config": {"tool_choice": "auto"}}, 400, "invalid_argument", None),
    ("empty-batch", "/v1/inference/batch-completion", {"content_batch": []}, 400, "invalid_argument", "content_batch"),
    ("too-long", COMP, {"content": "word " * 3000}, 400, "invalid_argument", "prompt"),
    ("embeddings", "/v1/inference/embeddings", {"contents": ["x"]}, 400, "not_implemented", "model_id"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "param"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_payloads(
    harness: ServerHarness,
    path: str,
    body: dict[str, Any],
    status: int,
    code: str,
    param: str | None,
) -> None:
    with harness.client() as c:
        resp = c.post(path, json={"model_id": harness.model, **body})
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code and code in {c.value for c in ErrorCode}
    if param is not None:
        assert err["param"] == param, err
    assert "word word" not in err["message"]  # request content is never echoed


def test_unknown_model_and_the_client_raises(lsc: LlamaStackClient) -> None:
    with pytest.raises(APIStatusError) as exc:
        lsc.inference.completion(model_id="llama-99", content="x")
    assert exc.value.status_code == 404
    body = exc.value.body
    assert isinstance(body, dict) and body["error"]["param"] == "model"


def test_api_key_required(harness: ServerHarness) -> None:
    resp = httpx.post(
        f"{harness.url}/v1/inference/completion", json={"model_id": "m", "content": "x"}
    )
    assert resp.status_code == 401
