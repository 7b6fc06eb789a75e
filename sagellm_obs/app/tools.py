"""``tool_span``: the span of one tool execution, as the GenAI conventions describe it.

.. code-block:: python

    from sagellm_obs.app import tool_span

    call = response.choices[0].message.tool_calls[0]  # or a TokenStreamer's ToolCall
    with tool_span(call) as tool:  # or tool_span("get_weather", call_id=..., arguments=...)
        result = get_weather(**json.loads(call.function.arguments))
        tool.set_result(result)

The span is named ``execute_tool {gen_ai.tool.name}``, kind INTERNAL, parented on the current span
(an application call traced by :func:`~sagellm_obs.app.trace_protocol`, typically) and current
inside the block, with ``gen_ai.operation.name = execute_tool``, ``gen_ai.tool.name``,
``gen_ai.tool.call.id``, ``gen_ai.tool.type`` and ``gen_ai.tool.description`` when given. The
arguments and the result are content: they are recorded (``gen_ai.tool.call.arguments`` /
``.result``, truncated) only with content capture on. An exception leaving the block is recorded
(event, ERROR status, ``error.type``) and re-raised; a cancellation sets ``sagellm.cancelled``.
The frames classify these spans as ``"tool call"`` (:func:`sagellm_obs.frames.call_tree`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from sagellm_obs import semconv as sc
from sagellm_obs.app.providers import Providers
from sagellm_obs.app.traced_call import text_value
from sagellm_obs.protocol.toolcalls import FUNCTION
from sagellm_obs.telemetry import Telemetry

_log = logging.getLogger(__name__)


class ToolSpan:
    """The handle :func:`tool_span` yields.

    Attributes:
        span: The OpenTelemetry span (a non-recording one if telemetry failed).
        name: The tool name.
        call_id: The tool-call id, if known.
        result: What :meth:`set_result` was given.
    """

    def __init__(self, span: trace.Span, name: str, call_id: str | None, capture: bool) -> None:
        self.span = span
        self.name = name
        self.call_id = call_id
        self.capture = capture
        self.result: Any = None

    def set_result(self, value: Any) -> Any:
        """Note the tool's result (its type always; its text with content capture on).

        Returns:
            ``value``, so that ``return tool.set_result(f(...))`` reads naturally.
        """
        self.result = value
        try:
            self.span.set_attribute(sc.SAGELLM_RESULT_TYPE, type(value).__name__)
            if self.capture:
                self.span.set_attribute(sc.GEN_AI_TOOL_CALL_RESULT, _text(value))
        except Exception:
            _log.debug("sagellm-obs: tool result not recorded", exc_info=True)
        return value


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _call_fields(call: Any) -> tuple[str, str | None, Any]:
    """Name, id and arguments of a tool call: a name, our ToolCall, openai's or a dict."""
    if isinstance(call, str):
        return call, None, None
    function = _get(call, "function")
    name = _get(call, "name") or _get(function, "name") or ""
    arguments = _get(call, "arguments")
    if arguments is None:
        arguments = _get(function, "arguments")
    call_id = _get(call, "id")
    return str(name), (str(call_id) if call_id else None), arguments


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        with contextlib.suppress(TypeError, ValueError):
            return text_value(json.dumps(value, default=str))
    return text_value(value)


@contextlib.contextmanager
def tool_span(
    call: Any,
    *,
    call_id: str | None = None,
    arguments: Any = None,
    description: str | None = None,
    tracer: trace.Tracer | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    telemetry: Telemetry | None = None,
    capture_content: bool | None = None,
) -> Iterator[ToolSpan]:
    """Trace one tool execution: the block runs inside an ``execute_tool {name}`` span.

    Args:
        call: The tool name, or a tool call to take the name, id and arguments from (a
            :class:`~sagellm_obs.protocol.toolcalls.ToolCall`, an openai
            ``ChatCompletionMessageToolCall`` or its dict form).
        call_id: The tool-call id (overrides the call's).
        arguments: The arguments, JSON text or an object (overrides the call's); recorded only
            with content capture on.
        description: What the tool does (``gen_ai.tool.description``).
        tracer: Record into this tracer.
        tracer_provider: Else get the tracer from this provider.
        telemetry: Else use this sagellm_obs telemetry (default: the current one, then the
            global provider; see :mod:`sagellm_obs.app.providers`).
        capture_content: Record arguments and result; None follows the telemetry (off by default).

    Yields:
        A :class:`ToolSpan`; call :meth:`ToolSpan.set_result` with the tool's result.
    """
    providers = Providers(
        tracer=tracer,
        tracer_provider=tracer_provider,
        telemetry=telemetry,
        capture_content=capture_content,
    )
    name, found_id, found_args = _call_fields(call)
    call_id = call_id or found_id
    if arguments is None:
        arguments = found_args
    span: trace.Span = trace.INVALID_SPAN
    capture = False
    try:
        capture = providers.capture()
        attrs: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
            sc.GEN_AI_TOOL_NAME: name,
            sc.GEN_AI_TOOL_TYPE: FUNCTION,
        }
        if call_id:
            attrs[sc.GEN_AI_TOOL_CALL_ID] = call_id
        if description:
            attrs[sc.GEN_AI_TOOL_DESCRIPTION] = description
        if capture and arguments is not None:
            attrs[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = (
                text_value(arguments) if isinstance(arguments, str) else _text(arguments)
            )
        span = providers.get_tracer().start_span(
            sc.tool_span_name(name), kind=SpanKind.INTERNAL, attributes=attrs
        )
    except Exception:
        _log.debug("sagellm-obs: tool span not started", exc_info=True)
    handle = ToolSpan(span, name, call_id, capture)
    try:
        with trace.use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield handle
    except (asyncio.CancelledError, GeneratorExit):
        with contextlib.suppress(Exception):
            span.set_attribute(sc.SAGELLM_CANCELLED, True)
        raise
    except BaseException as exc:
        with contextlib.suppress(Exception):
            error = type(exc).__qualname__
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, error))
            span.set_attribute(sc.ERROR_TYPE, error)
        raise
    finally:
        with contextlib.suppress(Exception):
            span.end()
