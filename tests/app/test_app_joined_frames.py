"""A tool-using application's real trace, through the store format, as a call tree and breakdown."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from openai import OpenAI

from sagellm_obs import charts
from sagellm_obs import semconv as sc
from sagellm_obs.app import TokenStreamer, instrument_openai, tool_span, trace_protocol
from sagellm_obs.frames import call_tree, load_spans, time_breakdown
from sagellm_obs.store.otlp_json import encode_spans

if TYPE_CHECKING:
    from conftest import Served

pytestmark = pytest.mark.engine

ADD: Any = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "minimum": 0, "maximum": 99},
                "b": {"type": "integer", "minimum": 0, "maximum": 99},
            },
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture
def client(served: Served) -> Iterator[OpenAI]:
    c = OpenAI(base_url=served.url, api_key="unused", max_retries=0, timeout=60)
    handle = instrument_openai(c, telemetry=served.mem.telemetry)
    yield c
    handle.uninstrument()
    c.close()


def test_tool_using_app_as_call_tree_and_breakdown(
    served: Served, client: OpenAI, tmp_path: Path
) -> None:
    tracer = served.mem.telemetry.tracer

    @trace_protocol(tracer=tracer)
    class Calculator:
        def answer(self, question: str) -> str:
            messages: list[Any] = [{"role": "user", "content": question}]
            first = client.chat.completions.create(
                model=served.model,
                messages=messages,
                tools=[ADD],
                tool_choice={"type": "function", "function": {"name": "add"}},
                max_tokens=64,
                extra_headers={"X-Request-Id": "joined-1"},
            )
            (call,) = first.choices[0].message.tool_calls or []
            with tool_span(call, tracer=tracer) as tool:
                args = json.loads(call.function.arguments)
                result = tool.set_result(args["a"] + args["b"])
            messages += [
                first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": str(result)},
            ]
            stream = client.chat.completions.create(
                model=served.model,
                messages=messages,
                max_tokens=6,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers={"X-Request-Id": "joined-2"},
            )
            streamer = TokenStreamer(stream)
            for _ in streamer:
                pass
            return streamer.content

    Calculator().answer("What is 2 + 3?")
    first = served.engine_span("joined-1")
    second = served.engine_span("joined-2")
    trace_id = first.context.trace_id
    assert second.context.trace_id == trace_id
    in_trace = [s for s in served.mem.spans() if s.context.trace_id == trace_id]
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps(encode_spans(in_trace)) + "\n")
    spans = load_spans(path, cache=False)

    tree = call_tree(spans)
    assert tree.select("depth", "category").rows() == [
        (0, "application"),
        (1, "model call"),
        (2, "server"),
        (3, "engine request"),
        (4, "queue"),
        (4, "prefill"),
        (4, "decode"),
        (1, "tool call"),
        (1, "model call"),
        (2, "server"),
        (3, "engine request"),
        (4, "queue"),
        (4, "prefill"),
        (4, "decode"),
    ]
    assert tree["name"][0] == "Calculator.answer"
    assert tree["name"][7] == sc.tool_span_name("add")
    assert tree["offset_s"][0] == 0.0 and (tree["offset_s"] >= 0).all()
    assert (tree["self_s"] >= -1e-6).all()

    bd = time_breakdown(spans)
    assert bd["request_id"].to_list() == ["joined-1", "joined-2"]
    assert bd["stream"].to_list() == [False, True]
    for row in bd.iter_rows(named=True):
        assert row["client_s"] >= row["server_s"] >= row["engine_s"] > 0
        parts = ("network_s", "server_overhead_s", "engine_other_s", "queue_s", "prefill_s")
        total = sum(row[p] for p in (*parts, "decode_s"))
        assert total == pytest.approx(row["client_s"])
    # the charts take the frames as they are
    charts.trace_timeline(tree).to_dict()
    charts.time_breakdown_chart(bd).to_dict()
