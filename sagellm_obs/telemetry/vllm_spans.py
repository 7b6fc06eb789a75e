"""vLLM's own spans in our traces: an in-process OTLP/HTTP receiver for vLLM's tracing.

vLLM 0.32 traces a request with one ``llm_request`` SERVER span (``OutputProcessor.do_tracing``),
started at its arrival and parented on the W3C context it was given as ``trace_headers``; it also
traces its start-up (``Overall Loading``, ``Load model``...). It exports them itself, over OTLP
to its ``otlp_traces_endpoint``, through the process-global OpenTelemetry tracer provider that its
``init_tracer`` installs (gRPC unless ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf``).

``configure(vllm_tracing=True)`` points that endpoint at this receiver: an OTLP/HTTP server on
127.0.0.1 (a free port) in this process. Each span it gets is rebuilt as the SDK's
``ReadableSpan`` (vLLM's resource plus our run and engine ids, vLLM's scope, ids, times and
attributes untouched) and handed to the span processors of one telemetry, exactly as if it had
ended there: the local store writes it to the run folder and OTLP forwards it to the collector.

Which telemetry: the engine tells the receiver, per request, the span id of our request span that
it passed to vLLM as the parent (:meth:`VllmSpanReceiver.expect`); a span whose parent is not
known (vLLM's start-up spans) goes to the telemetry of the engine started last. The receiver is
one per process, because vLLM's tracer provider is: the first engine started with tracing fixes
the endpoint for the life of the process.
"""

from __future__ import annotations

import gzip
import logging
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

_log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
_MAX_EXPECTED = 100_000  # requests in flight whose vLLM span has not come yet
_KINDS = {
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
}

Deliver = Callable[[Sequence[ReadableSpan]], None]
"""Takes rebuilt spans into one telemetry (:meth:`Telemetry.take_spans`)."""


class VllmSpanReceiver:
    """An OTLP/HTTP (protobuf) receiver on 127.0.0.1 that routes vLLM's spans to a telemetry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expected: OrderedDict[int, Deliver] = OrderedDict()
        self._default: Deliver | None = None
        self.received = 0
        self.failures = 0
        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                code = 200
                if self.path.rstrip("/") != TRACES_PATH:
                    code = 404
                else:
                    try:
                        receiver.take(_decoded(body, self.headers.get("Content-Encoding")))
                    except Exception:
                        receiver.failures += 1
                        _log.exception("sagellm-obs: a batch of vLLM's spans could not be read")
                        code = 400
                self.send_response(code)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sagellm-obs-vllm-spans", daemon=True
        )
        self._thread.start()

    @property
    def endpoint(self) -> str:
        """The URL vLLM's OTLP/HTTP exporter posts to (``otlp_traces_endpoint``)."""
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}{TRACES_PATH}"

    # --- routing ------------------------------------------------------------------------------
    def set_default(self, deliver: Deliver | None) -> None:
        """Where spans with no expected parent go (the telemetry of the engine started last)."""
        self._default = deliver

    def expect(self, parent_span_id: int, deliver: Deliver) -> None:
        """vLLM's span for a request whose parent is ``parent_span_id`` goes to ``deliver``."""
        with self._lock:
            self._expected[parent_span_id] = deliver
            while len(self._expected) > _MAX_EXPECTED:
                self._expected.popitem(last=False)

    def forget(self, parent_span_id: int) -> None:
        """No span will come for this request (aborted before vLLM finished it)."""
        with self._lock:
            self._expected.pop(parent_span_id, None)

    def take(self, body: bytes) -> None:
        """Decode one ``ExportTraceServiceRequest`` and deliver its spans."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        routed: dict[int, tuple[Deliver, list[ReadableSpan]]] = {}
        for span, parent in _readable_spans(message):
            with self._lock:
                deliver = self._expected.pop(parent, None) if parent else None
            deliver = deliver or self._default
            if deliver is None:
                continue
            routed.setdefault(id(deliver), (deliver, []))[1].append(span)
            self.received += 1
        for deliver, spans in routed.values():
            deliver(spans)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_receiver: VllmSpanReceiver | None = None
_receiver_lock = threading.Lock()


def receiver() -> VllmSpanReceiver:
    """The process's receiver, started on first use (see the module docstring)."""
    global _receiver
    with _receiver_lock:
        if _receiver is None:
            _receiver = VllmSpanReceiver()
        return _receiver


def running() -> VllmSpanReceiver | None:
    """The process's receiver if one was started, else None (starts nothing)."""
    return _receiver


def with_resource(spans: Iterable[ReadableSpan], extra: Mapping[str, Any]) -> list[ReadableSpan]:
    """``spans`` with ``extra`` added to their resource (our run and engine ids)."""
    out = []
    merged: dict[int, Resource] = {}
    for s in spans:
        res = s.resource
        key = id(res)
        if key not in merged:
            merged[key] = Resource({**extra, **dict(res.attributes)}, res.schema_url)
        out.append(
            ReadableSpan(
                s.name,
                s.context,
                s.parent,
                merged[key],
                s.attributes,
                s.events,
                s.links,
                s.kind,
                None,
                s.status,
                s.start_time,
                s.end_time,
                s.instrumentation_scope,
            )
        )
    return out


# --- OTLP protobuf -> ReadableSpan ---------------------------------------------------------------
def _decoded(body: bytes, encoding: str | None) -> bytes:
    enc = (encoding or "").strip().lower()
    if enc == "gzip":
        return gzip.decompress(body)
    if enc == "deflate":
        return zlib.decompress(body)
    return body


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which) if which else None


def _attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def _readable_spans(message: Any) -> Iterable[tuple[ReadableSpan, int]]:
    """Each span of an ``ExportTraceServiceRequest`` with its parent span id (0: none)."""
    for rs in message.resource_spans:
        resource = Resource(_attributes(rs.resource.attributes), rs.schema_url or None)
        for ss in rs.scope_spans:
            scope = InstrumentationScope(
                ss.scope.name,
                ss.scope.version or None,
                ss.schema_url or None,
                _attributes(ss.scope.attributes) or None,
            )
            for s in ss.spans:
                yield _span(s, resource, scope)


def _span(s: Any, resource: Resource, scope: InstrumentationScope) -> tuple[ReadableSpan, int]:
    trace_id = int.from_bytes(s.trace_id, "big")
    # An SDK exports sampled spans only, and its OTLP encoder keeps just the is-remote bits of
    # ``flags``: the span was sampled.
    flags = TraceFlags((s.flags & 0xFF) | TraceFlags.SAMPLED)
    state = TraceState.from_header([s.trace_state]) if s.trace_state else None
    context = SpanContext(trace_id, int.from_bytes(s.span_id, "big"), False, flags, state)
    parent_id = int.from_bytes(s.parent_span_id, "big") if s.parent_span_id else 0
    parent = None
    if parent_id:
        parent = SpanContext(trace_id, parent_id, bool(s.flags & 0x200), flags, state)
    events = tuple(Event(e.name, _attributes(e.attributes), e.time_unix_nano) for e in s.events)
    links = tuple(
        Link(
            SpanContext(
                int.from_bytes(link.trace_id, "big"),
                int.from_bytes(link.span_id, "big"),
                bool(link.flags & 0x200),
                TraceFlags(link.flags & 0xFF),
            ),
            _attributes(link.attributes),
        )
        for link in s.links
    )
    code = StatusCode(s.status.code) if s.status.code in (0, 1, 2) else StatusCode.UNSET
    status = Status(code, s.status.message or None) if code is StatusCode.ERROR else Status(code)
    span = ReadableSpan(
        name=s.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=_attributes(s.attributes),
        events=events,
        links=links,
        kind=_KINDS.get(s.kind, SpanKind.INTERNAL),
        status=status,
        start_time=s.start_time_unix_nano,
        end_time=s.end_time_unix_nano,
        instrumentation_scope=scope,
    )
    return span, parent_id


__all__ = ["TRACES_PATH", "VllmSpanReceiver", "receiver", "running", "with_resource"]
