"""configure() + the telemetry thread: request records -> spans, metrics and store lines."""

from __future__ import annotations

import bisect
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

import sagellm_obs.telemetry as telemetry_mod
from sagellm_obs import semconv as sc
from sagellm_obs.store import files_of, iter_jsonl
from sagellm_obs.store.otlp_json import encode_spans, parse_traces_line
from sagellm_obs.telemetry import AdvancedOptions, RequestRecord, Telemetry, configure

MODEL = "tiny-model"
PARENT_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_SPAN_ID = 0x00F067AA0BA902B7
GIVEN_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PROMPT_MARKER = "purple-elephant-prompt-7731"

MakeRecord = Callable[..., RequestRecord]


def _ctx(span: ReadableSpan) -> SpanContext:
    ctx = span.get_span_context()
    assert ctx is not None
    return ctx


@dataclass
class Setup:
    telemetry: Telemetry
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    @property
    def run_dir(self) -> Path:
        assert self.telemetry.run_dir is not None
        return self.telemetry.run_dir

    def submit(self, *records: RequestRecord) -> None:
        for r in records:
            self.telemetry.submit_request(r)
        assert self.telemetry.flush(timeout=10)

    def server_spans(self) -> dict[str, ReadableSpan]:
        return {
            str(s.attributes[sc.SAGELLM_REQUEST_ID]): s  # type: ignore[index]
            for s in self.spans.get_finished_spans()
            if s.kind == SpanKind.SERVER
        }

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        pid = _ctx(parent).span_id
        kids = [
            s
            for s in self.spans.get_finished_spans()
            if s.parent is not None and s.parent.span_id == pid
        ]
        return sorted(kids, key=lambda s: s.start_time or 0)

    def metrics(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }

    def store_spans(self) -> dict[int, Any]:
        out = {}
        for f in files_of(self.run_dir, "traces"):
            for _, obj in iter_jsonl(f):
                for rs in parse_traces_line(obj).resource_spans:
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            out[int.from_bytes(span.span_id, "big")] = span
        return out

    def exported_bytes(self) -> bytes:
        """Every byte that left through an exporter: the run folder and the in-memory spans."""
        blobs = [p.read_bytes() for p in sorted(self.run_dir.iterdir()) if p.is_file()]
        blobs.append(json.dumps(encode_spans(self.spans.get_finished_spans())).encode())
        return b"\n".join(blobs)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    tel = configure(
        run_dir=tmp_path / "run",
        engine_id="engine-test",
        otlp_endpoint=False,
        advanced=AdvancedOptions(
            span_exporters=[spans],
            metric_readers=[reader],
            simple_processors=True,
            metric_export_interval=3600,
        ),
        make_current=False,
    )
    yield Setup(tel, spans, reader)
    tel.shutdown()


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    assert span.attributes is not None
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in span.attributes.items()}


def test_records_become_server_spans_with_ordered_phase_children(
    setup: Setup, records: MakeRecord
) -> None:
    anchor = setup.telemetry.anchor
    recs = [
        records(anchor, i, queue=0.001 * (i + 1), prefill=0.01 * (i + 1), decode=0.05 * (i + 1))
        for i in range(5)
    ]
    setup.submit(*recs)
    by_id = setup.server_spans()
    assert sorted(by_id) == [r.request_id for r in recs]
    for r in recs:
        span = by_id[r.request_id]
        assert span.name == f"text_completion {MODEL}" == sc.request_span_name(r.operation, MODEL)
        assert span.status.status_code is StatusCode.UNSET
        assert span.start_time == int(r.arrival_time * 1e9)
        assert span.end_time == span.start_time + int(r.e2e * 1e9)
        (event,) = span.events
        assert event.name == sc.EVENT_FIRST_TOKEN
        assert event.timestamp == span.start_time + int(r.ttft * 1e9)

        kids = setup.children(span)
        assert [k.name for k in kids] == list(sc.PHASE_SPANS)
        assert all(k.kind == SpanKind.INTERNAL for k in kids)
        assert {_ctx(k).trace_id for k in kids} == {_ctx(span).trace_id}
        for kid in kids:
            assert kid.start_time is not None
            assert kid.end_time is not None
            assert span.start_time <= kid.start_time <= kid.end_time <= span.end_time
        queue, prefill, decode = kids
        assert queue.end_time == prefill.start_time
        assert prefill.end_time == decode.start_time
        for kid, seconds in ((queue, r.queue), (prefill, r.prefill), (decode, r.decode)):
            assert kid.start_time is not None
            assert kid.end_time is not None
            assert kid.end_time - kid.start_time == pytest.approx(seconds * 1e9, abs=1_000)
        assert queue.start_time == anchor.to_epoch_ns(r.queued_ts)
        assert decode.end_time == anchor.to_epoch_ns(r.last_token_ts)
    # Root spans without a traceparent or a given trace id get fresh, distinct trace ids.
    trace_ids = {_ctx(s).trace_id for s in by_id.values()}
    assert len(trace_ids) == len(recs)
    assert all(s.parent is None for s in by_id.values())
    assert setup.telemetry.stats()["requests_recorded"] == len(recs)


def test_span_attributes_follow_semconv(setup: Setup, records: MakeRecord) -> None:
    anchor = setup.telemetry.anchor
    r = records(anchor, 3, top_k=40, seed=1234, preemptions=2, clock_issues=["x < y"])
    setup.submit(r)
    attrs = _attrs(setup.server_spans()[r.request_id])
    expected = {
        sc.GEN_AI_OPERATION_NAME: "text_completion",
        sc.GEN_AI_PROVIDER_NAME: "vllm",
        sc.GEN_AI_REQUEST_MODEL: MODEL,
        sc.GEN_AI_RESPONSE_MODEL: MODEL,
        sc.GEN_AI_RESPONSE_ID: "req-3",
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ["stop"],
        sc.GEN_AI_REQUEST_STREAM: True,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 32,
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.7,
        sc.GEN_AI_REQUEST_TOP_P: 0.9,
        sc.GEN_AI_REQUEST_TOP_K: 40,
        sc.GEN_AI_REQUEST_SEED: 1234,
        sc.GEN_AI_USAGE_INPUT_TOKENS: 43,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 9,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 16,
        sc.GEN_AI_REQUEST_ID: "req-3",
        sc.GEN_AI_LATENCY_TIME_IN_QUEUE: r.queue,
        sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN: r.ttft,
        sc.GEN_AI_LATENCY_E2E: r.e2e,
        sc.GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL: r.prefill,
        sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE: r.decode,
        sc.GEN_AI_LATENCY_TIME_IN_MODEL_INFERENCE: r.inference,
        sc.SAGELLM_TPOT: r.tpot,
        sc.SAGELLM_REQUEST_ID: "req-3",
        sc.SAGELLM_TRACE_ID: "proto-trace-3",
        sc.SAGELLM_ENGINE_ID: "engine-test",
        sc.SAGELLM_CACHED_PROMPT_TOKENS: 16,
        sc.SAGELLM_COMPUTED_PROMPT_TOKENS: 43 - 16,
        sc.SAGELLM_PREEMPTIONS: 2,
        sc.SAGELLM_ARRIVAL_UNIX_NANO: int(r.arrival_time * 1e9),
        sc.SAGELLM_KV_TOKENS: 52,
        sc.SAGELLM_KV_BYTES: 52 * 1024,
        sc.SAGELLM_CLOCK_ISSUES: ["x < y"],
    }
    assert attrs == expected
    for key in attrs:
        assert key.startswith(("gen_ai.", "sagellm.", "error.")), key
    # The resource names the engine and the run.
    resource = setup.server_spans()[r.request_id].resource.attributes
    assert resource[sc.RESOURCE_ENGINE_ID] == "engine-test"
    assert resource[sc.RESOURCE_RUN_ID] == setup.telemetry.store.run_id  # type: ignore[union-attr]
    assert resource["service.name"] == sc.SERVICE_NAME_DEFAULT


def test_traceparent_and_given_trace_id(setup: Setup, records: MakeRecord) -> None:
    anchor = setup.telemetry.anchor
    child_of_remote = records(
        anchor,
        0,
        otel_trace_id=PARENT_TRACE_ID,
        parent_span_id=PARENT_SPAN_ID,
        tracestate="vendor=abc,other=1",
    )
    given_id = records(anchor, 1, otel_trace_id=GIVEN_TRACE_ID)
    plain = records(anchor, 2)
    setup.submit(child_of_remote, given_id, plain)
    spans = setup.server_spans()

    remote = spans["req-0"]
    assert remote.parent is not None
    assert remote.parent.span_id == PARENT_SPAN_ID
    assert remote.parent.trace_id == PARENT_TRACE_ID
    assert remote.parent.is_remote
    ctx = _ctx(remote)
    assert ctx.trace_id == PARENT_TRACE_ID
    assert ctx.trace_state.to_header() == "vendor=abc,other=1"
    assert all(_ctx(k).trace_id == PARENT_TRACE_ID for k in setup.children(remote))

    rooted = spans["req-1"]
    assert rooted.parent is None
    assert _ctx(rooted).trace_id == GIVEN_TRACE_ID
    assert all(_ctx(k).trace_id == GIVEN_TRACE_ID for k in setup.children(rooted))

    # The override is one-shot: the next root span gets a fresh id.
    assert _ctx(spans["req-2"]).trace_id not in (GIVEN_TRACE_ID, PARENT_TRACE_ID)

    # The store has the same spans, remote-parent flag included.
    stored = setup.store_spans()
    assert set(stored) == {_ctx(s).span_id for s in setup.spans.get_finished_spans()}
    stored_remote = stored[ctx.span_id]
    assert stored_remote.parent_span_id == PARENT_SPAN_ID.to_bytes(8, "big")
    assert stored_remote.flags & 0x300 == 0x300
    assert stored_remote.trace_state == "vendor=abc,other=1"


def test_unsampled_traceparent_is_respected(setup: Setup, records: MakeRecord) -> None:
    anchor = setup.telemetry.anchor
    r = records(
        anchor,
        0,
        otel_trace_id=PARENT_TRACE_ID,
        parent_span_id=PARENT_SPAN_ID,
        parent_sampled=False,
    )
    setup.submit(r)
    # ParentBased sampling: an unsampled remote parent means no recorded spans at all.
    assert setup.server_spans() == {}
    assert setup.store_spans() == {}
    assert setup.telemetry.stats()["requests_recorded"] == 1


def _expected_buckets(values: list[float], bounds: tuple[float, ...]) -> list[int]:
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[bisect.bisect_left(bounds, v)] += 1
    return counts


def _points(metric: Any) -> list[Any]:
    return list(metric.data.data_points)


def test_histograms_use_semconv_buckets_and_count_every_record(
    setup: Setup, records: MakeRecord
) -> None:
    anchor = setup.telemetry.anchor
    ok = [
        records(anchor, i, queue=0.0004 * (i + 1), prefill=0.003 * (i + 1), decode=0.02 * i)
        for i in range(6)
    ]
    failed = [
        records(
            anchor,
            10 + i,
            error_type="EngineDeadError",
            error_code="INTERNAL",
            finish_reason="error",
        )
        for i in range(2)
    ]
    setup.submit(*ok, *failed)
    metrics = setup.metrics()
    n_ok, n_all = len(ok), len(ok) + len(failed)

    def hist(spec: sc.MetricSpec, expect_count: int) -> list[Any]:
        points = _points(metrics[spec.name])
        assert sum(p.count for p in points) == expect_count, spec.name
        for p in points:
            assert tuple(p.explicit_bounds) == spec.buckets, spec.name
        assert metrics[spec.name].unit == spec.unit
        return points

    (ttft,) = hist(sc.M_TTFT, n_ok)
    assert list(ttft.bucket_counts) == _expected_buckets([r.ttft for r in ok], sc.BUCKETS_TTFT)
    assert ttft.sum == pytest.approx(sum(r.ttft for r in ok))
    (queue,) = hist(sc.M_QUEUE, n_ok)
    assert list(queue.bucket_counts) == _expected_buckets([r.queue for r in ok], sc.BUCKETS_PHASE)
    hist(sc.M_PREFILL, n_ok)
    hist(sc.M_DECODE, n_ok)  # output_tokens > 1 for all
    (tpot,) = hist(sc.M_TPOT, n_ok)
    assert list(tpot.bucket_counts) == _expected_buckets([r.tpot for r in ok], sc.BUCKETS_TPOT)
    # Durations: every record, errors in their own series with error.type.
    duration = hist(sc.M_REQUEST_DURATION, n_all)
    by_error = {p.attributes.get(sc.ERROR_TYPE): p.count for p in duration}
    assert by_error == {None: n_ok, "EngineDeadError": len(failed)}
    # Tokens: one input and one output point per successful request, in their own histograms
    # (the current GenAI shape, no gen_ai.token.type); the legacy histogram is off by default.
    (tokens_in,) = hist(sc.M_REQUEST_INPUT_TOKENS, n_ok)
    (tokens_out,) = hist(sc.M_REQUEST_OUTPUT_TOKENS, n_ok)
    assert tokens_in.sum == sum(r.prompt_tokens for r in ok)
    assert tokens_out.sum == sum(r.output_tokens for r in ok)
    assert sc.GEN_AI_TOKEN_TYPE not in tokens_in.attributes
    assert sc.M_TOKEN_USAGE.name not in metrics
    # The request counter.
    requests = _points(metrics[sc.M_REQUESTS.name])
    assert sum(p.value for p in requests) == n_all
    assert {
        (p.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS], p.attributes.get(sc.ERROR_TYPE))
        for p in requests
    } == {("stop", None), ("error", "EngineDeadError")}
    for p in requests:
        assert p.attributes[sc.GEN_AI_REQUEST_MODEL] == MODEL
        assert p.attributes[sc.GEN_AI_OPERATION_NAME] == "text_completion"


def test_error_records_get_error_status_and_error_type(setup: Setup, records: MakeRecord) -> None:
    anchor = setup.telemetry.anchor
    after_first_token = records(
        anchor, 0, error_type="EngineDeadError", error_code="INTERNAL", finish_reason="error"
    )
    queued_only = records(
        anchor,
        1,
        error_type="TimeoutError",
        finish_reason="abort",
        first_token_ts=0.0,
        last_token_ts=0.0,
        ttft=0.0,
        prefill=0.0,
        decode=0.0,
        output_tokens=0,
        cancelled=True,
    )
    never_scheduled = records(
        anchor, 2, error_type="Cancelled", scheduled_ts=0.0, first_token_ts=0.0, last_token_ts=0.0
    )
    setup.submit(after_first_token, queued_only, never_scheduled)
    spans = setup.server_spans()
    for r, phases in (
        (after_first_token, ["queue", "prefill", "decode"]),
        (queued_only, ["queue"]),
        (never_scheduled, []),
    ):
        span = spans[r.request_id]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == r.error_type
        attrs = _attrs(span)
        assert attrs[sc.ERROR_TYPE] == r.error_type
        assert [k.name for k in setup.children(span)] == phases
    assert _attrs(spans["req-0"])[sc.SAGELLM_ERROR_CODE] == "INTERNAL"
    assert _attrs(spans["req-1"])[sc.SAGELLM_CANCELLED] is True
    assert sc.EVENT_FIRST_TOKEN not in [e.name for e in spans["req-1"].events]
    stored = setup.store_spans()[_ctx(spans["req-1"]).span_id]
    assert stored.status.code == 2
    assert stored.status.message == "TimeoutError"


def _step(i: int, **over: Any) -> dict[str, Any]:
    step = {
        sc.STEP_TIME_UNIX_NANO: 1_800_000_000_000_000_000 + i,
        sc.STEP_ENGINE_ID: "engine-test",
        sc.STEP_INDEX: i,
        sc.STEP_RUNNING: 3 + i,
        sc.STEP_WAITING: 10 - i,
        sc.STEP_KV_USAGE: 0.1 * (i + 1),
        sc.STEP_PREFIX_QUERIES: 100,
        sc.STEP_PREFIX_HITS: 25 * i,
        sc.STEP_PROMPT_TOKENS: 64,
        sc.STEP_CACHED_PROMPT_TOKENS: 16,
        sc.STEP_GENERATION_TOKENS: 3,
        sc.STEP_PREEMPTIONS: i % 2,
        sc.STEP_FINISHED: 1,
    }
    step.update(over)
    return step


def test_step_records_land_in_the_store_and_update_instruments(setup: Setup) -> None:
    steps = [_step(i) for i in range(4)]
    for s in steps:
        setup.telemetry.submit_step(s)
    assert setup.telemetry.flush()
    stored = [obj for f in files_of(setup.run_dir, "steps") for _, obj in iter_jsonl(f)]
    assert stored == steps
    metrics = setup.metrics()
    engine = {sc.SAGELLM_ENGINE_ID: "engine-test"}

    def value(spec: sc.MetricSpec) -> Any:
        (point,) = _points(metrics[spec.name])
        assert dict(point.attributes) == engine
        return point.value

    assert value(sc.M_KV_USAGE) == pytest.approx(0.4)
    assert value(sc.M_RUNNING) == 6
    assert value(sc.M_WAITING) == 7
    assert value(sc.M_PREFIX_QUERIES) == 400
    assert value(sc.M_PREFIX_HITS) == 25 * (0 + 1 + 2 + 3)
    assert value(sc.M_PROMPT_TOKENS) == 256
    assert value(sc.M_GENERATION_TOKENS) == 12
    assert value(sc.M_PREEMPTIONS) == 2
    assert setup.telemetry.stats()["steps_recorded"] == 4

    # Counters accumulate across drains; gauges take the newest value.
    setup.telemetry.submit_step(_step(9, **{sc.STEP_KV_USAGE: 0.05}))
    assert setup.telemetry.flush()
    metrics = setup.metrics()
    assert value(sc.M_PREFIX_QUERIES) == 500
    assert value(sc.M_KV_USAGE) == pytest.approx(0.05)


def test_a_malformed_step_is_counted_not_raised(setup: Setup) -> None:
    bad = _step(0)
    del bad[sc.STEP_KV_USAGE]
    setup.telemetry.submit_step(bad)
    assert setup.telemetry.flush()
    assert setup.telemetry.stats()["record_failures"] == 1
    setup.telemetry.submit_step(_step(1))
    assert setup.telemetry.flush()
    assert setup.telemetry.stats()["steps_recorded"] == 1
    stored = [obj for f in files_of(setup.run_dir, "steps") for _, obj in iter_jsonl(f)]
    assert stored == [_step(1)]


def test_no_prompt_content_is_exported_unless_given(setup: Setup, records: MakeRecord) -> None:
    anchor = setup.telemetry.anchor
    token_ids = list(range(7000, 7300))  # 300 tokens: two full 128-token blocks
    r = records(anchor, 0, prompt_token_ids=token_ids)
    setup.submit(r)
    attrs = _attrs(setup.server_spans()["req-0"])
    assert sc.GEN_AI_INPUT_MESSAGES not in attrs
    assert sc.GEN_AI_OUTPUT_MESSAGES not in attrs
    hashes = attrs[sc.SAGELLM_PREFIX_HASH]
    assert len(hashes) == 2
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes)
    exported = setup.exported_bytes()
    assert PROMPT_MARKER.encode() not in exported
    # Neither are the token ids themselves (only their chained block hashes).
    assert b"7000,7001" not in exported.replace(b" ", b"")
    # A token id standing alone (not inside a timestamp or a hex id, where its digits can occur by
    # chance: a run folder's manifest times made the plain substring check flaky).
    assert not re.search(rb"(?<![0-9A-Za-z.])7127(?![0-9A-Za-z])", exported)

    messages = json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": f"say {PROMPT_MARKER}"}]}]
    )
    answer = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "ok"}]}])
    captured = records(anchor, 1, input_messages=messages, output_messages=answer)
    setup.submit(captured)
    attrs = _attrs(setup.server_spans()["req-1"])
    assert attrs[sc.GEN_AI_INPUT_MESSAGES] == messages
    assert attrs[sc.GEN_AI_OUTPUT_MESSAGES] == answer
    assert PROMPT_MARKER.encode() in setup.exported_bytes()
    stored = setup.store_spans()[_ctx(setup.server_spans()["req-1"]).span_id]
    stored_attrs = {kv.key: kv.value.string_value for kv in stored.attributes}
    assert stored_attrs[sc.GEN_AI_INPUT_MESSAGES] == messages


def test_manifest_describes_the_run(setup: Setup) -> None:
    manifest = json.loads((setup.run_dir / "manifest.json").read_text())
    assert manifest["engine_id"] == "engine-test"
    assert manifest["capture_content"] is False
    assert manifest["otlp"] == []
    assert manifest["service_name"] == sc.SERVICE_NAME_DEFAULT
    assert "python" in manifest["versions"]


def _telemetry_threads() -> set[threading.Thread]:
    names = ("sagellm-obs-telemetry", "OtelBatchSpanRecordProcessor", "OtelPeriodicExporting")
    return {t for t in threading.enumerate() if t.is_alive() and t.name.startswith(names)}


def test_reconfigure_twice_is_safe_and_leaves_no_thread(
    tmp_path: Path, records: MakeRecord
) -> None:
    before = _telemetry_threads()
    first = configure(run_dir=tmp_path / "a", engine_id="e1", otlp_endpoint=False)
    assert telemetry_mod.current() is first
    first_thread = first.pipeline._thread
    assert first_thread.is_alive()
    second = configure(run_dir=tmp_path / "b", engine_id="e2", otlp_endpoint=False)
    try:
        assert telemetry_mod.current() is second
        assert not first_thread.is_alive()
        first.shutdown()  # already shut down by configure(): a no-op
        assert json.loads((tmp_path / "a" / "manifest.json").read_text())["ended_at"] is not None
        second.submit_request(records(second.anchor, 0))
        assert second.flush()
        assert second.stats()["requests_recorded"] == 1
        third = configure(run_dir=tmp_path / "c", engine_id="e3", otlp_endpoint=False)
        assert not second.pipeline._thread.is_alive()
        assert telemetry_mod.current() is third
    finally:
        telemetry_mod.shutdown()
    assert telemetry_mod.current() is None
    telemetry_mod.shutdown()  # nothing current: a no-op
    leftover = _telemetry_threads() - before
    assert not [t.name for t in leftover if t.name == "sagellm-obs-telemetry"]
    assert leftover == set(), [t.name for t in leftover]
    # The spans of the second run reached its store before it was replaced.
    lines = [obj for f in files_of(tmp_path / "b", "traces") for _, obj in iter_jsonl(f)]
    assert sum(len(ss["spans"]) for o in lines for rs in o["resourceSpans"]
               for ss in rs["scopeSpans"]) == 4  # fmt: skip


def test_make_current_false_leaves_the_current_one_alone(tmp_path: Path) -> None:
    current = configure(run_dir=tmp_path / "cur", otlp_endpoint=False)
    try:
        side = configure(run_dir=tmp_path / "side", otlp_endpoint=False, make_current=False)
        assert telemetry_mod.current() is current
        assert current.pipeline._thread.is_alive()
        side.shutdown()
        assert current.pipeline._thread.is_alive()
    finally:
        telemetry_mod.shutdown()
