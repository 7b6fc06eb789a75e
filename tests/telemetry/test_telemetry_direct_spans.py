"""Direct spans (store text, ReadableSpans) against the SDK Tracer's, field by field.

The same records go through two telemetries with the same deterministic id generator: one takes
the direct way, the other is forced through ``Tracer.start_span`` by a span processor of the
user's (which is what switches the pipeline over in real use). Store lines, frames, exported
``ReadableSpan`` objects and metric points must not differ.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from sagellm_obs import frames
from sagellm_obs import semconv as sc
from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.protocol.tracecontext import otel_trace_id
from sagellm_obs.store import files_of, iter_jsonl
from sagellm_obs.store.otlp_json import parse_traces_line
from sagellm_obs.telemetry import RequestRecord
from sagellm_obs.testing import deterministic_telemetry as compare_telemetry
from tests.telemetry.pipeline_setup import Setup

MakeRecord = Callable[..., RequestRecord]
PARENT_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_SPAN_ID = 0x00F067AA0BA902B7


class Reason(str, enum.Enum):
    LENGTH = "length"


class Seconds(float):
    """A float subclass (as numpy's float64 is): encoded through the generic path."""


def _side(root: Path, name: str, *, through_tracer: bool) -> Setup:
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    # The reference side records its metric points through the SDK's instruments too.
    tel = compare_telemetry(
        root / name,
        span_exporters=[spans],
        metric_readers=[reader],
        sdk_request_metrics=through_tracer,
    )
    if through_tracer:
        tel.tracer_provider.add_span_processor(SpanProcessor())  # a user's processor
    return Setup(tel, spans, reader)


@pytest.fixture
def sides(tmp_path: Path) -> Iterator[tuple[Setup, Setup]]:
    direct = _side(tmp_path, "direct", through_tracer=False)
    sdk = _side(tmp_path, "sdk", through_tracer=True)
    sdk.telemetry.pipeline.spans.anchor = direct.telemetry.anchor  # one clock story
    yield direct, sdk
    direct.telemetry.shutdown()
    sdk.telemetry.shutdown()


def _records(make: MakeRecord, anchor: ClockAnchor) -> list[RequestRecord]:
    messages = json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": 'héllo "q" \n\u2028 </x> ✓'}]}]
    )
    return [
        make(anchor, 0),
        make(anchor, 1, otel_trace_id=int(otel_trace_id("proto-trace-1"), 16)),
        make(  # a child of a sampled remote parent, with tracestate
            anchor,
            2,
            otel_trace_id=PARENT_TRACE_ID,
            parent_span_id=PARENT_SPAN_ID,
            tracestate="vendor=abc,other=1",
        ),
        make(  # an unsampled remote parent: no spans at all
            anchor,
            3,
            otel_trace_id=PARENT_TRACE_ID,
            parent_span_id=PARENT_SPAN_ID + 1,
            parent_sampled=False,
        ),
        make(anchor, 4, parent_span_id=PARENT_SPAN_ID),  # an invalid parent (no trace id)
        make(  # failed after the first token
            anchor, 5, error_type="EngineDeadError", error_code="INTERNAL", finish_reason="error"
        ),
        make(  # aborted while queued
            anchor,
            6,
            error_type="TimeoutError",
            finish_reason="abort",
            first_token_ts=0.0,
            last_token_ts=0.0,
            ttft=0.0,
            prefill=0.0,
            decode=0.0,
            output_tokens=0,
            cancelled=True,
        ),
        make(anchor, 7, error_type="Cancelled", scheduled_ts=0.0, first_token_ts=0.0),
        make(
            anchor,
            8,
            top_k=40,
            seed=1234,
            preemptions=2,
            clock_issues=["x < y", "ü"],
            prompt_token_ids=list(range(300)),
            input_messages=messages,
            output_messages=messages,
        ),
        make(  # values the SDK cleans: an str enum, a float subclass, a Decimal (-> str)
            anchor,
            9,
            finish_reason=Reason.LENGTH,
            temperature=Seconds(0.25),
            seed=Decimal(7),
            output_tokens=1,
        ),
        make(  # a NaN (the template's fallback), non-ASCII text, optional keys absent
            anchor,
            10,
            request_id='réq-10 "✓"',
            trace_id="трасса\u2028",
            temperature=math.nan,
            max_tokens=None,
            top_p=None,
        ),
    ]


def _store(run: Path) -> dict[str, dict[str, Any]]:
    """span id -> the span as written (canonical JSON text) and as parsed, with its resource."""
    out: dict[str, dict[str, Any]] = {}
    for f in files_of(run, "traces"):
        for _, obj in iter_jsonl(f):
            parsed = parse_traces_line(obj)
            for rs_obj, rs in zip(obj["resourceSpans"], parsed.resource_spans, strict=True):
                for ss_obj, ss in zip(rs_obj["scopeSpans"], rs.scope_spans, strict=True):
                    for span_obj, span in zip(ss_obj["spans"], ss.spans, strict=True):
                        out[span_obj["spanId"]] = {
                            "text": json.dumps(span_obj, sort_keys=True),
                            "span": MessageToDict(span),
                            "resource": MessageToDict(rs.resource),
                            "resource_schema": rs.schema_url,
                            "scope": MessageToDict(ss.scope),
                            "scope_schema": ss.schema_url,
                        }
    return out


def _frame(run: Path, name: str) -> pl.DataFrame:
    """A frame of ``run``, sorted, without ``source_line``: which line a span landed in depends
    on when the two ways' batch timers fired (a loaded machine splits a batch), not on what
    they write."""
    df: pl.DataFrame = getattr(frames.load(run, cache=False), name)
    df = df.drop("source_line", strict=False)
    return df.sort(df.columns)


def _readable(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name,
        "context": (ctx.trace_id, ctx.span_id, int(ctx.trace_flags), ctx.is_remote),
        "trace_state": ctx.trace_state.to_header(),
        "parent": span.parent,
        "kind": span.kind,
        "start": span.start_time,
        "end": span.end_time,
        "attributes": dict(span.attributes or {}),
        "attribute_types": {k: type(v) for k, v in (span.attributes or {}).items()},
        "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
        "events": [
            (
                e.name,
                e.timestamp,
                type(e.attributes),
                dict(e.attributes or {}),
                e.dropped_attributes,
            )
            for e in span.events
        ],
        "links": list(span.links),
        "status": (span.status.status_code, span.status.description),
        "resource": dict(span.resource.attributes),
        "scope": span.instrumentation_scope,
    }


def _metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points = []
                for p in m.data.data_points:
                    d = json.loads(p.to_json())
                    for key in ("start_time_unix_nano", "time_unix_nano"):
                        d.pop(key, None)
                    for ex in d.get("exemplars", []):
                        ex.pop("time_unix_nano", None)  # when the point was recorded
                    points.append(d)
                out[m.name] = sorted(points, key=lambda d: json.dumps(d, sort_keys=True))
    return out


def test_direct_spans_match_the_sdk_path(
    sides: tuple[Setup, Setup], records: MakeRecord, caplog: pytest.LogCaptureFixture
) -> None:
    direct, sdk = sides
    recs = _records(records, direct.telemetry.anchor)
    direct.submit(*recs)
    sdk.submit(*recs)
    assert direct.telemetry.pipeline.spans.direct
    assert not sdk.telemetry.pipeline.spans.direct
    for side in sides:
        assert side.telemetry.stats()["requests_recorded"] == len(recs)
        assert side.telemetry.stats()["record_failures"] == 0

    ours, theirs = _store(direct.run_dir), _store(sdk.run_dir)
    # 11 records: 4 spans for the complete ones, fewer for the failed early, none when the
    # remote parent is unsampled.
    assert len(theirs) == 35
    assert sorted(ours) == sorted(theirs)
    for span_id, want in theirs.items():
        got = ours[span_id]
        assert got["text"] == want["text"], span_id  # the very same JSON object
        assert got == want, span_id
    # A few fields spelled out, so a failure above is easy to read.
    by_name = {(v["span"]["name"], v["span"]["spanId"]): v["span"] for v in ours.values()}
    servers = [s for (name, _), s in by_name.items() if name.startswith("text_completion")]
    assert len(servers) == 10
    remote = next(s for s in servers if s.get("parentSpanId"))
    assert remote["traceState"] == "vendor=abc,other=1"
    assert remote["flags"] == 0x301
    attrs = {kv["key"]: kv["value"] for kv in remote["attributes"]}
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == {"intValue": "42"}
    assert attrs[sc.GEN_AI_REQUEST_TEMPERATURE] == {"doubleValue": 0.7}
    assert attrs[sc.GEN_AI_REQUEST_STREAM] == {"boolValue": False}
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == {
        "arrayValue": {"values": [{"stringValue": "stop"}]}
    }

    # The frames a notebook reads are the same too.
    for frame in ("spans", "requests"):
        assert _frame(direct.run_dir, frame).equals(_frame(sdk.run_dir, frame), null_equal=True)

    # What other exporters got: the same ReadableSpans, in the same order.
    exported = [_readable(s) for s in direct.spans.get_finished_spans()]
    expected = [_readable(s) for s in sdk.spans.get_finished_spans()]
    assert [g["name"] for g in exported] == [w["name"] for w in expected]
    for g, w in zip(exported, expected, strict=True):
        assert g == w, g["name"]

    # Metric points, exemplars (trace and span ids) included.
    assert _metric_points(direct.reader) == _metric_points(sdk.reader)


def test_store_only_spans_match_the_sdk_path(
    tmp_path: Path, sides: tuple[Setup, Setup], records: MakeRecord
) -> None:
    # With no exporter of ours the store's text is made without the attribute dict (its
    # template, see telemetry.attributes.request_attributes_text): the same lines again.
    _, sdk = sides
    store_only = Setup(
        compare_telemetry(tmp_path / "store-only"), InMemorySpanExporter(), sdk.reader
    )
    store_only.telemetry.pipeline.spans.anchor = sdk.telemetry.anchor
    try:
        recs = _records(records, sdk.telemetry.anchor)
        store_only.submit(*recs)
        sdk.submit(*recs)
        assert store_only.telemetry.pipeline.spans.direct
        ours, theirs = _store(store_only.run_dir), _store(sdk.run_dir)
        assert len(theirs) == 35
        for span_id, want in theirs.items():
            assert ours[span_id]["text"] == want["text"], span_id
            assert ours[span_id] == want, span_id
        for frame in ("spans", "requests"):
            a, b = _frame(store_only.run_dir, frame), _frame(sdk.run_dir, frame)
            assert a.equals(b, null_equal=True), frame
    finally:
        store_only.telemetry.shutdown()


def test_parent_based_ratio_sampler_is_honoured(
    tmp_path: Path, records: MakeRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    direct = _side(tmp_path, "direct", through_tracer=False)
    sdk = _side(tmp_path, "sdk", through_tracer=True)
    sdk.telemetry.pipeline.spans.anchor = direct.telemetry.anchor
    try:
        anchor = direct.telemetry.anchor
        recs = [
            records(anchor, i, otel_trace_id=int(otel_trace_id(f"ratio-{i}"), 16))
            for i in range(40)
        ]
        recs.append(  # a sampled remote parent wins over the ratio
            records(anchor, 99, otel_trace_id=PARENT_TRACE_ID, parent_span_id=PARENT_SPAN_ID)
        )
        direct.submit(*recs)
        sdk.submit(*recs)
        assert direct.telemetry.pipeline.spans.direct
        ours, theirs = _store(direct.run_dir), _store(sdk.run_dir)
        assert 4 * 5 < len(theirs) < 4 * 36  # some sampled, some not
        assert ours == theirs
        assert _metric_points(direct.reader) == _metric_points(sdk.reader)
    finally:
        direct.telemetry.shutdown()
        sdk.telemetry.shutdown()


def test_other_samplers_go_through_the_tracer(
    tmp_path: Path, records: MakeRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    side = _side(tmp_path, "off", through_tracer=False)
    try:
        side.submit(records(side.telemetry.anchor, 0))
        assert not side.telemetry.pipeline.spans.direct
        assert _store(side.run_dir) == {}
        assert side.spans.get_finished_spans() == ()
    finally:
        side.telemetry.shutdown()


def test_a_users_processor_switches_over_and_other_spans_still_reach_the_store(
    tmp_path: Path, records: MakeRecord
) -> None:
    side = _side(tmp_path, "switch", through_tracer=False)
    tel = side.telemetry
    try:
        anchor = tel.anchor
        side.submit(records(anchor, 0))
        assert tel.pipeline.spans.direct
        seen: list[str] = []

        class Watch(SpanProcessor):
            def on_end(self, span: ReadableSpan) -> None:
                seen.append(span.name)

        tel.tracer_provider.add_span_processor(Watch())
        side.submit(records(anchor, 1))
        assert not tel.pipeline.spans.direct
        assert seen == [*sc.PHASE_SPANS, sc.request_span_name(sc.OP_TEXT_COMPLETION, "tiny-model")]
        # Spans other code makes with the telemetry's tracer go to the store as before.
        tel.tracer.start_span("app work", kind=SpanKind.CLIENT).end()
        assert tel.flush()
        names = sorted(v["span"]["name"] for v in _store(side.run_dir).values())
        assert names.count("app work") == 1
        assert names.count("queue") == 2
        assert len(names) == 9
    finally:
        tel.shutdown()
