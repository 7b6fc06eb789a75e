"""What a patched ``openai`` call records on its span: the response (usage, finish reasons, tool
calls, outputs when captured), or, for a streaming call, each chunk through a wrapped stream that
ends the span when the stream is exhausted, closed or fails. Used by
:mod:`sagellm_obs.app.openai_instrumentation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from sagellm_obs import semconv as sc
from sagellm_obs.app.genai import ClientOperation
from sagellm_obs.app.streamer import TRACED_OPERATION_ATTR, parse_chunk
from sagellm_obs.protocol.toolcalls import ToolCallAccumulator

_log = logging.getLogger(__name__)


def to_json(value: Any) -> str | None:
    try:
        return json.dumps(value, default=str)
    except Exception:
        return None


def finish_call(result: Any, op: ClientOperation, *, is_async: bool) -> Any:
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
        out_details = getattr(usage, "completion_tokens_details", None)
        op.usage(
            getattr(usage, "prompt_tokens", None),
            getattr(usage, "completion_tokens", None),
            getattr(details, "cached_tokens", None) if details is not None else None,
            reasoning=getattr(out_details, "reasoning_tokens", None) if out_details else None,
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
        op.content(sc.GEN_AI_OUTPUT_MESSAGES, to_json(outputs))


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
                op.usage(
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cached_tokens,
                    reasoning=usage.reasoning_tokens,
                )
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
                op.content(sc.GEN_AI_OUTPUT_MESSAGES, to_json([message]))
        if error is not None:
            op.fail(error)
        elif cancelled:
            op.cancel()
        else:
            op.end()


class _TracedStreamBase:
    """What the sync and async traced streams share: the wrapped stream and its recorder,
    ``isinstance`` as the original, delegation of other attributes, the end on collection."""

    def __init__(self, stream: Any, op: ClientOperation) -> None:
        self._stream = stream
        self._recorder = _ChunkRecorder(op)
        setattr(self, TRACED_OPERATION_ATTR, op)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._stream)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_sagellm") or name in ("_stream", "_recorder"):
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._recorder.end(cancelled=self._recorder.finish_reason is None)


class TracedStream(_TracedStreamBase):
    """A traced ``openai.Stream``: iterate it as the original; the span ends with the stream.

    Attributes other than iteration and closing are delegated to the wrapped stream, and
    ``isinstance(stream, openai.Stream)`` still holds.
    """

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


class TracedAsyncStream(_TracedStreamBase):
    """A traced ``openai.AsyncStream`` (see :class:`TracedStream`)."""

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
