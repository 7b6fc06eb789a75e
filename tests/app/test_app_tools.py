"""``tool_span``: the execute_tool span of a tool run by the application, content off by default."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from sagellm_obs import semconv as sc
from sagellm_obs.app import ToolCall, tool_span, trace_protocol

if TYPE_CHECKING:
    from conftest import Mem


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_tool_span_under_an_application_call(mem: Mem) -> None:
    call = ToolCall(index=0, id="call_1", name="add", arguments='{"a": 2, "b": 3}')

    @trace_protocol(tracer=mem.telemetry.tracer)
    class Calculator:
        def solve(self, question: str) -> int:
            args = call.parsed_arguments()
            with tool_span(call, tracer=mem.telemetry.tracer) as tool:
                return int(tool.set_result(args["a"] + args["b"]))

    assert Calculator().solve("2 + 3?") == 5
    (tool,) = mem.named("execute_tool add")
    (root,) = mem.named("Calculator.solve")
    assert tool.kind == SpanKind.INTERNAL
    assert tool.parent is not None and tool.parent.span_id == root.context.span_id
    assert attrs(tool) == {
        sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
        sc.GEN_AI_TOOL_NAME: "add",
        sc.GEN_AI_TOOL_TYPE: "function",
        sc.GEN_AI_TOOL_CALL_ID: "call_1",
        sc.SAGELLM_RESULT_TYPE: "int",
    }  # no arguments, no result: content is off by default


def test_openai_style_call_and_content_capture(mem: Mem) -> None:
    call = {"id": "call_9", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    with tool_span(
        call, tracer=mem.telemetry.tracer, capture_content=True, description="Forecast."
    ) as tool:
        tool.set_result({"city": "Paris", "sky": "clear"})
    (span,) = mem.named("execute_tool weather")
    a = attrs(span)
    assert a[sc.GEN_AI_TOOL_CALL_ID] == "call_9"
    assert a[sc.GEN_AI_TOOL_DESCRIPTION] == "Forecast."
    assert json.loads(str(a[sc.GEN_AI_TOOL_CALL_ARGUMENTS])) == {"city": "Paris"}
    assert json.loads(str(a[sc.GEN_AI_TOOL_CALL_RESULT])) == {"city": "Paris", "sky": "clear"}


def test_errors_are_recorded_and_re_raised(mem: Mem) -> None:
    with (
        pytest.raises(ZeroDivisionError),
        tool_span("divide", call_id="call_2", tracer=mem.telemetry.tracer),
    ):
        _ = 1 / 0
    (span,) = mem.named("execute_tool divide")
    assert span.status.status_code == StatusCode.ERROR
    assert attrs(span)[sc.ERROR_TYPE] == "ZeroDivisionError"
    assert [e.name for e in span.events] == [sc.EVENT_EXCEPTION]


def test_cancelled_tool(mem: Mem) -> None:
    async def run() -> None:
        with tool_span("slow", tracer=mem.telemetry.tracer):
            await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(run())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (span,) = mem.named("execute_tool slow")
    assert attrs(span)[sc.SAGELLM_CANCELLED] is True
    assert span.status.status_code == StatusCode.UNSET
