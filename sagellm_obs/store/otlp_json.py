"""OTLP/JSON encoding, as the OTLP specification and the Collector's file exporter write it.

Spans are encoded straight from the SDK's ``ReadableSpan`` into the OTLP/JSON shape (camelCase keys,
hex trace/span ids, int64 as decimal strings, enums as integers): it is several times cheaper than
going through protobuf messages and ``MessageToJson``, and the tests check it field by field against
``opentelemetry-proto``'s own encoder. Metrics (a few points every export interval) go through the
protobuf encoder of ``opentelemetry-exporter-otlp-proto-common``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
_STATUS = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}
# Fields that OTLP/JSON writes as hex although protobuf's JSON mapping would use base64.
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def any_value(value: Any) -> dict[str, Any]:
    """Encode one attribute value as an OTLP ``AnyValue``."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if value - value != 0.0:  # proto3 JSON writes NaN and the infinities as strings
            return {
                "doubleValue": "NaN"
                if value != value
                else ("Infinity" if value > 0 else "-Infinity")
            }
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": key_values(value)}}
    return {"arrayValue": {"values": [any_value(v) for v in value]}}


def key_values(attributes: Mapping[str, AttributeValue] | None) -> list[dict[str, Any]]:
    """Encode attributes as a list of OTLP ``KeyValue``."""
    if not attributes:
        return []
    return [{"key": k, "value": any_value(v)} for k, v in attributes.items()]


def _flags(trace_flags: int, context: SpanContext | None) -> int:
    """SpanFlags: the W3C trace flags, plus "has is_remote" (0x100) and "is_remote" (0x200)."""
    flags = int(trace_flags) | 0x100
    if context is not None and context.is_remote:
        flags |= 0x200
    return flags


def _event(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"timeUnixNano": str(event.timestamp), "name": event.name}
    if event.attributes:
        out["attributes"] = key_values(event.attributes)
    if event.dropped_attributes:
        out["droppedAttributesCount"] = event.dropped_attributes
    return out


def _link(link: Link) -> dict[str, Any]:
    ctx = link.context
    out: dict[str, Any] = {
        "traceId": f"{ctx.trace_id:032x}",
        "spanId": f"{ctx.span_id:016x}",
        "attributes": key_values(link.attributes),
    }
    if link.dropped_attributes:
        out["droppedAttributesCount"] = link.dropped_attributes
    out["flags"] = _flags(ctx.trace_flags, ctx)
    return out


def _span(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    out: dict[str, Any] = {
        "traceId": f"{ctx.trace_id:032x}",
        "spanId": f"{ctx.span_id:016x}",
    }
    if ctx.trace_state:
        out["traceState"] = ctx.trace_state.to_header()
    parent = span.parent
    if parent is not None:
        out["parentSpanId"] = f"{parent.span_id:016x}"
    out["flags"] = _flags(ctx.trace_flags, parent)
    out["name"] = span.name
    out["kind"] = _KIND.get(span.kind, 1)
    out["startTimeUnixNano"] = str(span.start_time or 0)
    out["endTimeUnixNano"] = str(span.end_time or 0)
    if span.attributes:
        out["attributes"] = key_values(span.attributes)
    if span.dropped_attributes:
        out["droppedAttributesCount"] = span.dropped_attributes
    if span.events:
        out["events"] = [_event(e) for e in span.events]
    if span.dropped_events:
        out["droppedEventsCount"] = span.dropped_events
    if span.links:
        out["links"] = [_link(link) for link in span.links]
    if span.dropped_links:
        out["droppedLinksCount"] = span.dropped_links
    status: dict[str, Any] = {}
    code = _STATUS[span.status.status_code]
    if code:
        status["code"] = code
    if span.status.description:
        status["message"] = span.status.description
    out["status"] = status
    return out


def encode_spans(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """Encode spans as an OTLP/JSON ``ExportTraceServiceRequest`` (one file line)."""
    by_resource: dict[int, tuple[Any, dict[int, tuple[Any, list[dict[str, Any]]]]]] = {}
    for span in spans:
        res = span.resource
        _, scopes = by_resource.setdefault(id(res), (res, {}))
        scope = span.instrumentation_scope
        scopes.setdefault(id(scope), (scope, []))[1].append(_span(span))
    resource_spans = []
    for res, scopes in by_resource.values():
        scope_spans = []
        for scope, encoded in scopes.values():
            entry: dict[str, Any] = {"scope": {}, "spans": encoded}
            if scope is not None:
                entry["scope"] = {"name": scope.name}
                if scope.version:
                    entry["scope"]["version"] = scope.version
                if scope.attributes:
                    entry["scope"]["attributes"] = key_values(scope.attributes)
                if scope.schema_url:
                    entry["schemaUrl"] = scope.schema_url
            scope_spans.append(entry)
        rs: dict[str, Any] = {
            "resource": {"attributes": key_values(res.attributes)},
            "scopeSpans": scope_spans,
        }
        if res.schema_url:
            rs["schemaUrl"] = res.schema_url
        resource_spans.append(rs)
    return {"resourceSpans": resource_spans}


def _hex_ids(node: Any) -> None:
    """Rewrite protobuf-JSON base64 ids as the hex OTLP/JSON asks for, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)


def encode_metrics(data: MetricsData) -> dict[str, Any]:
    """Encode SDK metrics as an OTLP/JSON ``ExportMetricsServiceRequest`` (one file line)."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import (
        encode_metrics as encode_pb,
    )

    out: dict[str, Any] = MessageToDict(encode_pb(data))
    _hex_ids(out)  # exemplars carry span/trace ids
    return out


def _base64_ids(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str) and value:
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                _base64_ids(value)
    elif isinstance(node, list):
        for item in node:
            _base64_ids(item)


def parse_traces_line(obj: dict[str, Any]) -> Any:
    """Parse one OTLP/JSON traces object into an ``ExportTraceServiceRequest`` protobuf.

    OTLP/JSON differs from protobuf's JSON mapping only in the hex ids, which are converted first.
    Raises ``google.protobuf.json_format.ParseError`` or ``ValueError`` on malformed input.
    """
    import copy

    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    data = copy.deepcopy(obj)
    _base64_ids(data)
    return ParseDict(data, ExportTraceServiceRequest())


def parse_metrics_line(obj: dict[str, Any]) -> Any:
    """Parse one OTLP/JSON metrics object into an ``ExportMetricsServiceRequest`` protobuf."""
    import copy

    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    data = copy.deepcopy(obj)
    _base64_ids(data)
    return ParseDict(data, ExportMetricsServiceRequest())
