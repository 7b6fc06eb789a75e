"""The direct OTLP/JSON span encoder against opentelemetry-proto's own encoder, field by field."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as reference
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from sagellm_obs.store.otlp_json import encode_spans, parse_traces_line

REMOTE_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
REMOTE_SPAN_ID = 0x00F067AA0BA902B7
LINKED_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
LINKED_SPAN_ID = 0x0000000000000ABC

ATTRIBUTES: dict[str, Any] = {
    "str": "héllo wörld ✓",
    "empty": "",
    "int": -42,
    "int64.max": 2**63 - 1,
    "int64.min": -(2**63),
    "float": 3.25,
    "float.tiny": 1e-300,
    "float.neg": -0.5,
    "bool.t": True,
    "bool.f": False,
    "arr.str": ["a", "", "ü"],
    "arr.int": [1, -2, 2**40],
    "arr.float": [0.5, 1.5],
    "arr.bool": [True, False, True],
    "arr.empty": [],
}


def _ctx(span: ReadableSpan) -> SpanContext:
    ctx = span.get_span_context()
    assert ctx is not None
    return ctx


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider(
        resource=Resource.create(
            {"service.name": "encoder-test", "deployment.env": "ci", "r.n": 7},
            schema_url="https://opentelemetry.io/schemas/1.26.0",
        ),
        span_limits=SpanLimits(
            max_span_attributes=64,
            max_events=3,
            max_links=2,
            max_event_attributes=2,
            max_link_attributes=2,
        ),
    )
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp, exporter
    tp.shutdown()


def _make_spans(tp: TracerProvider, exporter: InMemorySpanExporter) -> tuple[ReadableSpan, ...]:
    """Spans covering every field the encoder writes."""
    tracer = tp.get_tracer("enc.scope.a", "1.2.3", schema_url="https://example.com/s/1")
    tracer_b = tp.get_tracer("enc.scope.b", attributes={"scope.attr": "yes", "scope.n": 2})
    remote = SpanContext(
        REMOTE_TRACE_ID,
        REMOTE_SPAN_ID,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "opaque-1"), ("other", "x")]),
    )
    linked = SpanContext(LINKED_TRACE_ID, LINKED_SPAN_ID, is_remote=True, trace_flags=TraceFlags(1))
    linked_local = SpanContext(LINKED_TRACE_ID, 0xDEF, is_remote=False)
    links = [
        Link(linked, {"first": True}),  # dropped: max_links=2 keeps the newest two
        Link(linked, {"link.a": 1, "link.b": "two", "link.c": 3.0}),  # "link.a" is evicted
        Link(linked_local),
    ]
    ctx = trace.set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span(
        "server op", context=ctx, kind=SpanKind.SERVER, attributes=ATTRIBUTES, links=links
    ) as root:
        root.add_event("with.attrs", {"e.a": 1, "e.b": [1.5, 2.5], "e.c": "dropped"}, 1_000)
        root.add_event("bare", timestamp=2_000)
        root.add_event("third", {"k": "v"}, 3_000)
        root.add_event("fourth, drops the first", timestamp=4_000)
        root.set_status(Status(StatusCode.ERROR, "boom: it broke"))
        for kind in (SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER):
            with tracer_b.start_as_current_span(f"child {kind.name}", kind=kind) as child:
                if kind is SpanKind.CLIENT:
                    child.set_status(Status(StatusCode.OK))
    # A root span of its own trace (no parent at all).
    with tracer.start_as_current_span("local root"):
        pass
    spans = exporter.get_finished_spans()
    assert len(spans) == 6
    return spans


def _walk_ids(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId"):
                yield f"{path}.{key}", key, value
            else:
                yield from _walk_ids(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk_ids(item, f"{path}[{i}]")


def _split_flags(msg: Any) -> list[int]:
    """Take the W3C trace-flag byte out of every span/link flags field; return those bytes.

    Our encoder writes the W3C trace flags in bits 0-7 as the OTLP proto asks ("Bits 0-7 ... are
    the trace flags as defined in W3C Trace Context"); the Python reference encoder leaves them
    zero. Everything above bit 7 must be identical.
    """
    low: list[int] = []
    for rs in msg.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                low.append(span.flags & 0xFF)
                span.flags &= ~0xFF
                for link in span.links:
                    low.append(link.flags & 0xFF)
                    link.flags &= ~0xFF
    return low


def test_encode_spans_matches_proto_encoder_field_by_field(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    spans = _make_spans(*provider)
    ours_json = encode_spans(spans)
    # What goes into the file is JSON text: round-trip it like a reader would.
    ours_obj = json.loads(json.dumps(ours_json))
    ours = parse_traces_line(ours_obj)
    ref = reference(spans)

    low = _split_flags(ours)
    expected_low = []
    for s in spans:
        expected_low.append(int(_ctx(s).trace_flags))
        expected_low.extend(int(link.context.trace_flags) for link in s.links)
    # Same order as the message (one resource, scopes in first-seen order, spans in order).
    assert sorted(low) == sorted(expected_low)
    assert _split_flags(ref) == [0] * len(low)

    assert MessageToDict(ours) == MessageToDict(ref)
    assert ours == ref
    assert ours.SerializeToString(deterministic=True) == ref.SerializeToString(deterministic=True)


def test_encoder_covers_the_interesting_fields(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """The comparison above is only as strong as the spans: make sure they exercise everything."""
    spans = _make_spans(*provider)
    obj = encode_spans(spans)
    (rs,) = obj["resourceSpans"]
    assert rs["schemaUrl"] == "https://opentelemetry.io/schemas/1.26.0"
    scopes = {ss["scope"]["name"]: ss for ss in rs["scopeSpans"]}
    assert set(scopes) == {"enc.scope.a", "enc.scope.b"}
    assert scopes["enc.scope.a"]["schemaUrl"] == "https://example.com/s/1"
    assert scopes["enc.scope.a"]["scope"]["version"] == "1.2.3"
    assert {a["key"] for a in scopes["enc.scope.b"]["scope"]["attributes"]} == {
        "scope.attr",
        "scope.n",
    }
    root = next(s for s in scopes["enc.scope.a"]["spans"] if s["name"] == "server op")
    assert root["kind"] == 2
    assert root["traceId"] == f"{REMOTE_TRACE_ID:032x}"
    assert root["parentSpanId"] == f"{REMOTE_SPAN_ID:016x}"
    assert root["traceState"] == "vendor=opaque-1,other=x"
    assert root["flags"] == 0x301  # sampled, has-is-remote, parent is remote
    assert root["status"] == {"code": 2, "message": "boom: it broke"}
    assert root["droppedEventsCount"] == 1
    assert root["droppedLinksCount"] == 1
    assert [e["name"] for e in root["events"]] == ["bare", "third", "fourth, drops the first"]
    assert "droppedAttributesCount" not in root["events"][0]
    assert root["events"][0]["timeUnixNano"] == "2000"
    first_link, second_link = root["links"]
    assert len(first_link["attributes"]) == 2  # the SDK trims but does not count (see below)
    assert first_link["flags"] == 0x301
    assert second_link["flags"] == 0x100  # local context, not sampled
    values = {a["key"]: a["value"] for a in root["attributes"]}
    assert values["int64.max"] == {"intValue": str(2**63 - 1)}
    assert values["int64.min"] == {"intValue": str(-(2**63))}
    assert values["arr.empty"] == {"arrayValue": {"values": []}}
    assert values["bool.f"] == {"boolValue": False}
    kinds = sorted(s["kind"] for s in scopes["enc.scope.b"]["spans"])
    assert kinds == [1, 3, 4, 5]
    local_root = next(s for s in scopes["enc.scope.a"]["spans"] if s["name"] == "local root")
    assert "parentSpanId" not in local_root
    sdk_root = next(s for s in spans if s.name == "local root")
    # has-is-remote set, is-remote clear, W3C flags (sampled, and "random" from this SDK) below.
    assert local_root["flags"] == 0x100 | int(_ctx(sdk_root).trace_flags)
    assert local_root["flags"] & 0x01


def test_event_attributes_dropped_count(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tp, exporter = provider
    with tp.get_tracer("t").start_as_current_span("s") as span:
        span.add_event("e", {"a": 1, "b": 2, "c": 3})
    (s,) = exporter.get_finished_spans()
    (event,) = encode_spans([s])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["events"]
    assert event["droppedAttributesCount"] == 1
    ours = parse_traces_line(encode_spans([s]))
    _split_flags(ours)
    assert ours == reference([s])


def test_link_dropped_attributes_on_a_hand_made_span() -> None:
    """A ReadableSpan built by hand (as a span processor may) with a link that lost attributes."""
    attrs = BoundedAttributes(maxlen=1, immutable=False)
    attrs["kept"] = 1
    attrs["dropped"] = 2  # evicts "kept": dropped == 1
    assert attrs.dropped == 1
    ctx = SpanContext(0x1, 0x2, is_remote=False, trace_flags=TraceFlags(1))
    span = ReadableSpan(
        name="hand made",
        context=ctx,
        parent=SpanContext(0x1, 0x3, is_remote=True),
        resource=Resource({"service.name": "x"}),
        links=[Link(SpanContext(0x5, 0x6, is_remote=True), attrs)],
        kind=SpanKind.CONSUMER,
        start_time=10,
        end_time=20,
        instrumentation_scope=InstrumentationScope("hand", "0.1", None, {"a": "b"}),
    )
    obj = encode_spans([span])
    (link,) = obj["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["links"]
    assert link["droppedAttributesCount"] == 1
    assert link["flags"] == 0x300
    ours = parse_traces_line(obj)
    assert _split_flags(ours) == [1, 0]
    assert ours == reference([span])


def test_ids_are_lowercase_hex_of_the_right_length(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    spans = _make_spans(*provider)
    obj = encode_spans(spans)
    sizes = {"traceId": 32, "spanId": 16, "parentSpanId": 16}
    seen = 0
    for where, key, value in _walk_ids(obj):
        assert isinstance(value, str), where
        assert re.fullmatch(rf"[0-9a-f]{{{sizes[key]}}}", value), (where, value)
        seen += 1
    # 6 spans x (trace, span) + 5 parents + 2 links x (trace, span)
    assert seen == 6 * 2 + 5 + 2 * 2
    text = json.dumps(obj)
    assert f"{REMOTE_TRACE_ID:032x}" in text
    assert f"{REMOTE_TRACE_ID:032X}" not in text


def test_many_batches_with_random_ids_roundtrip(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Ids with leading zero bytes, high bits, etc.: many random spans, each compared."""
    tp, exporter = provider
    tracer = tp.get_tracer("bulk")
    for i in range(200):
        with tracer.start_as_current_span(f"s{i}", attributes={"i": i, "f": i / 7}):
            pass
    spans = exporter.get_finished_spans()
    ours = parse_traces_line(json.loads(json.dumps(encode_spans(spans))))
    _split_flags(ours)
    assert ours == reference(spans)


def test_empty_batch() -> None:
    assert encode_spans([]) == {"resourceSpans": []}
    assert parse_traces_line({"resourceSpans": []}) == reference([])


def test_parse_traces_line_rejects_malformed_input() -> None:
    from google.protobuf.json_format import ParseError

    with pytest.raises((ParseError, ValueError)):
        parse_traces_line({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]})
    with pytest.raises((ParseError, ValueError)):
        parse_traces_line({"resourceSpanz": []})
