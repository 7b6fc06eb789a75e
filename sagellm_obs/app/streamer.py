"""``TokenStreamer``: consume a token stream with callbacks, cancellation, tool calls and a span.

Sources (sync or async iterables of):

* protocol ``StreamEvent``s from our engine (``InstrumentedEngine.stream`` / ``Engine.stream``);
* openai ``ChatCompletionChunk`` or ``Completion`` chunks (a ``Stream`` / ``AsyncStream`` from an
  OpenAI-compatible endpoint), or the same chunks as plain dicts.

.. code-block:: python

    stream = client.chat.completions.create(model=m, messages=msgs, stream=True)
    streamer = TokenStreamer(stream, on_token=print)
    for event in streamer:  # TokenEvent: token, tool_call_chunk, tool_call_complete, finish
        if event.type == "tool_call_complete":
            run(event.tool_call.name, event.tool_call.parsed_arguments())
    streamer.content, streamer.output_tokens, streamer.tool_calls, streamer.finish_reason

Iterating yields :class:`TokenEvent`\\ s: ``token`` (new text), ``tool_call_chunk`` (an
``arguments`` fragment of a call; calls are keyed by ``index``, so interleaved parallel calls are
kept apart), ``tool_call_complete`` (each call, in index order, once the finish reason arrives),
then one ``finish`` (finish reason and usage). ``on_token`` gets each new text, ``on_event`` every
event.

:meth:`TokenStreamer.cancel` stops the iteration before the next event and closes the source:
an engine stream aborts its vLLM request (recorded as cancelled), an HTTP stream closes the
connection, which our server turns into an abort. Leaving the loop early (``break``) does the same.
In async iteration the stop takes effect when the pending chunk arrives.

Telemetry: each stream is one CLIENT span ``"{operation} {model}"`` (back-dated to the streamer's
creation) with a ``gen_ai.first_chunk`` event, usage, finish reasons, ``sagellm.cancelled`` and
tool-call names, and the GenAI client metrics (see :mod:`~sagellm_obs.app.genai`). A stream already
traced by :func:`~sagellm_obs.app.instrument_openai` keeps that span and gets no second one.
Content (text, tool arguments) goes on the span only with content capture on.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import metrics
from opentelemetry import trace as otel_trace

from sagellm_obs import semconv as sc
from sagellm_obs.app.genai import ClientOperation
from sagellm_obs.app.providers import Providers
from sagellm_obs.protocol.toolcalls import ToolCall, ToolCallAccumulator
from sagellm_obs.telemetry import Telemetry

_log = logging.getLogger(__name__)

EventType = Literal["token", "tool_call_chunk", "tool_call_complete", "finish"]
TRACED_OPERATION_ATTR = "_sagellm_operation"
"""Attribute of a stream already traced by the openai instrumentation (its ClientOperation)."""


@dataclass(frozen=True)
class Usage:
    """Token usage reported by the stream.

    Attributes:
        input_tokens: Prompt tokens.
        output_tokens: Generated tokens.
        cached_tokens: Prompt tokens served from a prefix cache, when reported.
        reasoning_tokens: Output tokens spent reasoning, when reported.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(frozen=True)
class TokenEvent:
    """One event of a :class:`TokenStreamer`.

    Attributes:
        type: ``token``, ``tool_call_chunk``, ``tool_call_complete`` or ``finish``.
        text: The new text (``token``).
        tool_call: The call (``tool_call_*``); for chunks, the call assembled so far.
        arguments_delta: The new arguments fragment (``tool_call_chunk``).
        finish_reason: Why generation stopped (``finish``).
        usage: Token usage, when the stream reported it (``finish``).
    """

    type: EventType
    text: str = ""
    tool_call: ToolCall | None = None
    arguments_delta: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass
class _Piece:
    """What one source chunk says, whatever its format."""

    text: str = ""
    tokens: int = 0
    tool_deltas: list[Any] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    response_id: str | None = None
    model: str | None = None
    operation: str | None = None
    error: str | None = None


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    details, reasoning = _get(raw, "prompt_tokens_details"), _get(raw, "completion_tokens_details")
    return Usage(
        input_tokens=_int(_get(raw, "prompt_tokens")),
        output_tokens=_int(_get(raw, "completion_tokens")),
        cached_tokens=_int(_get(details, "cached_tokens")) if details is not None else None,
        reasoning_tokens=_int(_get(reasoning, "reasoning_tokens")) if reasoning else None,
    )


def parse_chunk(chunk: Any) -> _Piece:
    """Normalise one chunk (protocol stream event, or OpenAI chat/text chunk)."""
    event = _get(chunk, "event")
    if event in ("start", "delta", "end"):
        if event == "delta":
            content = _get(chunk, "content") or ""
            return _Piece(text=content, tokens=len(_get(chunk, "content_tokens") or ()))
        if event == "end":
            reason = _get(chunk, "finish_reason")
            error = _get(chunk, "error")
            return _Piece(
                finish_reason=reason,
                usage=Usage(
                    input_tokens=_int(_get(chunk, "prompt_tokens")),
                    output_tokens=len(_get(chunk, "output_tokens") or ()),
                ),
                response_id=_get(chunk, "request_id"),
                error=str(_get(error, "code") or "error") if reason == "error" else None,
            )
        return _Piece(response_id=_get(chunk, "request_id"))
    obj = _get(chunk, "object")
    piece = _Piece(
        response_id=_get(chunk, "id"),
        model=_get(chunk, "model"),
        usage=_usage(_get(chunk, "usage")),
        operation=sc.OP_TEXT_COMPLETION if obj == "text_completion" else sc.OP_CHAT,
    )
    for choice in _get(chunk, "choices") or ():
        if (_get(choice, "index") or 0) != 0:
            continue  # only the first choice is followed
        delta = _get(choice, "delta")
        if delta is not None:
            piece.text = _get(delta, "content") or ""
            piece.tool_deltas = list(_get(delta, "tool_calls") or ()) or None
        else:
            piece.text = _get(choice, "text") or ""
        piece.tokens = 1 if piece.text else 0
        piece.finish_reason = _get(choice, "finish_reason")
    return piece


class TokenStreamer:
    """Iterate a token stream with callbacks, cancellation, tool-call assembly and a client span.

    Args:
        source: A sync or async iterable of engine stream events or OpenAI chunks.
        model: The requested model (default: the one the chunks name).
        operation: ``gen_ai.operation.name`` (default: from the chunks; ``chat``).
        on_token: Called with each new text.
        on_event: Called with every :class:`TokenEvent`.
        trace: Record a span and metrics; None: unless the source is already traced.
        provider_name: ``gen_ai.provider.name`` (default ``openai`` for OpenAI chunks, ``vllm``
            for engine events).
        tracer, tracer_provider, meter_provider, telemetry, capture_content: Where telemetry
            goes (see :mod:`sagellm_obs.app.providers`).
    """

    def __init__(
        self,
        source: Any,
        *,
        model: str | None = None,
        operation: str | None = None,
        on_token: Callable[[str], Any] | None = None,
        on_event: Callable[[TokenEvent], Any] | None = None,
        trace: bool | None = None,
        provider_name: str | None = None,
        tracer: otel_trace.Tracer | None = None,
        tracer_provider: otel_trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        telemetry: Telemetry | None = None,
        capture_content: bool | None = None,
    ) -> None:
        self.source = source
        self.model = model
        self.operation = operation
        self.on_token = on_token
        self.on_event = on_event
        self.provider_name = provider_name
        self.providers = Providers(
            tracer=tracer,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            telemetry=telemetry,
            capture_content=capture_content,
        )
        traced_upstream = getattr(source, TRACED_OPERATION_ATTR, None) is not None
        self.traced = (not traced_upstream) if trace is None else trace
        self.content = ""
        self.token_count = 0
        self.chunk_count = 0
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.response_id: str | None = None
        self.cancelled = False
        self.finished = False
        self.error: BaseException | None = None
        self._tools = ToolCallAccumulator()
        self._tools_done = False
        self._cancel = threading.Event()
        self._closed = False
        self._reading_thread: int | None = None
        self._op: ClientOperation | None = None
        self._t0_ns = time.time_ns()
        self._t0 = time.monotonic()

    # --- results -------------------------------------------------------------------------------
    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tool calls assembled so far, in index order."""
        return self._tools.complete()

    @property
    def output_tokens(self) -> int:
        """Generated tokens: the reported usage, else the tokens (chunks with text) counted."""
        if self.usage is not None and self.usage.output_tokens is not None:
            return self.usage.output_tokens
        return self.token_count

    # --- control -------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop before the next event and close the source (aborts the request upstream).

        Safe from callbacks and other threads. A sync iteration blocked on the network in another
        thread is woken by closing the source.
        """
        self._cancel.set()
        reading = self._reading_thread
        if reading is not None and reading != threading.get_ident() and not self._is_async():
            with contextlib.suppress(Exception):
                self._close_sync()

    def close(self) -> None:
        """Close the source; an unfinished stream counts as cancelled."""
        self._cancel.set()
        self._close_sync()
        self._end_cancelled()

    async def aclose(self) -> None:
        """Close an async source; an unfinished stream counts as cancelled."""
        self._cancel.set()
        await self._close_async()
        self._end_cancelled()

    def __enter__(self) -> TokenStreamer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> TokenStreamer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- iteration -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[TokenEvent]:
        if not hasattr(self.source, "__iter__"):
            raise TypeError("this source is async: use `async for`")
        iterator = iter(self.source)
        try:
            while not self._cancel.is_set():
                self._reading_thread = threading.get_ident()
                try:
                    chunk = next(iterator)
                except StopIteration:
                    break
                except BaseException as exc:
                    if self._cancel.is_set():
                        break  # the read was interrupted by cancel()
                    self._fail(exc)
                    raise
                finally:
                    self._reading_thread = None
                for event in self._handle(chunk):
                    yield event
                    if self._cancel.is_set():
                        break
            if not self._cancel.is_set():
                yield from self._complete()
        finally:
            if not self.finished:
                self._close_sync()
                self._end_cancelled()

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        if not hasattr(self.source, "__aiter__"):
            raise TypeError("this source is sync: use `for`")
        iterator = self.source.__aiter__()
        try:
            while not self._cancel.is_set():
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except BaseException as exc:
                    if self._cancel.is_set():
                        break
                    self._fail(exc)
                    raise
                for event in self._handle(chunk):
                    yield event
                    if self._cancel.is_set():
                        break
            if not self._cancel.is_set():
                for event in self._complete():
                    yield event
        finally:
            if not self.finished:
                with contextlib.suppress(Exception):
                    await self._close_async()
                self._end_cancelled()

    # --- internals -----------------------------------------------------------------------------
    def _is_async(self) -> bool:
        return not hasattr(self.source, "__iter__") and hasattr(self.source, "__aiter__")

    def _operation(self, piece: _Piece | None) -> ClientOperation | None:
        if not self.traced:
            return None
        if self._op is None:
            try:
                operation = self.operation or (piece.operation if piece else None) or sc.OP_CHAT
                provider = self.provider_name or (
                    sc.PROVIDER_NAME if piece is not None and piece.operation is None
                    else sc.PROVIDER_OPENAI
                )  # fmt: skip
                self._op = ClientOperation(
                    self.providers,
                    operation=operation,
                    model=self.model or (piece.model if piece else None),
                    provider_name=provider,
                    stream=True,
                    start_time_ns=self._t0_ns,
                    start_monotonic=self._t0,
                )
            except Exception:
                _log.debug("sagellm-obs: no span for this stream", exc_info=True)
                self.traced = False
                return None
        return self._op

    def _handle(self, chunk: Any) -> list[TokenEvent]:
        piece = parse_chunk(chunk)
        self.chunk_count += 1
        op = self._operation(piece)
        if op is not None:
            op.chunk()
            if piece.response_id or piece.model:
                op.response(piece.response_id, piece.model)
        if piece.response_id and self.response_id is None:
            self.response_id = piece.response_id
        events: list[TokenEvent] = []
        if piece.text:
            self.content += piece.text
            self.token_count += piece.tokens or 1
            events.append(TokenEvent("token", text=piece.text))
        for delta in piece.tool_deltas or ():
            call, fragment = self._tools.add(delta)
            events.append(TokenEvent("tool_call_chunk", tool_call=call, arguments_delta=fragment))
        if piece.usage is not None:
            self.usage = piece.usage
        if piece.finish_reason:
            self.finish_reason = piece.finish_reason
            if op is not None:
                op.finish_reason(piece.finish_reason)
            events.extend(self._complete_tools())
        if piece.error is not None and op is not None:
            op.mark_error(piece.error)
        for event in events:
            self._emit(event)
        return events

    def _complete_tools(self) -> list[TokenEvent]:
        if self._tools_done:
            return []
        self._tools_done = True
        return [TokenEvent("tool_call_complete", tool_call=c) for c in self._tools.complete()]

    def _complete(self) -> list[TokenEvent]:
        events = self._complete_tools()
        for event in events:
            self._emit(event)
        finish = TokenEvent("finish", finish_reason=self.finish_reason, usage=self.usage)
        self._emit(finish)
        self.finished = True
        self._record_end()
        return [*events, finish]

    def _emit(self, event: TokenEvent) -> None:
        if event.type == "token" and self.on_token is not None:
            self.on_token(event.text)
        if self.on_event is not None:
            self.on_event(event)

    def _record_end(self, *, cancelled: bool = False) -> None:
        op = self._operation(None)
        if op is None or op.ended:
            return
        with contextlib.suppress(Exception):
            if self.usage is not None:
                op.usage(
                    self.usage.input_tokens, self.usage.output_tokens, self.usage.cached_tokens
                )
            else:
                op.usage(None, self.token_count)
            calls = self._tools.complete()
            if calls:
                op.tool_calls([c.name for c in calls])
            op.content(sc.GEN_AI_OUTPUT_MESSAGES, self._output_messages(calls))
        if cancelled:
            op.cancel()
        else:
            op.end()

    def _output_messages(self, calls: list[ToolCall]) -> str:
        parts: list[dict[str, Any]] = []
        if self.content:
            parts.append({"type": "text", "content": self.content})
        parts.extend(
            {"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments}
            for c in calls
        )
        message = {"role": "assistant", "parts": parts, "finish_reason": self.finish_reason}
        return json.dumps([message])

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self.finished = True
        op = self._operation(None)
        if op is not None:
            op.fail(exc)

    def _end_cancelled(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.cancelled = True
        self._record_end(cancelled=True)

    def _close_sync(self) -> None:
        if self._closed:
            return
        self._closed = True
        closer = getattr(self.source, "close", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                result = closer()
                if inspect.iscoroutine(result):
                    result.close()  # an async source closed from sync code: nothing to await

    async def _close_async(self) -> None:
        if self._closed:
            return
        self._closed = True
        closer = getattr(self.source, "aclose", None) or getattr(self.source, "close", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                result = closer()
                if inspect.isawaitable(result):
                    await result
