"""One GenAI client operation: its CLIENT span and its ``gen_ai.client.*`` metric points.

:class:`ClientOperation` is shared by :mod:`~sagellm_obs.app.openai_instrumentation` and
:mod:`~sagellm_obs.app.streamer`. The span is named ``"{operation} {model}"`` (kind CLIENT) and
carries the GenAI request/response attributes; a stream adds a ``gen_ai.first_chunk`` event and
``gen_ai.response.time_to_first_chunk``. When the operation ends it records
``gen_ai.client.inference.duration`` (with ``error.type`` on failure), the token histograms
``gen_ai.client.inference.operation.{input,output}_tokens`` and counters
``gen_ai.client.inference.usage.*`` and, for streams,
``gen_ai.client.inference.time_to_first_chunk`` and ``time_per_output_chunk`` (or the legacy
``gen_ai.client.operation.*`` / ``gen_ai.client.token.usage`` names, see
:func:`sagellm_obs.semconv.genai_semconv_mode`).

Every method swallows (and logs) its own failures: telemetry never breaks the caller.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from sagellm_obs import semconv as sc
from sagellm_obs.app.providers import ClientInstruments, Providers

_log = logging.getLogger(__name__)


class ClientOperation:
    """The span and metrics of one client call (``chat``, ``text_completion``).

    Args:
        providers: Where the span and metrics go.
        operation: ``gen_ai.operation.name``.
        model: The requested model (may be updated later with :meth:`set_model`).
        provider_name: ``gen_ai.provider.name``.
        attributes: More request attributes for the span (None values are dropped).
        stream: Whether the response is streamed.
        context: Parent context; default the current one.
        start_time_ns: Back-date the span to this epoch time (with ``start_monotonic``).
        start_monotonic: ``time.monotonic()`` at that same moment (durations count from it).
    """

    def __init__(
        self,
        providers: Providers,
        *,
        operation: str,
        model: str | None,
        provider_name: str,
        attributes: Mapping[str, Any] | None = None,
        stream: bool = False,
        context: otel_context.Context | None = None,
        start_time_ns: int | None = None,
        start_monotonic: float | None = None,
    ) -> None:
        self.operation = operation
        self.model = model or ""
        self.stream = stream
        self.capture_content = providers.capture()
        self.start_s = time.monotonic() if start_monotonic is None else start_monotonic
        self.first_chunk_s: float | None = None
        self.last_chunk_s: float | None = None
        self.chunks = 0
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cached_tokens: int | None = None
        self.cache_write_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        # The engine's own stream is text; a remote provider's modality is not known.
        self.modality = (
            sc.TOKEN_MODALITY_TEXT
            if provider_name == sc.PROVIDER_NAME
            else sc.TOKEN_MODALITY_UNKNOWN
        )
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []
        self.cancelled = False
        self.error_type: str | None = None
        self.ended = False
        self._lock = threading.Lock()
        self._metric_attrs: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: operation,
            sc.GEN_AI_PROVIDER_NAME: provider_name,
        }
        attrs: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: operation,
            sc.GEN_AI_PROVIDER_NAME: provider_name,
            sc.GEN_AI_REQUEST_STREAM: stream,
        }
        if model:
            attrs[sc.GEN_AI_REQUEST_MODEL] = model
            self._metric_attrs[sc.GEN_AI_REQUEST_MODEL] = model
        for key, value in (attributes or {}).items():
            if value is not None:
                attrs[key] = value
                if key in (sc.SERVER_ADDRESS, sc.SERVER_PORT):
                    self._metric_attrs[key] = value
        self.instruments: ClientInstruments | None = None
        try:
            self.instruments = providers.instruments()
        except Exception:
            _log.debug("sagellm-obs: no client instruments", exc_info=True)
        self.span: trace.Span = trace.INVALID_SPAN
        try:
            self.span = providers.get_tracer().start_span(
                sc.request_span_name(operation, self.model),
                context=context,
                kind=SpanKind.CLIENT,
                attributes=attrs,
                start_time=start_time_ns,
            )
        except Exception:
            _log.debug("sagellm-obs: could not start the client span", exc_info=True)

    # --- context -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        """Make the span the current one inside the block (for nested spans and propagation)."""
        token = None
        with contextlib.suppress(Exception):
            token = otel_context.attach(trace.set_span_in_context(self.span))
        try:
            yield
        finally:
            if token is not None:
                with contextlib.suppress(Exception):
                    otel_context.detach(token)

    def context(self) -> otel_context.Context:
        """A context whose current span is this operation's span."""
        return trace.set_span_in_context(self.span)

    # --- recording -----------------------------------------------------------------------------
    def set_model(self, model: str | None) -> None:
        """Set the model when it is only known from the response (and name the span after it)."""
        if not model or self.ended:
            return
        with contextlib.suppress(Exception):
            if not self.model:
                self.model = model
                self.span.update_name(sc.request_span_name(self.operation, model))
                self.span.set_attribute(sc.GEN_AI_REQUEST_MODEL, model)
                self._metric_attrs[sc.GEN_AI_REQUEST_MODEL] = model
            if self.response_model is None:
                self.response_model = model
                self.span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, model)
                self._metric_attrs[sc.GEN_AI_RESPONSE_MODEL] = model

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set span attributes (None values are skipped)."""
        if self.ended:
            return
        with contextlib.suppress(Exception):
            for key, value in attributes.items():
                if value is not None:
                    self.span.set_attribute(key, value)

    def chunk(self) -> None:
        """Note one streamed chunk: the first one adds the first-chunk event and metric."""
        if self.ended:
            return
        try:
            now = time.monotonic()
            with self._lock:
                self.chunks += 1
                first = self.first_chunk_s is None
                previous = self.last_chunk_s
                self.last_chunk_s = now
                if first:
                    self.first_chunk_s = now
            if first:
                ttfc = now - self.start_s
                self.span.add_event(sc.EVENT_FIRST_CHUNK, {sc.SAGELLM_STREAM_TTFC: ttfc})
                self.span.set_attribute(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, ttfc)
                self.span.set_attribute(sc.SAGELLM_STREAM_TTFC, ttfc)
                if self.instruments is not None:
                    self.instruments.time_to_first_chunk.record(ttfc, self._metric_attrs)
            elif previous is not None and self.instruments is not None:
                self.instruments.time_per_output_chunk.record(now - previous, self._metric_attrs)
        except Exception:
            _log.debug("sagellm-obs: chunk not recorded", exc_info=True)

    def usage(
        self,
        input_tokens: int | None,
        output_tokens: int | None,
        cached: int | None = None,
        *,
        cache_write: int | None = None,
        reasoning: int | None = None,
    ) -> None:
        """Token usage of the response (cache reads/writes and reasoning when reported)."""
        if input_tokens is not None:
            self.input_tokens = int(input_tokens)
        if output_tokens is not None:
            self.output_tokens = int(output_tokens)
        if cached is not None:
            self.cached_tokens = int(cached)
        if cache_write is not None:
            self.cache_write_tokens = int(cache_write)
        if reasoning is not None:
            self.reasoning_tokens = int(reasoning)
        attrs: dict[str, Any] = {
            sc.GEN_AI_USAGE_INPUT_TOKENS: self.input_tokens,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: self.output_tokens,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: cached,
            sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: reasoning,
        }
        if cache_write is not None:
            mode = self.instruments.mode if self.instruments is not None else sc.SEMCONV_LATEST
            if sc.emits_latest(mode):
                attrs[sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] = cache_write
            if sc.emits_legacy(mode):
                attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_LEGACY] = cache_write
        self.set_attributes(attrs)

    def finish_reason(self, reason: str | None) -> None:
        """Add a finish reason (one per choice)."""
        if reason:
            self.finish_reasons.append(str(reason))
            self.set_attributes({sc.GEN_AI_RESPONSE_FINISH_REASONS: list(self.finish_reasons)})

    def response(self, response_id: str | None, model: str | None) -> None:
        """Response id and model."""
        self.set_model(model)
        self.set_attributes({sc.GEN_AI_RESPONSE_ID: response_id})

    def content(self, key: str, value: str | None) -> None:
        """A content attribute, set only when content capture is on."""
        if self.capture_content and value is not None:
            self.set_attributes({key: value})

    def tool_calls(self, names: Sequence[str]) -> None:
        """How many tool calls the response carried, and their function names."""
        self.set_attributes(
            {sc.SAGELLM_TOOL_CALLS: len(names), sc.SAGELLM_TOOL_CALL_NAMES: list(names)}
        )

    # --- ending --------------------------------------------------------------------------------
    def cancel(self) -> None:
        """End the operation as cancelled by the caller (not an error)."""
        self.cancelled = True
        self.end()

    def mark_error(self, error_type: str) -> None:
        """Mark the operation as failed (ERROR status, ``error.type``) without an exception."""
        if self.ended:
            return
        self.error_type = error_type
        with contextlib.suppress(Exception):
            self.span.set_status(Status(StatusCode.ERROR, error_type))

    def fail(self, exc: BaseException) -> None:
        """End the operation as failed with ``exc`` (exception event, ERROR status, error.type)."""
        if self.ended:
            return
        self.error_type = type(exc).__qualname__
        with contextlib.suppress(Exception):
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, self.error_type))
        self.end()

    def end(self) -> None:
        """End the span and record the metric points (once)."""
        with self._lock:
            if self.ended:
                return
            self.ended = True
        try:
            duration = time.monotonic() - self.start_s
            span = self.span
            if self.stream:
                span.set_attribute(sc.SAGELLM_STREAM_CHUNKS, self.chunks)
            if self.cancelled:
                span.set_attribute(sc.SAGELLM_CANCELLED, True)
            attrs = dict(self._metric_attrs)
            if self.error_type is not None:
                span.set_attribute(sc.ERROR_TYPE, self.error_type)
                attrs[sc.ERROR_TYPE] = self.error_type
            span.end()
            inst = self.instruments
            if inst is None:
                return
            inst.duration.record(duration, attrs)
            inst.record_usage(
                dict(self._metric_attrs),
                input_tokens=self.input_tokens,
                output_tokens=self.output_tokens,
                cached=self.cached_tokens,
                cache_write=self.cache_write_tokens,
                reasoning=self.reasoning_tokens,
                modality=self.modality,
                failed=self.error_type is not None,
            )
        except Exception:
            _log.debug("sagellm-obs: client operation not recorded", exc_info=True)
