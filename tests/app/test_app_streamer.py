"""``TokenStreamer`` over fake OpenAI chunks: tool-call assembly, callbacks, cancellation, span."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from openai.types import Completion, CompletionChoice, CompletionUsage
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import (
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)
from opentelemetry.trace import SpanKind

from sagellm_obs import semconv as sc
from sagellm_obs.app import TokenEvent, TokenStreamer
from sagellm_obs.protocol.toolcalls import (
    ForcedTool,
    ForcedToolStream,
    ToolCallAccumulator,
    ToolCallTextParser,
    ToolSpec,
    forced_tool,
)

if TYPE_CHECKING:
    from conftest import Mem

MODEL = "fake-model"
WEATHER_ARGS = {"city": "Rio de Janeiro", "days": 3, "units": {"temp": "C", "wind": "km/h"}}
TIME_ARGS = {"tz": "America/Sao_Paulo", "format": "24h"}


def chunk(
    delta: ChoiceDelta | None = None,
    finish: Any = None,
    usage: CompletionUsage | None = None,
) -> ChatCompletionChunk:
    choices = [Choice(index=0, delta=delta or ChoiceDelta(), finish_reason=finish)]
    return ChatCompletionChunk(
        id="chatcmpl-1",
        object="chat.completion.chunk",
        created=0,
        model=MODEL,
        choices=[] if usage is not None else choices,
        usage=usage,
    )


def tool_delta(
    index: int, *, args: str = "", call_id: str | None = None, name: str | None = None
) -> ChoiceDelta:
    fn = ChoiceDeltaToolCallFunction(name=name, arguments=args)
    kind = "function" if call_id else None
    call = ChoiceDeltaToolCall(index=index, id=call_id, type=kind, function=fn)
    return ChoiceDelta(tool_calls=[call])


def split(text: str, rng: random.Random) -> list[str]:
    out, i = [], 0
    while i < len(text):
        step = rng.randint(1, 4)
        out.append(text[i : i + step])
        i += step
    return out


def parallel_tool_chunks(seed: int = 7) -> list[ChatCompletionChunk]:
    """Two calls whose argument fragments interleave (index 0 and 1), as OpenAI streams them."""
    rng = random.Random(seed)
    a = split(json.dumps(WEATHER_ARGS), rng)
    b = split(json.dumps(TIME_ARGS), rng)
    chunks = [chunk(ChoiceDelta(role="assistant", content=None))]
    chunks.append(chunk(tool_delta(0, call_id="call_a", name="get_weather")))
    chunks.append(chunk(tool_delta(1, call_id="call_b", name="get_time")))
    for i in range(max(len(a), len(b))):
        if i < len(a):
            chunks.append(chunk(tool_delta(0, args=a[i])))
        if i < len(b):
            chunks.append(chunk(tool_delta(1, args=b[i])))
    chunks.append(chunk(finish="tool_calls"))
    chunks.append(
        chunk(usage=CompletionUsage(prompt_tokens=11, completion_tokens=40, total_tokens=51))
    )
    return chunks


def test_parallel_tool_calls_assemble(mem: Mem) -> None:
    chunks = parallel_tool_chunks()
    events: list[TokenEvent] = []
    streamer = TokenStreamer(iter(chunks), telemetry=mem.telemetry, on_event=events.append)
    assert list(streamer) == events
    kinds = [e.type for e in events]
    assert kinds.count("tool_call_chunk") == len(chunks) - 3
    assert kinds[-3:] == ["tool_call_complete", "tool_call_complete", "finish"]
    # interleaved: fragments alternate between the two calls
    indexes = [e.tool_call.index for e in events if e.type == "tool_call_chunk" and e.tool_call]
    assert indexes[2:6] == [0, 1, 0, 1]
    done = [e.tool_call for e in events if e.type == "tool_call_complete"]
    assert [(c.index, c.id, c.name) for c in done if c] == [
        (0, "call_a", "get_weather"),
        (1, "call_b", "get_time"),
    ]
    assert done[0] is not None and done[0].parsed_arguments() == WEATHER_ARGS
    assert done[1] is not None and done[1].parsed_arguments() == TIME_ARGS
    assert streamer.finish_reason == "tool_calls"
    assert streamer.output_tokens == 40
    finish = events[-1]
    assert finish.usage is not None and finish.usage.input_tokens == 11

    (span,) = mem.spans()
    assert span.name == f"chat {MODEL}"
    assert span.kind == SpanKind.CLIENT
    a: dict[str, Any] = dict(span.attributes or {})
    assert a[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert a[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert a[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == 11
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 40
    assert a[sc.SAGELLM_TOOL_CALLS] == 2
    assert a[sc.SAGELLM_TOOL_CALL_NAMES] == ("get_weather", "get_time")
    assert a[sc.SAGELLM_STREAM_CHUNKS] == len(chunks)
    assert a[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0
    assert [e.name for e in span.events] == [sc.EVENT_FIRST_CHUNK]
    # no content by default: neither the arguments nor output messages
    assert sc.GEN_AI_OUTPUT_MESSAGES not in a
    assert "Rio" not in repr(a)

    mem.telemetry.flush()
    durations = mem.metric_points(sc.M_CLIENT_INFERENCE_DURATION.name)
    assert durations and sum(p.count for p in durations) >= 1
    assert mem.metric_points(sc.M_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK.name)
    # The current GenAI names only, by default (no legacy gen_ai.client.* points).
    for legacy in sc.CLIENT_METRICS_LEGACY:
        assert not mem.metric_points(legacy.name), legacy.name
    per_op = mem.metric_points(sc.M_CLIENT_OPERATION_INPUT_TOKENS.name)
    assert per_op and sc.GEN_AI_TOKEN_TYPE not in per_op[0].attributes
    assert sum(float(p.sum) for p in per_op) >= 11
    spent = [
        p
        for p in mem.metric_points(sc.M_CLIENT_USAGE_OUTPUT_TOKENS.name)
        if p.attributes[sc.GEN_AI_PROVIDER_NAME] == "openai"
    ]
    # the openai client reports no modality breakdown: "unknown", as the conventions ask
    assert {p.attributes[sc.GEN_AI_TOKEN_MODALITY] for p in spent} == {sc.TOKEN_MODALITY_UNKNOWN}
    assert sum(float(p.value) for p in spent) >= 40


def test_accumulator_with_dicts_and_repeated_names() -> None:
    acc = ToolCallAccumulator()
    acc.add(
        {"index": 0, "id": "c0", "type": "function", "function": {"name": "f", "arguments": ""}}
    )
    acc.add({"index": 0, "function": {"name": "f", "arguments": '{"a"'}})
    acc.add({"index": 0, "function": {"arguments": ": 1}"}})
    (call,) = acc.complete()
    assert (call.id, call.name, call.parsed_arguments()) == ("c0", "f", {"a": 1})
    assert call.to_openai()["function"] == {"name": "f", "arguments": '{"a": 1}'}


def test_text_stream_callbacks_and_capture(mem: Mem) -> None:
    words = ["Hel", "lo", " wor", "ld"]
    chunks = [chunk(ChoiceDelta(role="assistant", content=""))]
    chunks += [chunk(ChoiceDelta(content=w)) for w in words]
    chunks.append(chunk(finish="stop"))
    seen: list[str] = []
    streamer = TokenStreamer(
        chunks, telemetry=mem.telemetry, on_token=seen.append, capture_content=True
    )
    events = list(streamer)
    assert seen == words
    assert streamer.content == "Hello world"
    assert streamer.token_count == 4
    assert events[-1].type == "finish" and events[-1].finish_reason == "stop"
    (span,) = mem.spans()
    out = json.loads(str((span.attributes or {})[sc.GEN_AI_OUTPUT_MESSAGES]))
    assert out[0]["parts"][0] == {"type": "text", "content": "Hello world"}


def test_text_completion_chunks(mem: Mem) -> None:
    def completion(text: str, finish: Any = None) -> Completion:
        # streamed choices carry finish_reason None, which the type does not admit
        choice = CompletionChoice.model_construct(
            index=0, text=text, finish_reason=finish, logprobs=None
        )
        return Completion(
            id="cmpl-1", object="text_completion", created=0, model=MODEL, choices=[choice]
        )

    streamer = TokenStreamer(
        [completion("a"), completion("b"), completion("", "length")], telemetry=mem.telemetry
    )
    list(streamer)
    assert streamer.content == "ab"
    assert streamer.finish_reason == "length"
    assert mem.spans()[0].name == f"text_completion {MODEL}"


def test_cancel_from_callback_closes_the_source(mem: Mem) -> None:
    closed: list[bool] = []

    def source() -> Iterator[ChatCompletionChunk]:
        try:
            for i in range(100):
                yield chunk(ChoiceDelta(content=f"t{i} "))
        finally:
            closed.append(True)

    streamer: TokenStreamer

    def on_token(text: str) -> None:
        if streamer.token_count >= 3:
            streamer.cancel()

    streamer = TokenStreamer(source(), telemetry=mem.telemetry, on_token=on_token)
    events = list(streamer)
    assert [e.type for e in events] == ["token"] * 3
    assert closed == [True]
    assert streamer.cancelled
    (span,) = mem.spans()
    a = dict(span.attributes or {})
    assert a[sc.SAGELLM_CANCELLED] is True
    assert a[sc.SAGELLM_STREAM_CHUNKS] == 3


def test_async_source_and_break(mem: Mem) -> None:
    closed: list[bool] = []

    async def source() -> AsyncIterator[ChatCompletionChunk]:
        try:
            for i in range(100):
                await asyncio.sleep(0)
                yield chunk(ChoiceDelta(content=str(i)))
        finally:
            closed.append(True)

    async def run() -> TokenStreamer:
        streamer = TokenStreamer(source(), telemetry=mem.telemetry)
        agen: Any = streamer.__aiter__()
        async for event in agen:
            if event.text == "4":
                break
        await agen.aclose()  # what `async for` leaves to the garbage collector
        return streamer

    streamer = asyncio.run(run())
    assert streamer.content == "01234"
    assert streamer.cancelled and closed == [True]
    assert dict(mem.spans()[0].attributes or {})[sc.SAGELLM_CANCELLED] is True


def test_source_error_is_recorded_and_raised(mem: Mem) -> None:
    def source() -> Iterator[ChatCompletionChunk]:
        yield chunk(ChoiceDelta(content="x"))
        raise ConnectionError("reset")

    streamer = TokenStreamer(source(), telemetry=mem.telemetry)
    with pytest.raises(ConnectionError):
        list(streamer)
    a = dict(mem.spans()[0].attributes or {})
    assert a[sc.ERROR_TYPE] == "ConnectionError"


# --- forced calls: the server side ---------------------------------------------------------------
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {"type": "function", "function": {"name": "get_time"}},
]


def test_forced_tool_choices() -> None:
    assert forced_tool(TOOLS, None) is None
    assert forced_tool(TOOLS, "auto") is None
    assert forced_tool(TOOLS, "none") is None
    required = forced_tool(TOOLS, "required")
    assert required is not None and required.name is None
    assert "anyOf" in required.schema
    named = forced_tool(TOOLS, {"type": "function", "function": {"name": "get_time"}})
    assert named is not None and named.name == "get_time"
    assert named.schema["properties"]["name"] == {"const": "get_time"}
    for bad in ("sometimes", {"type": "function", "function": {"name": "nope"}}, {"x": 1}):
        with pytest.raises(ValueError, match="tool_choice"):
            forced_tool(TOOLS, bad)
    with pytest.raises(ValueError, match="needs tools"):
        forced_tool(None, "required")
    with pytest.raises(ValueError, match="function tools"):
        forced_tool([{"type": "code_interpreter"}], "required")


@pytest.mark.parametrize("seed", range(5))
def test_text_parser_streams_arguments(seed: int) -> None:
    args = '{"city": "Paris \\"Nord\\"", "n": [1, {"x": null}], "ok": true}'
    text = f'{{ "name" : "get_weather",\n "arguments": {args} }}'
    parser = ToolCallTextParser()
    streamed = "".join(parser.feed(piece) for piece in split(text, random.Random(seed)))
    assert streamed == args
    assert parser.name == "get_weather"
    assert parser.arguments_complete and parser.done


def test_text_parser_other_key_order_and_truncation() -> None:
    parser = ToolCallTextParser()
    parser.feed('{"arguments":{"a":1},"extra":3.5,"name":"f"}')
    assert (parser.name, parser.arguments, parser.done) == ("f", '{"a":1}', True)
    cut = ToolCallTextParser()
    cut.feed('{"name":"f","arguments":{"a":"unfin')
    assert cut.name == "f" and cut.arguments == '{"a":"unfin' and not cut.arguments_complete


def test_forced_tool_stream_entries() -> None:
    forced = ForcedTool((ToolSpec.from_openai(TOOLS[0]), ToolSpec.from_openai(TOOLS[1])))
    stream = ForcedToolStream(forced, call_id="call_x")
    entries: list[dict[str, Any]] = []
    text = '{"arguments":{"city":"Oslo"},"name":"get_weather"}'
    for piece in split(text, random.Random(1)):
        entries.extend(stream.feed(piece))
    entries.extend(stream.finish())
    # arguments written before the name are held back until the name is known
    assert entries[0] == {
        "index": 0,
        "id": "call_x",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert "".join(e["function"]["arguments"] for e in entries[1:]) == '{"city":"Oslo"}'
    named = ForcedToolStream(ForcedTool((ToolSpec.from_openai(TOOLS[0]),)))
    first = named.feed('{"na')
    assert first[0]["function"]["name"] == "get_weather"  # announced at once when forced by name
