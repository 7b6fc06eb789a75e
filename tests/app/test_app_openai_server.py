"""Application -> instrumented openai client -> our server -> engine: one trace; tools; cancel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from sagellm_obs import semconv as sc
from sagellm_obs.app import TokenEvent, TokenStreamer, instrument_openai, trace_protocol
from sagellm_obs.protocol import Request

if TYPE_CHECKING:
    from conftest import Served

pytestmark = pytest.mark.engine

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Paris", "Tokyo", "Rio de Janeiro"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
                "metric": {"type": "boolean"},
            },
            "required": ["city", "days", "metric"],
            "additionalProperties": False,
        },
    },
}
CLOCK: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"tz": {"type": "string", "enum": ["UTC", "CET"]}},
            "required": ["tz"],
            "additionalProperties": False,
        },
    },
}
CONTENT_KEYS = (sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES, sc.GEN_AI_TOOL_DEFINITIONS)


@pytest.fixture
def client(served: Served) -> Iterator[OpenAI]:
    c = OpenAI(base_url=served.url, api_key="unused", max_retries=0, timeout=60)
    handle = instrument_openai(c, telemetry=served.mem.telemetry)
    yield c
    handle.uninstrument()
    c.close()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def client_spans(served: Served, trace_id: int | None = None) -> list[ReadableSpan]:
    return [
        s
        for s in served.mem.spans()
        if s.kind == SpanKind.CLIENT and (trace_id is None or s.context.trace_id == trace_id)
    ]


def http_span(served: Served, trace_id: int) -> ReadableSpan:
    def probe() -> ReadableSpan | None:
        for s in served.mem.spans():
            if s.context.trace_id == trace_id and "http.request.method" in attrs(s):
                return s
        return None

    span: ReadableSpan = served.wait_for(probe)
    return span


def test_one_trace_from_application_to_engine_phases(served: Served, client: OpenAI) -> None:
    @trace_protocol(tracer=served.mem.telemetry.tracer)
    class Assistant:
        def ask(self, question: str, conversation_id: str) -> str:
            resp = client.chat.completions.create(
                model=served.model,
                messages=[{"role": "user", "content": question}],
                max_tokens=4,
                extra_headers={"X-Request-Id": "app-trace-1"},
            )
            self.last = resp
            return resp.choices[0].message.content or ""

    app = Assistant()
    app.ask("a private question", "conv-1")
    resp = app.last
    engine = served.engine_span("app-trace-1")
    trace_id = engine.context.trace_id
    (root,) = served.mem.named("Assistant.ask")
    (cli,) = client_spans(served, trace_id)
    http = http_span(served, trace_id)
    phases = [
        s for s in served.mem.spans() if s.parent and s.parent.span_id == engine.context.span_id
    ]

    # application -> client -> HTTP server -> engine request -> phases, all in one trace
    assert root.context.trace_id == trace_id and root.parent is None
    assert cli.parent is not None and cli.parent.span_id == root.context.span_id
    assert http.parent is not None and http.parent.span_id == cli.context.span_id
    assert engine.parent is not None and engine.parent.span_id == http.context.span_id
    assert sorted(p.name for p in phases) == sorted(sc.PHASE_SPANS)
    in_trace = [s for s in served.mem.spans() if s.context.trace_id == trace_id]
    assert len(in_trace) == 4 + len(phases)

    assert cli.name == f"chat {served.model}"
    a = attrs(cli)
    assert a[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert a[sc.GEN_AI_REQUEST_MODEL] == served.model
    assert a[sc.GEN_AI_RESPONSE_ID] == resp.id
    assert a[sc.GEN_AI_REQUEST_MAX_TOKENS] == 4
    assert resp.usage is not None
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == resp.usage.prompt_tokens
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == resp.usage.completion_tokens
    assert a[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert a[sc.SERVER_PORT] == served.server.port
    assert a[sc.GEN_AI_RESPONSE_FINISH_REASONS] == (resp.choices[0].finish_reason,)
    # the engine saw the same tokens the client reports
    assert attrs(engine)[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == resp.usage.completion_tokens
    # no content captured by default, anywhere in the trace
    for span in in_trace:
        assert not set(CONTENT_KEYS) & set(attrs(span)), span.name
        assert "private" not in repr(attrs(span))


def test_cancel_mid_stream_aborts_the_engine_request(served: Served, client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=served.model,
        messages=[{"role": "user", "content": "count"}],
        max_tokens=400,
        stream=True,
        extra_body={"ignore_eos": True},
        extra_headers={"X-Request-Id": "app-cancel-1"},
    )
    streamer = TokenStreamer(stream)

    def on_token(text: str) -> None:
        if streamer.token_count >= 3:
            streamer.cancel()

    streamer.on_token = on_token
    events = list(streamer)
    assert streamer.cancelled
    assert [e.type for e in events] == ["token"] * 3
    engine = served.engine_span("app-cancel-1")
    assert attrs(engine)[sc.SAGELLM_CANCELLED] is True
    assert attrs(engine)[sc.GEN_AI_USAGE_OUTPUT_TOKENS] < 400
    # one CLIENT span (the instrumentation's; the streamer adds none), marked cancelled
    (cli,) = client_spans(served, engine.context.trace_id)
    a = attrs(cli)
    assert a[sc.SAGELLM_CANCELLED] is True
    assert a[sc.GEN_AI_REQUEST_STREAM] is True
    assert a[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert cli.status.status_code == StatusCode.UNSET
    assert served.wait_for(lambda: served.unfinished_requests() == 0)


def test_forced_tool_call(served: Served, client: OpenAI) -> None:
    resp = client.chat.completions.create(
        model=served.model,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=300,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert args["city"] in ("Paris", "Tokyo", "Rio de Janeiro")
    assert 1 <= args["days"] <= 14 and isinstance(args["metric"], bool)
    (cli,) = client_spans(served)
    assert attrs(cli)[sc.SAGELLM_TOOL_CALL_NAMES] == ("get_weather",)
    assert attrs(cli)[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)


def test_streamed_tool_call_arrives_in_pieces(served: Served, client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=served.model,
        messages=[{"role": "user", "content": "What time is it, or the weather?"}],
        tools=[WEATHER, CLOCK],
        tool_choice="required",
        max_tokens=300,
        stream=True,
        stream_options={"include_usage": True},
    )
    events: list[TokenEvent] = []
    streamer = TokenStreamer(stream, on_event=events.append)
    list(streamer)
    fragments = [e.arguments_delta for e in events if e.type == "tool_call_chunk"]
    assert sum(1 for f in fragments if f) >= 2  # arguments split over several chunks
    (call,) = streamer.tool_calls
    assert call.name in ("get_weather", "get_time") and call.id.startswith("call_")
    args = call.parsed_arguments()
    assert isinstance(args, dict)
    assert set(args) == set(
        (WEATHER if call.name == "get_weather" else CLOCK)["function"]["parameters"]["required"]
    )
    assert [e.type for e in events][-2:] == ["tool_call_complete", "finish"]
    assert streamer.finish_reason == "tool_calls"
    assert streamer.content == ""
    assert streamer.usage is not None and streamer.usage.output_tokens
    (cli,) = client_spans(served)
    assert attrs(cli)[sc.SAGELLM_TOOL_CALL_NAMES] == (call.name,)
    assert attrs(cli)[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == streamer.usage.output_tokens


def test_async_client_stream_joins_the_trace(served: Served) -> None:
    async def run() -> TokenStreamer:
        async with AsyncOpenAI(base_url=served.url, api_key="unused", max_retries=0) as aclient:
            with instrument_openai(aclient, telemetry=served.mem.telemetry):
                stream = await aclient.completions.create(
                    model=served.model,
                    prompt="def f(x):",
                    max_tokens=6,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers={"X-Request-Id": "app-async-1"},
                )
                assert isinstance(stream, openai.AsyncStream)  # still one, for callers
                streamer = TokenStreamer(stream)
                async for _ in streamer:
                    pass
                return streamer

    streamer = asyncio.run(run())
    assert streamer.finish_reason in ("stop", "length")
    engine = served.engine_span("app-async-1")
    (cli,) = client_spans(served, engine.context.trace_id)
    http = http_span(served, engine.context.trace_id)
    assert cli.name == f"text_completion {served.model}"
    assert http.parent is not None and http.parent.span_id == cli.context.span_id
    a = attrs(cli)
    assert a[sc.SAGELLM_STREAM_CHUNKS] >= 2
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == attrs(engine)[sc.GEN_AI_USAGE_OUTPUT_TOKENS]
    assert sc.SAGELLM_CANCELLED not in a


def test_engine_stream_cancelled_through_the_streamer(served: Served) -> None:
    engine = served.server.engine

    async def run() -> TokenStreamer:
        req = Request(
            request_id="app-engine-cancel",
            trace_id="app-engine-cancel",
            prompt="x =",
            max_tokens=400,
            metadata={"ignore_eos": True},
        )
        streamer = TokenStreamer(
            engine.stream(req),
            model=engine.model_name,
            operation="text_completion",
            telemetry=served.mem.telemetry,
        )
        async for _ in streamer:
            if streamer.token_count >= 3:
                streamer.cancel()
        return streamer

    streamer = asyncio.run_coroutine_threadsafe(run(), served.server._loop).result(60)
    assert streamer.cancelled and streamer.token_count >= 3
    span = served.engine_span("app-engine-cancel")
    assert attrs(span)[sc.SAGELLM_CANCELLED] is True
    (cli,) = [s for s in client_spans(served) if s.name == f"text_completion {engine.model_name}"]
    assert attrs(cli)[sc.SAGELLM_CANCELLED] is True
    assert attrs(cli)[sc.GEN_AI_PROVIDER_NAME] == "vllm"
    assert served.wait_for(lambda: served.unfinished_requests() == 0)


def test_errors_and_uninstrument(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    c = OpenAI(base_url=served.url, api_key="unused", max_retries=0, timeout=60)
    handle = instrument_openai(c, telemetry=served.mem.telemetry)
    assert instrument_openai(c, telemetry=served.mem.telemetry).active is False  # no double
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(
            model=served.model,
            messages=messages,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "missing"}},
        )
    body: Any = info.value.body
    assert body["param"] == "tool_choice"
    (cli,) = client_spans(served)
    assert cli.status.status_code == StatusCode.ERROR
    assert attrs(cli)[sc.ERROR_TYPE] == "BadRequestError"

    from sagellm_obs.server import openai_compat as oc

    monkeypatch.setattr(oc, "structured_output_supported", lambda: False)
    with pytest.raises(openai.APIStatusError) as unsupported:
        c.chat.completions.create(
            model=served.model,
            messages=messages,
            tools=[WEATHER],
            tool_choice="required",
        )
    assert unsupported.value.status_code == 501

    handle.uninstrument()
    assert not handle.active
    served.mem.exporter.clear()
    c.chat.completions.create(
        model=served.model,
        messages=messages,
        max_tokens=2,
        extra_headers={"X-Request-Id": "app-plain-1"},
    )
    engine = served.engine_span("app-plain-1")
    assert client_spans(served) == []
    assert http_span(served, engine.context.trace_id).parent is None
    c.close()


def test_global_instrumentation_covers_new_clients(served: Served) -> None:
    from openai.resources.chat.completions.completions import Completions

    before = Completions.create
    with instrument_openai(telemetry=served.mem.telemetry, capture_content=True) as handle:
        assert handle.active and Completions.create is not before
        c = OpenAI(base_url=served.url, api_key="unused", max_retries=0, timeout=60)
        assert instrument_openai(c).active is False  # the classes are patched already
        c.chat.completions.create(
            model=served.model,
            messages=[{"role": "user", "content": "visible"}],
            max_tokens=2,
            extra_headers={"X-Request-Id": "app-global-1"},
        )
        c.close()
    assert Completions.create is before
    engine = served.engine_span("app-global-1")
    (cli,) = client_spans(served, engine.context.trace_id)
    messages = json.loads(str(attrs(cli)[sc.GEN_AI_INPUT_MESSAGES]))
    assert messages == [{"role": "user", "content": "visible"}]
    assert sc.GEN_AI_OUTPUT_MESSAGES in attrs(cli)
