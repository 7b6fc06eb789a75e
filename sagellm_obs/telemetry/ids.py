"""Span/trace id generation that lets a root span take a given trace id.

A protocol request that arrives without a W3C parent still has a ``trace_id``: its request span
gets the 32-hex id derived from it (see :func:`sagellm_obs.protocol.otel_trace_id`), so the same
protocol trace id always lands in the same OpenTelemetry trace. The telemetry thread sets
``next_trace_id`` just before starting such a root span; the thread is the only span builder.
Likewise ``next_span_id`` gives a request span the id reserved for it at arrival (vLLM's own
``llm_request`` span names it as its parent).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator


class TraceIdOverride(IdGenerator):
    """Random ids, except a trace id set for the current thread's next root span."""

    def __init__(self, base: IdGenerator | None = None) -> None:
        self._base = base or RandomIdGenerator()
        self._local = threading.local()

    @property
    def next_trace_id(self) -> int:
        return int(getattr(self._local, "trace_id", 0))

    @next_trace_id.setter
    def next_trace_id(self, value: int) -> None:
        self._local.trace_id = value

    @property
    def next_span_id(self) -> int:
        return int(getattr(self._local, "span_id", 0))

    @next_span_id.setter
    def next_span_id(self, value: int) -> None:
        self._local.span_id = value

    @property
    def fresh_span_id(self) -> Callable[[], int]:
        """The base generator's span ids, never the reserved one: for spans that cannot be a
        request span (phases), without the per-call look at the thread's reservation."""
        return self._base.generate_span_id

    def generate_span_id(self) -> int:
        forced = self.next_span_id
        if forced:
            self._local.span_id = 0
            return forced
        return self._base.generate_span_id()

    def generate_trace_id(self) -> int:
        forced = self.next_trace_id
        if forced:
            self._local.trace_id = 0
            return forced
        return self._base.generate_trace_id()
