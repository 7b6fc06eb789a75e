"""The span of one call traced by :func:`~sagellm_obs.app.trace_protocol`, and its streams.

:class:`CallSpan` records one call (argument summary, result type, errors, cancellation, stream
chunks); :data:`NULL_CALL` stands in when a call must not be traced. A generator or async iterator
a method returns is wrapped in :class:`TracedIterator` / :class:`TracedAsyncIterator`, which end
the span when the stream is exhausted, fails or is closed. :func:`summarize_argument` describes an
argument without its content. Nothing here raises into the traced call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from sagellm_obs import semconv as sc

_log = logging.getLogger(__name__)

_MAX_VALUE_CHARS = 1024
_MAX_ID_CHARS = 256
_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)
_ID_FIELDS = ("request_id", "trace_id")

active_calls: contextvars.ContextVar[frozenset[tuple[int, str]]] = contextvars.ContextVar(
    "sagellm_obs_traced_calls", default=frozenset()
)
"""``(id(object), method name)`` of the traced calls running in this context."""


class NullCall:
    """Stands in for a call that is not traced (nested duplicate, or telemetry failure)."""

    ended = True

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        yield

    def chunk(self, item: Any) -> None:
        return None

    def result(self, value: Any) -> Any:
        return value

    def finish(self, value: Any = None, *, stream: str | None = None) -> None:
        return None

    def fail(self, exc: BaseException) -> None:
        return None

    def cancel(self) -> None:
        return None


NULL_CALL = NullCall()
"""The stand-in for a call that is not traced."""


class CallSpan(NullCall):
    """The span of one traced call."""

    def __init__(self, span: trace.Span, key: tuple[int, str], capture: bool) -> None:
        self.span = span
        self.key = key
        self.capture = capture
        self.start_s = time.monotonic()
        self.chunks = 0
        self.ended = False

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Run a step of the call with the span current and the call marked active."""
        tokens: tuple[Any, Any] | None = None
        try:
            tokens = (
                active_calls.set(active_calls.get() | {self.key}),
                otel_context.attach(trace.set_span_in_context(self.span)),
            )
        except Exception:
            _log.debug("sagellm-obs: could not activate the span", exc_info=True)
        try:
            yield
        finally:
            if tokens is not None:
                with contextlib.suppress(Exception):
                    otel_context.detach(tokens[1])
                with contextlib.suppress(Exception):
                    active_calls.reset(tokens[0])

    def chunk(self, item: Any) -> None:
        try:
            self.chunks += 1
            if self.chunks == 1:
                ttfc = time.monotonic() - self.start_s
                self.span.add_event(sc.EVENT_FIRST_CHUNK, {sc.SAGELLM_STREAM_TTFC: ttfc})
                self.span.set_attribute(sc.SAGELLM_STREAM_TTFC, ttfc)
                self.span.set_attribute(sc.SAGELLM_STREAM_CHUNK_TYPE, type(item).__name__)
        except Exception:
            _log.debug("sagellm-obs: chunk not recorded", exc_info=True)

    def result(self, value: Any) -> Any:
        """End the call with ``value``, or hand the span on to a returned stream."""
        try:
            if isinstance(value, types.GeneratorType):
                return TracedIterator(value, self)
            if hasattr(type(value), "__anext__") and hasattr(type(value), "__aiter__"):
                return TracedAsyncIterator(value, self)
        except Exception:
            _log.debug("sagellm-obs: result not wrapped", exc_info=True)
        self.finish(value)
        return value

    def finish(self, value: Any = None, *, stream: str | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            if stream is not None:
                self.span.set_attribute(sc.SAGELLM_RESULT_TYPE, stream)
                self.span.set_attribute(sc.SAGELLM_STREAM_CHUNKS, self.chunks)
            else:
                self.span.set_attribute(sc.SAGELLM_RESULT_TYPE, type(value).__name__)
                if self.capture:
                    self.span.set_attribute(sc.SAGELLM_RESULT_VALUE, text_value(value))
            self.span.end()
        except Exception:
            _log.debug("sagellm-obs: span not ended", exc_info=True)

    def fail(self, exc: BaseException) -> None:
        if self.ended:
            return
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            self.cancel()
            return
        self.ended = True
        try:
            name = type(exc).__qualname__
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, name))
            self.span.set_attribute(sc.ERROR_TYPE, name)
            if self.chunks:
                self.span.set_attribute(sc.SAGELLM_STREAM_CHUNKS, self.chunks)
            self.span.end()
        except Exception:
            _log.debug("sagellm-obs: span not ended", exc_info=True)

    def cancel(self) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            self.span.set_attribute(sc.SAGELLM_CANCELLED, True)
            self.span.set_attribute(sc.SAGELLM_STREAM_CHUNKS, self.chunks)
            self.span.end()
        except Exception:
            _log.debug("sagellm-obs: span not ended", exc_info=True)


def summarize_argument(out: dict[str, Any], name: str, value: Any, capture: bool) -> None:
    """Add ``sagellm.arg.<name>.*`` attributes for one argument to ``out``."""
    prefix = f"{sc.SAGELLM_ARG_PREFIX}{name}"
    out[f"{prefix}.type"] = type(value).__name__
    if isinstance(value, _SIZED):
        out[f"{prefix}.size"] = len(value)
    is_id = name == "id" or name.endswith("_id")
    if is_id and isinstance(value, (str, int)) and not isinstance(value, bool):
        out[prefix] = value[:_MAX_ID_CHARS] if isinstance(value, str) else value
    elif value is not None and not isinstance(value, (*_SIZED, int, float, bool)):
        for field in _ID_FIELDS:
            try:
                found = getattr(value, field, None)
            except Exception:
                continue
            if isinstance(found, str):
                out[f"{prefix}.{field}"] = found[:_MAX_ID_CHARS]
    if capture:
        out[f"{prefix}.value"] = text_value(value)


def text_value(value: Any) -> str:
    """``value`` as text for a span (``repr`` unless a string), truncated."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "..."


class TracedIterator:
    """A generator returned by a plain method: the span ends when it is exhausted or closed."""

    def __init__(self, inner: types.GeneratorType[Any, Any, Any], call: NullCall) -> None:
        self._inner = inner
        self._call = call

    def __iter__(self) -> TracedIterator:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        """Send into the wrapped generator."""
        try:
            with self._call.step():
                item = self._inner.send(value)
        except StopIteration:
            self._call.finish(stream="generator")
            raise
        except BaseException as exc:
            self._call.fail(exc)
            raise
        self._call.chunk(item)
        return item

    def throw(self, exc: BaseException) -> Any:
        """Throw into the wrapped generator."""
        try:
            with self._call.step():
                item = self._inner.throw(exc)
        except StopIteration:
            self._call.finish(stream="generator")
            raise
        except BaseException as err:
            self._call.fail(err)
            raise
        self._call.chunk(item)
        return item

    def close(self) -> None:
        """Close the wrapped generator (the span records a cancellation)."""
        try:
            self._inner.close()
        finally:
            self._call.cancel()

    def __getattr__(self, name: str) -> Any:
        if name in ("_inner", "_call"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._call.ended:
                self._call.cancel()


class TracedAsyncIterator:
    """An async iterator returned by a method: the span ends when it is exhausted or closed."""

    def __init__(self, inner: Any, call: NullCall) -> None:
        self._inner = inner
        self._call = call

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            with self._call.step():
                item = await self._inner.__anext__()
        except StopAsyncIteration:
            self._call.finish(stream=type(self._inner).__name__)
            raise
        except BaseException as exc:
            self._call.fail(exc)
            raise
        self._call.chunk(item)
        return item

    async def aclose(self) -> None:
        """Close the wrapped iterator (the span records a cancellation)."""
        try:
            closer = getattr(self._inner, "aclose", None) or getattr(self._inner, "close", None)
            if closer is not None:
                result = closer()
                if inspect.isawaitable(result):
                    await result
        finally:
            self._call.cancel()

    def __getattr__(self, name: str) -> Any:
        if name in ("_inner", "_call"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._call.ended:
                self._call.cancel()
