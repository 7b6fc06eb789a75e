"""The HTTP SERVER span of each request, and the trace context handed to the engine.

One trace per request: caller span -> HTTP span -> engine request span -> queue/prefill/decode.
The HTTP span is parented on the incoming W3C ``traceparent``/``tracestate`` headers. The engine
builds its request span later, in the telemetry thread, from ``Request.metadata["traceparent"]``,
so the server puts the HTTP span's own traceparent there (:meth:`HttpSpan.metadata`).

The span starts lazily (back-dated to the request's arrival): a route that has read the body can
start it with the protocol ``trace_id`` as a hint, so that without a ``traceparent`` header the
trace id is the one the engine alone would derive from that protocol id
(:func:`~sagellm_obs.protocol.otel_trace_id`).
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sagellm_obs import semconv as sc
from sagellm_obs.protocol import TRACEPARENT_KEY, TRACESTATE_KEY, TraceParent, otel_trace_id
from sagellm_obs.telemetry import TelemetryPort

_PROPAGATOR = TraceContextTextMapPropagator()


def _headers(scope: MutableMapping[str, Any]) -> dict[str, str]:
    """Request headers, lower-case names; repeated headers joined with commas."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


class HttpSpan:
    """The SERVER span of one HTTP request, started on first need and ended by the middleware.

    Args:
        telemetry: Where the span goes (the engine's telemetry).
        scope: The ASGI HTTP scope.
        route: The route template, if the path is one of the server's routes.
    """

    def __init__(
        self, telemetry: TelemetryPort, scope: MutableMapping[str, Any], route: str | None
    ) -> None:
        self.start_ns = time.time_ns()
        # Set when the last body message goes out: the span ends there, not when the ASGI call
        # returns (the app and the event loop may run on after the client has read its last byte).
        self.end_ns: int | None = None
        self.telemetry = telemetry
        self.headers = _headers(scope)
        method = str(scope.get("method", "GET"))
        self.name = f"{method} {route}" if route else method
        self.attributes: dict[str, Any] = {
            sc.HTTP_REQUEST_METHOD: method,
            sc.URL_PATH: str(scope.get("path", "")),
            sc.URL_SCHEME: str(scope.get("scheme", "http")),
            sc.NETWORK_PROTOCOL_VERSION: str(scope.get("http_version", "1.1")),
        }
        if route:
            self.attributes[sc.HTTP_ROUTE] = route
        server = scope.get("server")
        if server:
            self.attributes[sc.SERVER_ADDRESS] = str(server[0])
            if server[1] is not None:
                self.attributes[sc.SERVER_PORT] = int(server[1])
        client = scope.get("client")
        if client:
            self.attributes[sc.CLIENT_ADDRESS] = str(client[0])
            self.attributes[sc.CLIENT_PORT] = int(client[1])
        if "user-agent" in self.headers:
            self.attributes[sc.USER_AGENT_ORIGINAL] = self.headers["user-agent"]
        self.parent = _PROPAGATOR.extract(self.headers)
        self.has_parent = trace.get_current_span(self.parent).get_span_context().is_valid
        self.span: trace.Span | None = None

    def start(
        self,
        *,
        trace_id_hint: str | None = None,
        fallback_traceparent: str | None = None,
        fallback_tracestate: str | None = None,
    ) -> trace.Span:
        """Start the span (once; later calls return it).

        Args:
            trace_id_hint: A protocol trace id; without an incoming parent the span's trace id is
                derived from it, as the engine would.
            fallback_traceparent: A parent to use when the headers carry none (the native
                endpoint's ``metadata["traceparent"]``).
            fallback_tracestate: Its ``tracestate``.
        """
        if self.span is not None:
            return self.span
        parent = self.parent
        if not self.has_parent and fallback_traceparent:
            carrier = {"traceparent": fallback_traceparent}
            if fallback_tracestate:
                carrier["tracestate"] = fallback_tracestate
            candidate = _PROPAGATOR.extract(carrier)
            if trace.get_current_span(candidate).get_span_context().is_valid:
                parent, self.has_parent = candidate, True
        if not self.has_parent:
            parent = otel_context.Context()  # a root span, whatever the ambient context
        hint = int(otel_trace_id(trace_id_hint), 16) if trace_id_hint and not self.has_parent else 0
        with self.telemetry.trace_id_hint(hint):
            self.span = self.telemetry.tracer.start_span(
                self.name,
                context=parent,
                kind=SpanKind.SERVER,
                attributes=self.attributes,
                start_time=self.start_ns,
            )
        return self.span

    def traceparent(self) -> TraceParent:
        """The W3C traceparent naming this span (starts it if needed)."""
        ctx = self.start().get_span_context()
        return TraceParent.from_ints(ctx.trace_id, ctx.span_id, int(ctx.trace_flags) & 0xFF)

    def metadata(self) -> dict[str, Any]:
        """``Request.metadata`` entries that make the engine's span a child of this span."""
        ctx = self.start().get_span_context()
        out: dict[str, Any] = {TRACEPARENT_KEY: str(self.traceparent())}
        state = ctx.trace_state.to_header() if ctx.trace_state else ""
        if state:
            out[TRACESTATE_KEY] = state
        return out

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        """``X-Trace-Id`` and ``traceparent`` response headers."""
        tp = self.traceparent()
        return [
            (sc.TRACE_ID_HEADER.encode(), tp.trace_id.encode()),
            (TRACEPARENT_KEY.encode(), str(tp).encode()),
        ]

    def responded(self) -> None:
        """Mark now as the span's end: the response's last body message is being sent."""
        if self.end_ns is None:
            self.end_ns = time.time_ns()

    def finish(self, status: int | None, error_type: str | None = None) -> None:
        """End the span with the response status (5xx and exceptions mark it as an error)."""
        span = self.start()
        if status is not None:
            span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
        if error_type is not None:
            span.set_attribute(sc.ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR))
        elif status is not None and status >= 500:
            span.set_attribute(sc.ERROR_TYPE, str(status))
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=self.end_ns)
