"""``instrument_openai()``: GenAI CLIENT spans and metrics for the official ``openai`` client.

.. code-block:: python

    from openai import OpenAI
    from sagellm_obs.app import instrument_openai

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    with instrument_openai(client):  # or keep the handle and call .uninstrument()
        client.chat.completions.create(model="tiny-llama", messages=[...])

Patched: ``chat.completions.create`` and ``completions.create``, sync (``OpenAI``) and async
(``AsyncOpenAI``), streaming or not -- of one client (instance attributes on its resources) or,
with ``client=None``, of every client (the ``Completions``/``AsyncCompletions`` resource classes).
No ``wrapt`` needed: plain attribute patching, undone by :meth:`OpenAIInstrumentation.uninstrument`.
Instrumenting something already instrumented is a no-op (no double spans).

Each call gets a CLIENT span ``"chat {model}"`` / ``"text_completion {model}"`` with the GenAI
request attributes (``gen_ai.request.*``, ``server.address``/``port``), the response id/model,
finish reasons and usage (``gen_ai.usage.*``, cache reads from
``prompt_tokens_details.cached_tokens``), tool-call names, and the ``gen_ai.client.*`` metrics. The
span is current during the HTTP call and its W3C ``traceparent`` is added to the request headers
(``extra_headers``), so our server's HTTP span and the engine's spans join the client's trace (an
explicit ``traceparent`` in ``extra_headers`` becomes the client span's parent). A streaming call
returns a wrapped ``Stream``/``AsyncStream`` (``isinstance`` still holds; other attributes are
delegated) that records the first chunk and ends the span when the stream is exhausted, closed
(recorded as ``sagellm.cancelled``) or fails. Prompts and outputs go on the span only with content
capture on (``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.tool.definitions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sagellm_obs import semconv as sc
from sagellm_obs.app.genai import ClientOperation
from sagellm_obs.app.providers import Providers
from sagellm_obs.app.streamer import TRACED_OPERATION_ATTR, parse_chunk
from sagellm_obs.protocol.toolcalls import ToolCallAccumulator
from sagellm_obs.telemetry import Telemetry

_log = logging.getLogger(__name__)

_MARK = "__sagellm_openai__"
_PROPAGATOR = TraceContextTextMapPropagator()
_lock = threading.Lock()


@dataclass
class _Patch:
    owner: Any  # a resource class, or a resource instance
    original: Any
    wrapper: Any
    on_instance: bool


@dataclass
class OpenAIInstrumentation:
    """The handle :func:`instrument_openai` returns; a context manager that uninstruments."""

    patches: list[_Patch] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Whether this handle still has patches in place."""
        return bool(self.patches)

    def uninstrument(self) -> None:
        """Undo the patches this handle made (safe to call twice)."""
        with _lock:
            for patch in reversed(self.patches):
                with contextlib.suppress(Exception):
                    if patch.on_instance:
                        if patch.owner.__dict__.get("create") is patch.wrapper:
                            del patch.owner.create
                    elif patch.owner.__dict__.get("create") is patch.wrapper:
                        setattr(patch.owner, "create", patch.original)  # noqa: B010
            self.patches.clear()

    def __enter__(self) -> OpenAIInstrumentation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstrument()


def instrument_openai(
    client: Any = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    telemetry: Telemetry | None = None,
    capture_content: bool | None = None,
) -> OpenAIInstrumentation:
    """Trace the completions calls of one ``openai`` client, or of all of them.

    Args:
        client: An ``OpenAI`` or ``AsyncOpenAI`` client; None patches the resource classes.
        tracer_provider: Where spans go; default the current sagellm_obs telemetry, else the
            global provider (resolved at each call).
        meter_provider: Where the ``gen_ai.client.*`` metrics go (same default).
        telemetry: A sagellm_obs telemetry to use for both.
        capture_content: Record prompts and outputs; None follows the telemetry (off by default).

    Returns:
        A handle: ``uninstrument()`` it, or use it as a context manager.
    """
    providers = Providers(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        telemetry=telemetry,
        capture_content=capture_content,
    )
    handle = OpenAIInstrumentation()
    with _lock:
        for owner, operation, is_async, on_instance in _targets(client):
            current = owner.__dict__.get("create") if on_instance else owner.__dict__["create"]
            resolved = getattr(owner, "create", None)
            if getattr(current, _MARK, False) or getattr(resolved, _MARK, False):
                continue  # already instrumented
            original = resolved if on_instance else current
            if original is None:
                continue
            wrapper = _wrapper(original, operation, is_async, providers, bound=on_instance)
            setattr(owner, "create", wrapper)  # noqa: B010
            handle.patches.append(_Patch(owner, original, wrapper, on_instance))
    return handle


def _targets(client: Any) -> list[tuple[Any, str, bool, bool]]:
    from openai.resources import completions as text
    from openai.resources.chat.completions import completions as chat

    if client is None:
        return [
            (chat.Completions, sc.OP_CHAT, False, False),
            (chat.AsyncCompletions, sc.OP_CHAT, True, False),
            (text.Completions, sc.OP_TEXT_COMPLETION, False, False),
            (text.AsyncCompletions, sc.OP_TEXT_COMPLETION, True, False),
        ]
    chat_res, text_res = client.chat.completions, client.completions
    return [
        (chat_res, sc.OP_CHAT, isinstance(chat_res, chat.AsyncCompletions), True),
        (text_res, sc.OP_TEXT_COMPLETION, isinstance(text_res, text.AsyncCompletions), True),
    ]


def _wrapper(
    original: Callable[..., Any],
    operation: str,
    is_async: bool,
    providers: Providers,
    *,
    bound: bool,
) -> Callable[..., Any]:
    wrapper: Callable[..., Any]
    if is_async:

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            resource = getattr(original, "__self__", None) if bound else (args[0] if args else None)
            op = _start(resource, kwargs, operation, providers)
            if op is None:
                return await original(*args, **kwargs)
            try:
                with op.activated():
                    result = await original(*args, **kwargs)
            except BaseException as exc:
                op.fail(exc)
                raise
            return _finish(result, op, is_async=True)

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            resource = getattr(original, "__self__", None) if bound else (args[0] if args else None)
            op = _start(resource, kwargs, operation, providers)
            if op is None:
                return original(*args, **kwargs)
            try:
                with op.activated():
                    result = original(*args, **kwargs)
            except BaseException as exc:
                op.fail(exc)
                raise
            return _finish(result, op, is_async=False)

    functools.update_wrapper(wrapper, original)
    setattr(wrapper, _MARK, True)
    return wrapper


# --- recording ----------------------------------------------------------------------------------
def _given(value: Any) -> Any:
    """A plain request value, or None for openai's NOT_GIVEN/omit sentinels and other objects."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _server(resource: Any) -> tuple[str | None, int | None]:
    try:
        url = resource._client.base_url
        port = url.port or {"https": 443, "http": 80}.get(url.scheme)
        return str(url.host) or None, int(port) if port else None
    except Exception:
        return None, None


def _start(
    resource: Any, kwargs: dict[str, Any], operation: str, providers: Providers
) -> ClientOperation | None:
    """Start the span and inject its traceparent into ``kwargs["extra_headers"]``."""
    try:
        stop = _given(kwargs.get("stop"))
        choices = _given(kwargs.get("n"))
        host, port = _server(resource)
        attrs = {
            sc.GEN_AI_REQUEST_MAX_TOKENS: _given(kwargs.get("max_completion_tokens"))
            or _given(kwargs.get("max_tokens")),
            sc.GEN_AI_REQUEST_TEMPERATURE: _given(kwargs.get("temperature")),
            sc.GEN_AI_REQUEST_TOP_P: _given(kwargs.get("top_p")),
            sc.GEN_AI_REQUEST_SEED: _given(kwargs.get("seed")),
            sc.GEN_AI_REQUEST_FREQUENCY_PENALTY: _given(kwargs.get("frequency_penalty")),
            sc.GEN_AI_REQUEST_PRESENCE_PENALTY: _given(kwargs.get("presence_penalty")),
            sc.GEN_AI_REQUEST_STOP_SEQUENCES: [stop] if isinstance(stop, str) else stop,
            sc.GEN_AI_REQUEST_CHOICE_COUNT: choices if choices not in (None, 1) else None,
            sc.SERVER_ADDRESS: host,
            sc.SERVER_PORT: port,
        }
        headers = dict(kwargs.get("extra_headers") or {})
        parent = None
        if any(k.lower() == "traceparent" for k in headers):
            carrier = {k.lower(): str(v) for k, v in headers.items() if isinstance(v, str)}
            parent = _PROPAGATOR.extract(carrier)
            for key in [k for k in headers if k.lower() in ("traceparent", "tracestate")]:
                del headers[key]
        op = ClientOperation(
            providers,
            operation=operation,
            model=_given(kwargs.get("model")),
            provider_name=sc.PROVIDER_OPENAI,
            attributes=attrs,
            stream=bool(_given(kwargs.get("stream"))),
            context=parent,
        )
        if op.capture_content:
            messages = kwargs.get("messages") if operation == sc.OP_CHAT else kwargs.get("prompt")
            op.content(sc.GEN_AI_INPUT_MESSAGES, _json(messages))
            tools = kwargs.get("tools")
            if isinstance(tools, (list, tuple)):
                op.content(sc.GEN_AI_TOOL_DEFINITIONS, _json(tools))
        _PROPAGATOR.inject(headers, context=op.context())
        kwargs["extra_headers"] = headers
        return op
    except Exception:
        _log.debug("sagellm-obs: openai call not traced", exc_info=True)
        return None


def _json(value: Any) -> str | None:
    try:
        return json.dumps(value, default=str)
    except Exception:
        return None


def _finish(result: Any, op: ClientOperation, *, is_async: bool) -> Any:
    try:
        import openai

        if op.stream and isinstance(result, (openai.Stream, openai.AsyncStream)):
            return TracedAsyncStream(result, op) if is_async else TracedStream(result, op)
        _record_response(result, op)
    except Exception:
        _log.debug("sagellm-obs: response not recorded", exc_info=True)
    op.end()
    return result


def _record_response(result: Any, op: ClientOperation) -> None:
    """Response attributes of a (non-streamed) ``ChatCompletion`` or ``Completion``."""
    op.response(getattr(result, "id", None), getattr(result, "model", None))
    usage = getattr(result, "usage", None)
    if usage is not None:
        details = getattr(usage, "prompt_tokens_details", None)
        op.usage(
            getattr(usage, "prompt_tokens", None),
            getattr(usage, "completion_tokens", None),
            getattr(details, "cached_tokens", None) if details is not None else None,
        )
    names: list[str] = []
    outputs: list[dict[str, Any]] = []
    for choice in getattr(result, "choices", None) or ():
        op.finish_reason(getattr(choice, "finish_reason", None))
        message = getattr(choice, "message", None)
        parts: list[dict[str, Any]] = []
        text = getattr(message, "content", None) if message is not None else None
        if text is None:
            text = getattr(choice, "text", None)
        if text:
            parts.append({"type": "text", "content": text})
        for call in (getattr(message, "tool_calls", None) or ()) if message is not None else ():
            fn = getattr(call, "function", None)
            name = str(getattr(fn, "name", "") or "")
            names.append(name)
            parts.append(
                {
                    "type": "tool_call",
                    "id": getattr(call, "id", None),
                    "name": name,
                    "arguments": getattr(fn, "arguments", None),
                }
            )
        outputs.append(
            {
                "role": "assistant",
                "parts": parts,
                "finish_reason": getattr(choice, "finish_reason", None),
            }
        )
    if names:
        op.tool_calls(names)
    if op.capture_content:
        op.content(sc.GEN_AI_OUTPUT_MESSAGES, _json(outputs))


class _ChunkRecorder:
    """What a traced stream's chunks say: response id/model, finish reasons, usage, tool calls."""

    def __init__(self, op: ClientOperation) -> None:
        self.op = op
        self.text: list[str] = []
        self.tools = ToolCallAccumulator()
        self.finish_reason: str | None = None

    def chunk(self, chunk: Any) -> None:
        op = self.op
        try:
            op.chunk()
            piece = parse_chunk(chunk)
            if piece.response_id or piece.model:
                op.response(piece.response_id, piece.model)
            if piece.text and op.capture_content:
                self.text.append(piece.text)
            for delta in piece.tool_deltas or ():
                self.tools.add(delta)
            if piece.finish_reason:
                self.finish_reason = piece.finish_reason
                op.finish_reason(piece.finish_reason)
            if piece.usage is not None:
                usage = piece.usage
                op.usage(usage.input_tokens, usage.output_tokens, usage.cached_tokens)
        except Exception:
            _log.debug("sagellm-obs: chunk not recorded", exc_info=True)

    def end(self, *, cancelled: bool = False, error: BaseException | None = None) -> None:
        op = self.op
        if op.ended:
            return
        with contextlib.suppress(Exception):
            calls = self.tools.complete()
            if calls:
                op.tool_calls([c.name for c in calls])
            if op.capture_content:
                parts: list[dict[str, Any]] = []
                if self.text:
                    parts.append({"type": "text", "content": "".join(self.text)})
                parts.extend(
                    {"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments}
                    for c in calls
                )
                message = {"role": "assistant", "parts": parts, "finish_reason": self.finish_reason}
                op.content(sc.GEN_AI_OUTPUT_MESSAGES, _json([message]))
        if error is not None:
            op.fail(error)
        elif cancelled:
            op.cancel()
        else:
            op.end()


class TracedStream:
    """A traced ``openai.Stream``: iterate it as the original; the span ends with the stream.

    Attributes other than iteration and closing are delegated to the wrapped stream, and
    ``isinstance(stream, openai.Stream)`` still holds.
    """

    def __init__(self, stream: Any, op: ClientOperation) -> None:
        self._stream = stream
        self._recorder = _ChunkRecorder(op)
        setattr(self, TRACED_OPERATION_ATTR, op)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._stream)

    def __iter__(self) -> TracedStream:
        return self

    def __next__(self) -> Any:
        try:
            chunk = next(self._stream)
        except StopIteration:
            self._recorder.end()
            raise
        except BaseException as exc:
            self._recorder.end(error=exc)
            raise
        self._recorder.chunk(chunk)
        return chunk

    def close(self) -> None:
        """Close the HTTP response; before the end of the stream, a cancellation."""
        try:
            self._stream.close()
        finally:
            self._recorder.end(cancelled=True)

    def __enter__(self) -> TracedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_sagellm") or name in ("_stream", "_recorder"):
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._recorder.end(cancelled=self._recorder.finish_reason is None)


class TracedAsyncStream:
    """A traced ``openai.AsyncStream`` (see :class:`TracedStream`)."""

    def __init__(self, stream: Any, op: ClientOperation) -> None:
        self._stream = stream
        self._recorder = _ChunkRecorder(op)
        setattr(self, TRACED_OPERATION_ATTR, op)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._stream)

    def __aiter__(self) -> TracedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            self._recorder.end()
            raise
        except asyncio.CancelledError:
            self._recorder.end(cancelled=True)
            raise
        except BaseException as exc:
            self._recorder.end(error=exc)
            raise
        self._recorder.chunk(chunk)
        return chunk

    async def close(self) -> None:
        """Close the HTTP response; before the end of the stream, a cancellation."""
        try:
            await self._stream.close()
        finally:
            self._recorder.end(cancelled=True)

    async def aclose(self) -> None:
        """Same as :meth:`close`."""
        await self.close()

    async def __aenter__(self) -> TracedAsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_sagellm") or name in ("_stream", "_recorder"):
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._recorder.end(cancelled=self._recorder.finish_reason is None)
