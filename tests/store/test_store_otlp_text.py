"""The text encoder of span lines against the dict encoder (``encode_spans`` + ``json.dumps``)."""

from __future__ import annotations

import json
import math
import random
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from sagellm_obs.store import RunStore, files_of, iter_jsonl
from sagellm_obs.store.otlp_json import any_value, encode_spans, key_values
from sagellm_obs.store.otlp_text import (
    FLAG_HAS_IS_REMOTE,
    FLAG_IS_REMOTE,
    KIND_INTERNAL,
    KIND_SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
    AttributesTemplate,
    SpanLines,
    attributes_text,
    child_spans_text,
    envelope,
    event_text,
    span_text,
    status_text,
    value_text,
)


def _dumps(obj: Any) -> str:
    # What RunStore.write writes for a dict line.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)


class Reason(str):
    pass


VALUES: list[Any] = [
    "",
    "plain",
    'héllo "quoted" \\ back\nslash\t\u2028\u0000 ✓ </script>',
    Reason("str subclass"),
    0,
    -42,
    2**63 - 1,
    -(2**63),
    True,
    False,
    0.0,
    -0.0,
    3.25,
    1e-300,
    1e16,
    -0.5,
    math.nan,
    math.inf,
    -math.inf,
    (),
    ("a", "", "ü"),
    (1, -2, 2**40),
    (0.5, math.inf),
    (True, False),
    ["list", "too"],
    (None, "x"),
    None,
    b"\x00\xffbytes",
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_value_text_is_the_dict_encoders_text(value: Any) -> None:
    assert value_text(value) == _dumps(any_value(value))


def test_attributes_text_is_the_dict_encoders_text() -> None:
    attrs = {f"k.{i}": v for i, v in enumerate(VALUES)}
    attrs['ключ "quoted"'] = 1
    assert "[" + attributes_text(attrs) + "]" == _dumps(key_values(attrs))
    assert attributes_text({}) == ""


def _sdk_spans() -> tuple[list[ReadableSpan], Resource, InstrumentationScope]:
    exporter = InMemorySpanExporter()
    resource = Resource.create({"service.name": "text-test", "r.n": 7}, schema_url="https://s/1")
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tp.get_tracer("text.scope", "0.1", schema_url="https://s/2", attributes={"a": 1})
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "v1")]),
    )
    root = tracer.start_span(
        "server é",
        context=set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.SERVER,
        attributes={"s": "x", "i": 1, "f": 0.5, "b": True, "t": ("a", "b")},
        start_time=1_000,
    )
    root.add_event("first_token", timestamp=1_500)
    root.set_status(Status(StatusCode.ERROR, "it broke"))
    child = tracer.start_span("queue", context=set_span_in_context(root), start_time=1_100)
    child.end(end_time=1_200)
    root.end(end_time=2_000)
    tp.shutdown()
    scope = root.instrumentation_scope  # type: ignore[attr-defined]
    return list(exporter.get_finished_spans()), resource, scope


def _text_of(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    assert ctx is not None
    parent = span.parent
    flags = int(ctx.trace_flags) | FLAG_HAS_IS_REMOTE
    if parent is not None and parent.is_remote:
        flags |= FLAG_IS_REMOTE
    status = STATUS_UNSET
    if span.status.status_code is StatusCode.ERROR:
        status = status_text(STATUS_ERROR, span.status.description)
    return span_text(
        ctx.trace_id,
        ctx.span_id,
        ctx.trace_state.to_header() if ctx.trace_state else "",
        parent.span_id if parent is not None else 0,
        flags,
        span.name,
        KIND_SERVER if span.kind is SpanKind.SERVER else KIND_INTERNAL,
        span.start_time or 0,
        span.end_time or 0,
        attributes_text(span.attributes or {}),
        ",".join(event_text(e.timestamp, e.name) for e in span.events),
        status,
    )


def test_a_line_of_span_texts_is_the_dict_encoders_line() -> None:
    spans, resource, scope = _sdk_spans()
    head, tail = envelope(resource, scope)
    line = head + ",".join(_text_of(s) for s in spans) + tail
    assert line == _dumps(encode_spans(spans))


def _line_spans(run: Path) -> list[list[str]]:
    out = []
    for f in files_of(run, "traces"):
        for _, obj in iter_jsonl(f):
            (rs,) = obj["resourceSpans"]
            (ss,) = rs["scopeSpans"]
            out.append([s["name"] for s in ss["spans"]])
    return out


def _span(name: str) -> str:
    return span_text(1, 2, "", 0, 0x101, name, KIND_INTERNAL, 1, 2, "", "", STATUS_UNSET)


def test_span_lines_batch_like_the_batch_processor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path)
    lines = SpanLines(store, max_spans=3, max_delay=3600)
    resource, scope = Resource.create({"service.name": "a"}), InstrumentationScope("s")
    lines.add(resource, scope, [_span("a"), _span("b")])
    lines.write_due()
    assert _line_spans(tmp_path) == []  # neither full nor old
    lines.add(resource, scope, [_span(c) for c in "cdefghi"])
    assert _line_spans(tmp_path) == [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]]
    lines.add(resource, scope, [_span("j")])
    other = Resource.create({"service.name": "b"})
    lines.add(other, scope, [_span("k")])  # a new resource starts a new line
    lines.write_due(force=True)
    assert _line_spans(tmp_path)[3:] == [["j"], ["k"]]
    assert lines.spans_written == 11
    # The writer tells the store how many lines it wrote: they must be the file's lines.
    text = b"".join(f.read_bytes() for f in tmp_path.glob("traces-*.jsonl"))
    assert store.lines_written("traces") == text.count(b"\n") == 5

    def full_disk(kind: str, data: bytes, lines: int | None = None) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "write_lines", full_disk)
    lines.add(resource, scope, [_span("x")])
    lines.write_due(force=True)  # counted and logged, never raised
    assert lines.spans_failed == 1
    store.close()


def test_span_lines_write_after_max_delay(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    lines = SpanLines(store, max_spans=512, max_delay=0.0)
    lines.add(Resource.create({}), InstrumentationScope("s"), [_span("a")])
    lines.write_due()
    assert _line_spans(tmp_path) == [["a"]]
    # A caller that checks again in 10 s gets the line now rather than 10 s late.
    lines = SpanLines(store, max_spans=512, max_delay=5.0)
    lines.add(Resource.create({}), InstrumentationScope("s"), [_span("b")])
    lines.write_due(within=1.0)
    assert _line_spans(tmp_path) == [["a"]]
    lines.write_due(within=10.0)
    assert _line_spans(tmp_path) == [["a"], ["b"]]
    store.close()


def test_non_finite_and_mapping_values_stay_readable(tmp_path: Path) -> None:
    """NaN and the infinities are strings in OTLP/JSON (bare NaN is not JSON); a mapping is a
    kvlist. A line holding them parses and loads instead of being rejected whole."""
    from sagellm_obs.frames import load
    from sagellm_obs.store.otlp_json import parse_traces_line

    assert any_value(math.nan) == {"doubleValue": "NaN"}
    assert any_value(-math.inf) == {"doubleValue": "-Infinity"}
    assert any_value({"a": 1}) == {
        "kvlistValue": {"values": [{"key": "a", "value": {"intValue": "1"}}]}
    }
    spans, _, _ = _sdk_spans()
    attrs = {"x.nan": math.nan, "x.inf": math.inf, "x.map": {"k": "v"}, "x.ok": 1.5}
    line = encode_spans([_with_attributes(spans[0], attrs)])
    text = _dumps(line)
    assert "NaN" in text and json.loads(text, parse_constant=lambda c: pytest.fail(c))
    parsed = parse_traces_line(json.loads(text))
    got = {kv.key: kv.value for kv in parsed.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert math.isnan(got["x.nan"].double_value) and got["x.inf"].double_value == math.inf
    assert got["x.map"].kvlist_value.values[0].value.string_value == "v"
    (tmp_path / "traces-000001.jsonl").write_text(text + "\n")
    frame = load(tmp_path, cache=False).spans
    assert frame.height == 1


def _with_attributes(span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
    return ReadableSpan(
        name=span.name,
        context=span.get_span_context(),
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        kind=span.kind,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


LAYOUT: list[tuple[str, type]] = [
    ("s", str),
    ("i", int),
    ("f", float),
    ("b", bool),
    ("t", tuple),
    ('ключ "%d%%"', str),  # a key with % signs: not a placeholder
    ("f2", float),
]
USUAL: list[tuple[Any, ...]] = [
    ("plain", 0, 0.5, True, ("stop",), "", -0.0),
    ('héllo "q" \\ \n\u2028 ✓ </x>', -(2**63), 1e-300, False, (), "%s %d", 1e16),
    ("x", 2**63 - 1, 6.7e-07, True, ("a", "ü", ""), "y", 3.0),
]
UNUSUAL: list[tuple[Any, ...]] = [
    ("x", 1, math.nan, True, ("a",), "y", 1.0),  # NaN
    ("x", 1, 0.5, True, ("a",), "y", -math.inf),  # an infinity
    ("x", True, 0.5, True, ("a",), "y", 1.0),  # a bool where an int goes
    ("x", 1, 1, True, ("a",), "y", 1.0),  # an int where a float goes
    (Reason("x"), 1, 0.5, True, ("a",), "y", 1.0),  # a str subclass
    ("x", 1, 0.5, True, ("a", 1), "y", 1.0),  # a tuple item of another type
    ("x", 1, 0.5, True, ["a"], "y", 1.0),  # a list
    (None, 1, 0.5, True, ("a",), "y", 1.0),
]


@pytest.mark.parametrize("values", USUAL, ids=repr)
def test_a_template_fills_in_what_attributes_text_writes(values: tuple[Any, ...]) -> None:
    template = AttributesTemplate(LAYOUT)
    assert template.fill(values) == attributes_text(dict(zip(template.keys, values, strict=True)))


@pytest.mark.parametrize("values", UNUSUAL, ids=repr)
def test_a_template_leaves_unusual_values_to_attributes_text(values: tuple[Any, ...]) -> None:
    assert AttributesTemplate(LAYOUT).fill(values) is None


def test_a_template_of_one_value_per_type() -> None:
    # One position of a kind: the getters must still hand out tuples.
    for key, kind, value in [("s", str, "v"), ("f", float, 0.25), ("b", bool, False)]:
        assert AttributesTemplate([(key, kind)]).fill((value,)) == attributes_text({key: value})
    assert AttributesTemplate([]).fill(()) == ""


def test_a_template_writes_floats_as_json_does_across_their_range() -> None:
    # The numbers' text comes from msgspec, redone with repr where its notation differs; json's
    # own text is the reference, over random magnitudes, random bit patterns and the edges.
    rng = random.Random(7)
    edges = [0.0, -0.0, 1e-4, 9.999999999999999e-05, 1e16, 9999999999999998.0, 5e-324, 0.1]
    floats = [*edges, *(-x for x in edges), sys.float_info.max, sys.float_info.min]
    floats += [rng.uniform(-1, 1) * 10 ** rng.uniform(-8, 20) for _ in range(100_000)]
    for _ in range(60_000):
        (x,) = struct.unpack("d", rng.getrandbits(64).to_bytes(8, "little"))
        if math.isfinite(x):
            floats.append(x)
    floats += [0.5] * (-len(floats) % 8)
    template = AttributesTemplate([("n", int)] + [(f"f{i}", float) for i in range(8)])
    for k in range(0, len(floats), 8):
        values = (k, *floats[k : k + 8])
        want = ",".join(
            '{"key":'
            + json.dumps(key)
            + ',"value":'
            + json.dumps(any_value(v)).replace(" ", "")
            + "}"
            for key, v in zip(template.keys, values, strict=True)
        )
        assert template.fill(values) == want, values


@pytest.mark.parametrize("state", ["", "vendor=abc,other=1"])
@pytest.mark.parametrize("parent", [0, 0x00F067AA0BA902B7])
def test_child_spans_text_is_span_text(state: str, parent: int) -> None:
    spans = [("queue", 1, 10, 20), ("préfill", 2**64 - 1, 20, 30), ("decode", 3, 30, 2**62)]
    args = (0x0AF7651916CD43DD8448EB211C80319C, state, parent, 0x101, KIND_INTERNAL)
    want = [
        span_text(args[0], sid, state, parent, 0x101, name, KIND_INTERNAL, b, e, "", "", "{}")
        for name, sid, b, e in spans
    ]
    assert child_spans_text(*args, spans) == want
    assert child_spans_text(*args, []) == []
