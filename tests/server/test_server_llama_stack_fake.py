"""Fast checks of the llama-stack routes without vLLM: mapping, failures, streams (in-process)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sagellm_obs import AdvancedOptions, Telemetry, configure
from sagellm_obs.protocol import DecodingStrategy, ErrorCode
from sagellm_obs.protocol import llama_stack as ls
from sagellm_obs.server import create_app, llama_stack_routes
from sagellm_obs.server import llama_stack_compat as lc
from tests.server.test_server_fake_engine import FakeEngine

USER = [{"role": "user", "content": "secret prompt"}]


@pytest.fixture(scope="module")
def telemetry() -> Iterator[Telemetry]:
    tel = configure(
        run_dir=False,
        otlp_endpoint=False,
        make_current=False,
        advanced=AdvancedOptions(span_exporters=[InMemorySpanExporter()], simple_processors=True),
    )
    yield tel
    tel.shutdown()


def _post(engine: FakeEngine, path: str, body: dict[str, Any]) -> httpx.Response:
    app = create_app(engine)  # type: ignore[arg-type]

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.post(path, json={"model_id": engine.model_name, **body})

    return asyncio.run(run())


def _frames(resp: httpx.Response) -> list[dict[str, Any]]:
    assert resp.headers["content-type"].startswith("text/event-stream")
    out = []
    for f in resp.text.split("\n\n"):
        if f:
            assert f.startswith("data: ") and f != "data: [DONE]"  # llama-stack sends no [DONE]
            out.append(json.loads(f[6:]))
    return out


def test_requests_map_onto_the_protocol(telemetry: Telemetry) -> None:
    engine = FakeEngine(telemetry)
    sampling = {
        "strategy": {"type": "top_k", "top_k": 7},
        "max_tokens": 9,
        "repetition_penalty": 1.2,
        "stop": ["\n"],
    }
    resp = _post(
        engine,
        "/v1/inference/chat-completion",
        {
            "messages": [{"role": "system", "content": "be brief"}, *USER],
            "sampling_params": sampling,
        },
    )
    assert resp.status_code == 200
    (req,) = engine.seen
    assert req.max_tokens == 9
    assert req.messages is not None and [m.role for m in req.messages] == ["system", "user"]
    sp = req.sampling_params
    assert sp is not None and sp.strategy == DecodingStrategy.SAMPLING
    assert (sp.top_k, sp.temperature, sp.repetition_penalty) == (7, 1.0, 1.2)
    assert sp.stop_sequences == ["\n"]
    assert req.metadata is not None and "traceparent" in req.metadata
    out = ls.ChatCompletionResponse.model_validate(resp.json())
    assert out.completion_message.content == "hello"
    assert out.completion_message.stop_reason == ls.StopReason.end_of_turn
    assert out.metric("prompt_tokens") == 3 and out.metric("completion_tokens") == 2
    assert out.metric("total_tokens") == 5
    assert out.metric("time_to_first_token") == 1.0


def test_greedy_default_and_max_tokens_zero_means_the_context(telemetry: Telemetry) -> None:
    engine = FakeEngine(telemetry)
    resp = _post(engine, "/v1/inference/completion", {"content": "x"})
    assert resp.status_code == 200
    (req,) = engine.seen
    assert req.max_tokens == engine.config.max_model_len
    assert req.sampling_params is not None
    assert req.sampling_params.strategy == DecodingStrategy.GREEDY
    assert req.sampling_params.temperature == 0.0


def test_engine_failure_is_a_5xx(telemetry: Telemetry) -> None:
    resp = _post(FakeEngine(telemetry, "error"), "/v1/inference/completion", {"content": "x"})
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == ErrorCode.UNAVAILABLE.value
    assert "secret" not in resp.text


def test_a_failing_item_fails_the_batch(telemetry: Telemetry) -> None:
    engine = FakeEngine(telemetry, "error")
    resp = _post(engine, "/v1/inference/batch-completion", {"content_batch": ["a", "b", "c"]})
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == ErrorCode.UNAVAILABLE.value


def test_streams(telemetry: Telemetry) -> None:
    engine = FakeEngine(telemetry)
    comp = _frames(_post(engine, "/v1/inference/completion", {"content": "x", "stream": True}))
    chunks = [ls.CompletionResponseStreamChunk.model_validate(c) for c in comp]
    assert [c.delta for c in chunks] == ["hel", "lo", ""]
    assert [c.stop_reason for c in chunks] == [None, None, ls.StopReason.end_of_turn]
    assert chunks[-1].metric("completion_tokens") == 2
    chat = _frames(_post(engine, "/inference/chat_completion", {"messages": USER, "stream": True}))
    events = [ls.ChatCompletionResponseStreamChunk.model_validate(c).event for c in chat]
    assert [e.event_type.value for e in events] == ["start", "progress", "progress", "complete"]
    assert [getattr(e.delta, "text", None) for e in events] == ["", "hel", "lo", ""]
    assert engine.closed_streams == 2


def test_error_mid_stream_is_an_error_frame(telemetry: Telemetry) -> None:
    engine = FakeEngine(telemetry, "error")
    frames = _frames(
        _post(engine, "/v1/inference/chat-completion", {"messages": USER, "stream": True})
    )
    assert frames[-1]["error"]["code"] == ErrorCode.UNAVAILABLE.value
    assert [f["event"]["event_type"] for f in frames[:-1]] == ["start", "progress", "progress"]
    assert engine.closed_streams == 1


def test_forced_call_chunks_from_generated_text() -> None:
    tool = ls.ToolDefinition.model_validate(
        {"tool_name": "f", "parameters": {"on": {"param_type": "bool"}, "n": {"param_type": "x"}}}
    )
    spec = lc.tool_spec(tool)
    assert spec.parameters == {
        "type": "object",
        "properties": {"on": {"type": "boolean"}, "n": {}},
        "required": ["on", "n"],
    }
    forced = lc.forced_tool([tool], ls.ToolConfig(tool_choice="required"))
    assert forced is not None
    chunks = lc.ChatChunks(forced)
    out = chunks.start()
    for piece in ('{"name": "f", ', '"arguments": {"on": true, "n": [1]}}'):
        out += chunks.progress(piece)
    out += chunks.complete("stop", [])
    deltas = [c.event.delta for c in out]
    statuses = [getattr(d, "parse_status", None) for d in deltas]
    assert statuses == [None, "started", "in_progress", "in_progress", "succeeded", None]
    call = deltas[-2].tool_call  # type: ignore[union-attr]
    assert isinstance(call, ls.ToolCall)
    assert call.arguments == {"on": True, "n": [1]}
    assert out[-1].event.stop_reason == ls.StopReason.end_of_message
    # Cut short: the whole text, failed, and the stop reason says why.
    cut = lc.ChatChunks(forced)
    cut.progress('{"name": "f", "argu')
    last = cut.complete("length", [])
    assert last[0].event.delta.parse_status == "failed"  # type: ignore[union-attr]
    assert last[0].event.delta.tool_call == '{"name": "f", "argu'  # type: ignore[union-attr]
    assert last[-1].event.stop_reason == ls.StopReason.out_of_tokens


def test_replace_puts_functions_where_the_system_message_says() -> None:
    tool = ls.ToolDefinition(tool_name="f")
    forced = lc.forced_tool([tool], ls.ToolConfig(tool_choice="f"))
    assert forced is not None
    msgs = lc.chat_messages(
        [ls.SystemMessage(content="Tools: {{function_definitions}}. Be brief.")]
    )
    config = ls.ToolConfig(tool_choice="f", system_message_behavior="replace")
    (system,) = lc.with_tool_prompt(msgs, forced, config)
    assert system.content.startswith("Tools: Call one of these functions")
    assert system.content.endswith(". Be brief.")
    (appended,) = lc.with_tool_prompt(msgs, forced, ls.ToolConfig(tool_choice="f"))
    assert appended.content.startswith("Tools: {{function_definitions}}. Be brief.\n\n")


# --- fuzz: any body gets a 200 or a 4xx with a protocol ErrorCode, never a 5xx -------------------
_LEAF = st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(-2, 3) | st.text(max_size=8)
_JSON = st.recursive(
    _LEAF,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=8,
)
_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "tool", "assistant", "x"])},
    optional={
        "content": _JSON | st.text(max_size=8),
        "call_id": _JSON,
        "stop_reason": st.sampled_from(["end_of_turn", "out_of_tokens", "x"]),
        "tool_calls": _JSON,
    },
)
_SAMPLING = st.fixed_dictionaries(
    {},
    optional={
        "strategy": st.fixed_dictionaries(
            {"type": st.sampled_from(["greedy", "top_p", "top_k", "beam"])},
            optional={"temperature": _JSON, "top_p": _JSON, "top_k": _JSON},
        ),
        "max_tokens": _JSON,
        "repetition_penalty": _JSON,
        "stop": _JSON,
    },
)
_BODY = st.fixed_dictionaries(
    {},
    optional={
        "model_id": st.sampled_from(["fake-model", "other", ""]) | _JSON,
        "content": st.text(max_size=8) | _JSON,
        "content_batch": st.lists(st.text(max_size=4) | _JSON, max_size=3),
        "messages": st.lists(_MESSAGE, max_size=3),
        "messages_batch": st.lists(st.lists(_MESSAGE, max_size=2), max_size=2),
        "sampling_params": _SAMPLING | _JSON,
        "tools": st.lists(
            st.fixed_dictionaries(
                {"tool_name": st.sampled_from(["f", "g"])}, optional={"parameters": _JSON}
            ),
            max_size=2,
        )
        | _JSON,
        "tool_choice": st.sampled_from(["auto", "required", "none", "f", "h"]) | _JSON,
        "tool_config": _JSON,
        "response_format": _JSON,
        "logprobs": _JSON,
        "stream": st.booleans() | _JSON,
    },
)
_CODES = {c.value for c in ErrorCode}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(llama_stack_routes.ROUTES), body=_BODY)
def test_fuzzed_bodies_never_5xx(telemetry: Telemetry, path: str, body: dict[str, Any]) -> None:
    engine = FakeEngine(telemetry)
    app = create_app(engine)  # type: ignore[arg-type]

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.post(path, json=body)

    resp = asyncio.run(run())
    assert resp.status_code in (200, 400, 404), resp.text
    if resp.status_code != 200:
        err = resp.json()["error"]
        assert err["code"] in _CODES, err
