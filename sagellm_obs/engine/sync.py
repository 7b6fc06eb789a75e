"""A synchronous facade over :class:`InstrumentedEngine` for scripts and notebooks.

vLLM's ``AsyncLLM`` lives on an event loop in a background thread, so this works the same in a
plain script and inside Jupyter (whose own loop is already running).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from opentelemetry import context as otel_context

from sagellm_obs.engine.config import EngineConfig
from sagellm_obs.engine.core import InstrumentedEngine, TokenCallback
from sagellm_obs.protocol import ChatMessage, Request, Response, StreamEvent
from sagellm_obs.telemetry import Telemetry

T = TypeVar("T")
_DONE = object()


async def _async(fn: Any) -> Any:
    return fn()


async def _in_context(coro: Coroutine[Any, Any, T], ctx: otel_context.Context) -> T:
    """Runs ``coro`` under the caller's OpenTelemetry context: the loop thread has its own, and
    the engine parents a request without a ``traceparent`` on the current span."""
    token = otel_context.attach(ctx)
    try:
        return await coro
    finally:
        otel_context.detach(token)


class Engine:
    """Blocking instrumented engine. ``Engine("tiny")`` builds the offline tiny model on first use.

    Args:
        model: Model folder or ``"tiny"``.
        telemetry: From :func:`sagellm_obs.configure`; the current one (or a default) otherwise.
        config: Full engine configuration; ``overrides`` set its fields.
    """

    def __init__(
        self,
        model: str = "tiny",
        *,
        telemetry: Telemetry | None = None,
        config: EngineConfig | None = None,
        **overrides: Any,
    ) -> None:
        cfg = config or EngineConfig(model=model)
        if config is None:
            cfg.model = model
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sagellm-obs-engine", daemon=True
        )
        self._thread.start()
        try:
            self.engine: InstrumentedEngine = self._call(
                InstrumentedEngine.start(cfg, telemetry=telemetry, **overrides)
            )
        except BaseException:
            self._stop_loop()
            raise
        self._closed = False

    @property
    def telemetry(self) -> Telemetry:
        """The telemetry this engine records into."""
        return self.engine.telemetry

    @property
    def model_name(self) -> str:
        """The served model name."""
        return self.engine.model_name

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.submit(coro).result()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the engine's event loop (e.g. a workload runner), under the
        caller's OpenTelemetry context."""
        return asyncio.run_coroutine_threadsafe(
            _in_context(coro, otel_context.get_current()), self._loop
        )

    def generate(self, request: Request | dict[str, Any]) -> Response:
        """Run one request to completion (see :meth:`InstrumentedEngine.generate`)."""
        return self._call(self.engine.generate(request))

    def generate_batch(self, requests: Sequence[Request | dict[str, Any]]) -> list[Response]:
        """Run requests concurrently; responses in input order."""
        return self._call(self.engine.generate_batch(requests))

    def completion(self, content: str, *, max_tokens: int = 64, **params: Any) -> Response:
        """Text completion."""
        out = self._call(self.engine.completion(content, max_tokens=max_tokens, **params))
        assert isinstance(out, Response)
        return out

    def chat_completion(
        self,
        messages: Sequence[ChatMessage | dict[str, Any]],
        *,
        max_tokens: int = 64,
        **params: Any,
    ) -> Response:
        """Chat completion."""
        out = self._call(self.engine.chat_completion(messages, max_tokens=max_tokens, **params))
        assert isinstance(out, Response)
        return out

    def stream(
        self, request: Request | dict[str, Any], *, on_token: TokenCallback | None = None
    ) -> Iterator[StreamEvent]:
        """Iterate the stream's events; closing the iterator early cancels the request."""
        events: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            try:
                async for event in self.engine.stream(request, on_token=on_token):
                    events.put(event)
            except BaseException as exc:
                events.put(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            finally:
                events.put(_DONE)

        future = self.submit(pump())
        done = False
        try:
            while True:
                item = events.get()
                if item is _DONE:
                    done = True
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not done:
                future.cancel()
                # Wait until the cancellation is recorded and vLLM has aborted the request.
                while events.get() is not _DONE:
                    pass

    def abort(self, request_id: str) -> None:
        """Abort a running request."""
        self._call(self.engine.abort(request_id))

    def flush(self) -> None:
        """Push pending telemetry to every exporter."""
        self.engine.telemetry.flush()

    def close(self) -> None:
        """Stop vLLM, flush telemetry and stop the loop thread."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        try:
            self._call(_async(self.engine.shutdown))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
