"""configure() + the telemetry thread: request records -> spans (phases, attributes, parents,
errors) and no prompt content unless given."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from sagellm_obs import semconv as sc
from sagellm_obs.protocol.timing import ClockAnchor
from tests.telemetry.pipeline_setup import MODEL, MakeRecord, Setup, span_attrs, span_ctx

PARENT_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_SPAN_ID = 0x00F067AA0BA902B7
GIVEN_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PROMPT_MARKER = "purple-elephant-prompt-7731"


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
        assert {span_ctx(k).trace_id for k in kids} == {span_ctx(span).trace_id}
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
    trace_ids = {span_ctx(s).trace_id for s in by_id.values()}
    assert len(trace_ids) == len(recs)
    assert all(s.parent is None for s in by_id.values())
    assert setup.telemetry.stats()["requests_recorded"] == len(recs)


def test_a_wall_clock_step_is_followed(
    setup: Setup, records: MakeRecord, caplog: pytest.LogCaptureFixture
) -> None:
    """vLLM's arrival times follow a wall-clock step; the engine's monotonic stamps must too."""
    now = ClockAnchor.now()
    pipeline = setup.telemetry.pipeline
    # The anchor as taken before the wall clock stepped forward by 53 ms (a VM restored from a
    # snapshot moved this machine's clock so during a suite run).
    pipeline.spans.anchor = ClockAnchor(wall_s=now.wall_s - 0.053, mono_s=now.mono_s)
    r = records(now, 0)  # arrival read from the wall clock after the step
    with caplog.at_level(logging.WARNING, logger="sagellm_obs.telemetry.pipeline"):
        setup.submit(r)
    span = setup.server_spans()[r.request_id]
    queue, _, _ = setup.children(span)
    assert span.start_time is not None and queue.start_time is not None
    # make_record puts the engine queue 1 ms after arrival.
    assert queue.start_time - span.start_time == pytest.approx(1e6, abs=2e3)
    assert setup.telemetry.stats()["clock_steps"] == 1
    (message,) = [m.getMessage() for m in caplog.records]
    assert "wall clock stepped by +53." in message
    assert setup.telemetry.anchor is pipeline.spans.anchor  # what the engine's Metrics use
    # The engine reads the anchor once per finished request, before the telemetry thread sees the
    # record: that read alone follows a step too (the protocol Metrics are built from it).
    pipeline.spans.anchor = ClockAnchor(wall_s=now.wall_s + 0.020, mono_s=now.mono_s)
    engine_side = setup.telemetry.anchor
    assert abs(engine_side.to_epoch(time.monotonic()) - time.time()) < 0.001
    assert setup.telemetry.stats()["clock_steps"] == 2


def test_span_attributes_follow_semconv(setup: Setup, records: MakeRecord) -> None:
    anchor = setup.telemetry.anchor
    r = records(anchor, 3, top_k=40, seed=1234, preemptions=2, clock_issues=["x < y"])
    setup.submit(r)
    attrs = span_attrs(setup.server_spans()[r.request_id])
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
    ctx = span_ctx(remote)
    assert ctx.trace_id == PARENT_TRACE_ID
    assert ctx.trace_state.to_header() == "vendor=abc,other=1"
    assert all(span_ctx(k).trace_id == PARENT_TRACE_ID for k in setup.children(remote))

    rooted = spans["req-1"]
    assert rooted.parent is None
    assert span_ctx(rooted).trace_id == GIVEN_TRACE_ID
    assert all(span_ctx(k).trace_id == GIVEN_TRACE_ID for k in setup.children(rooted))

    # The override is one-shot: the next root span gets a fresh id.
    assert span_ctx(spans["req-2"]).trace_id not in (GIVEN_TRACE_ID, PARENT_TRACE_ID)

    # The store has the same spans, remote-parent flag included.
    stored = setup.store_spans()
    assert set(stored) == {span_ctx(s).span_id for s in setup.spans.get_finished_spans()}
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
        attrs = span_attrs(span)
        assert attrs[sc.ERROR_TYPE] == r.error_type
        assert [k.name for k in setup.children(span)] == phases
    assert span_attrs(spans["req-0"])[sc.SAGELLM_ERROR_CODE] == "INTERNAL"
    assert span_attrs(spans["req-1"])[sc.SAGELLM_CANCELLED] is True
    assert sc.EVENT_FIRST_TOKEN not in [e.name for e in spans["req-1"].events]
    stored = setup.store_spans()[span_ctx(spans["req-1"]).span_id]
    assert stored.status.code == 2
    assert stored.status.message == "TimeoutError"


def test_no_prompt_content_is_exported_unless_given(setup: Setup, records: MakeRecord) -> None:
    anchor = setup.telemetry.anchor
    token_ids = list(range(7000, 7300))  # 300 tokens: two full 128-token blocks
    r = records(anchor, 0, prompt_token_ids=token_ids)
    setup.submit(r)
    attrs = span_attrs(setup.server_spans()["req-0"])
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
    attrs = span_attrs(setup.server_spans()["req-1"])
    assert attrs[sc.GEN_AI_INPUT_MESSAGES] == messages
    assert attrs[sc.GEN_AI_OUTPUT_MESSAGES] == answer
    assert PROMPT_MARKER.encode() in setup.exported_bytes()
    stored = setup.store_spans()[span_ctx(setup.server_spans()["req-1"]).span_id]
    stored_attrs = {kv.key: kv.value.string_value for kv in stored.attributes}
    assert stored_attrs[sc.GEN_AI_INPUT_MESSAGES] == messages
