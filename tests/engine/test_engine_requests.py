"""The instrumented engine against real vLLM and the tiny offline model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from engine_harness import SHARED_PREFIX, EngineHarness
from opentelemetry.trace import SpanKind, StatusCode

from sagellm_obs import semconv as sc
from sagellm_obs.protocol import ErrorCode, ProtocolValidationError, Request
from sagellm_obs.protocol.tracecontext import TraceParent, otel_trace_id
from sagellm_obs.store import files_of, iter_jsonl
from sagellm_obs.store.otlp_json import parse_traces_line

pytestmark = pytest.mark.engine

PARENT = TraceParent(
    version=0, trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7", flags=1
)


def _vllm_ttft_count(h: EngineHarness) -> float:
    """Requests in this engine's own vLLM Prometheus TTFT histogram.

    Read from the engine's PrometheusStatLogger, not the global registry: every new vLLM engine in
    the process re-registers its metrics there.
    """
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    for logger in h.engine.engine.llm.logger_manager.stat_loggers:
        if isinstance(logger, PrometheusStatLogger):
            child = logger.histogram_time_to_first_token[0]
            return float(sum(b.get() for b in child._buckets))
    raise AssertionError("vLLM's PrometheusStatLogger is not installed")


def _hist_points(h: EngineHarness, name: str) -> list[Any]:
    data = h.reader.get_metrics_data()
    assert data is not None
    points = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    points.extend(m.data.data_points)
    return points


def _shared_prefix_requests(tag: str, n: int, parent: TraceParent | None = None) -> list[Request]:
    meta: dict[str, Any] = {"ignore_eos": True}
    if parent is not None:
        meta["traceparent"] = str(parent)
    return [
        Request(
            request_id=f"{tag}-{i}",
            trace_id=f"bench-{tag}-{i}",
            prompt=SHARED_PREFIX + f"Question {i}: what does line {i} do?",
            max_tokens=8,
            metadata=meta,
        )
        for i in range(n)
    ]


def test_concurrent_shared_prefix_spans(harness: EngineHarness) -> None:
    engine = harness.engine
    ttft_before = _vllm_ttft_count(harness)
    # Warm the prefix cache with one request, then send six at once.
    warm = _shared_prefix_requests("warm", 1, PARENT)
    engine.generate(warm[0])
    reqs = _shared_prefix_requests("conc", 6, PARENT)
    responses = engine.generate_batch(reqs)
    harness.flush()

    assert [r.request_id for r in responses] == [r.request_id for r in reqs]
    spans = harness.request_spans()
    for req, resp in zip(reqs, responses, strict=True):
        span = spans[req.request_id]
        assert span.kind == SpanKind.SERVER
        assert span.name == "text_completion tiny-llama"
        # Parented on the incoming traceparent, in the caller's trace.
        assert f"{span.context.trace_id:032x}" == PARENT.trace_id
        assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT.span_id
        kids = harness.children(span)
        assert [k.name for k in kids] == list(sc.PHASE_SPANS)
        for k in kids:
            assert span.start_time <= k.start_time <= k.end_time <= span.end_time
        assert kids[0].end_time == kids[1].start_time and kids[1].end_time == kids[2].start_time
        assert [e.name for e in span.events] == [sc.EVENT_FIRST_TOKEN]
        attrs = span.attributes
        assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 8 == len(resp.output_tokens)
        assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == resp.prompt_tokens
        # The shared prefix is served from the cache after the warm-up.
        assert attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] >= 128
        assert resp.metrics.prefix_hit_rate > 0
        assert attrs[sc.SAGELLM_TRACE_ID] == req.trace_id
        assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)
        assert resp.finish_reason == "length"
    # Our histograms and vLLM's own Prometheus histogram counted every request.
    ttft_points = _hist_points(harness, sc.M_TTFT.name)
    assert sum(p.count for p in ttft_points) >= len(reqs) + 1
    assert list(ttft_points[0].explicit_bounds) == list(sc.BUCKETS_TTFT)
    assert _vllm_ttft_count(harness) - ttft_before == len(reqs) + 1
    # Step records: KV in use and prefix hits observed.
    steps = [obj for f in files_of(harness.run_dir, "steps") for _, obj in iter_jsonl(f)]
    assert max(s[sc.STEP_KV_USAGE] for s in steps) > 0
    assert sum(s[sc.STEP_PREFIX_HITS] for s in steps) > 0


def test_numbers_agree_across_span_metrics_and_vllm(harness: EngineHarness) -> None:
    reqs = _shared_prefix_requests("agree", 4)
    responses = harness.engine.generate_batch(reqs)
    harness.flush()
    spans = harness.request_spans()
    for resp in responses:
        out = harness.outputs[resp.request_id]
        st = out.metrics  # vLLM's RequestStateStats
        m, ts = resp.metrics, resp.metrics.timestamps
        assert ts is not None
        attrs = spans[resp.request_id].attributes
        # TTFT: vLLM's first_token_latency == span == protocol Metrics == Timestamps.
        assert m.ttft_ms == pytest.approx(st.first_token_latency * 1000, abs=1e-6)
        assert attrs[sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN] * 1000 == pytest.approx(
            m.ttft_ms, abs=1e-6
        )
        assert (ts.executed_at - ts.queued_at) * 1000 == pytest.approx(m.ttft_ms, abs=1e-3)
        # Queue, prefill, decode from the engine's monotonic stamps.
        assert attrs[sc.GEN_AI_LATENCY_TIME_IN_QUEUE] == pytest.approx(
            st.scheduled_ts - st.queued_ts, abs=1e-9
        )
        assert m.prefill_ms == pytest.approx((st.first_token_ts - st.scheduled_ts) * 1000, abs=1e-6)
        assert m.decode_ms == pytest.approx((st.last_token_ts - st.first_token_ts) * 1000, abs=1e-6)
        assert attrs[sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE] * 1000 == pytest.approx(
            m.decode_ms, abs=1e-6
        )
        n = len(resp.output_tokens)
        assert m.tpot_ms == pytest.approx(m.decode_ms / (n - 1), abs=1e-6)
        # E2E: span duration == attribute == protocol timestamps.
        span = spans[resp.request_id]
        e2e = attrs[sc.GEN_AI_LATENCY_E2E]
        assert (span.end_time - span.start_time) / 1e9 == pytest.approx(e2e, abs=2e-6)
        assert (ts.completed_at - ts.queued_at) == pytest.approx(e2e, abs=1e-6)
        assert e2e >= st.first_token_latency
        assert span.start_time == pytest.approx(st.arrival_time * 1e9, abs=1e3)
        # Phase spans sit where the converted monotonic stamps say.
        _queue, _prefill, decode = harness.children(span)
        assert (decode.end_time - decode.start_time) / 1e6 == pytest.approx(m.decode_ms, abs=1e-3)
        assert sc.SAGELLM_CLOCK_ISSUES not in attrs
        # Honest KV accounting.
        assert m.kv_used_tokens == resp.prompt_tokens + n - 1
        assert (
            m.kv_used_bytes == m.kv_used_tokens * 2 * 4 * 2 * 64 * 4
        )  # tiny: 4 layers, 2 KV heads
        assert m.peak_mem_mb > 100
        assert m.throughput_tps == pytest.approx(n / e2e)


def test_streaming_events_and_itl(harness: EngineHarness) -> None:
    seen: list[str] = []
    req = Request(
        request_id="stream-1",
        trace_id="stream-1",
        prompt="def fibonacci(n):",
        max_tokens=12,
        stream=True,
        metadata={"ignore_eos": True},
    )
    events = list(harness.engine.stream(req, on_token=lambda d: seen.append(d.content)))
    assert events[0].event == "start"
    assert events[-1].event == "end"
    deltas = [e for e in events[1:-1] if e.event == "delta"]
    assert len(deltas) == len(events) - 2
    end = events[-1]
    assert "".join(d.content for d in deltas) == end.content
    assert [t for d in deltas for t in d.content_tokens] == end.output_tokens
    assert seen == [d.content for d in deltas]
    assert len(end.metrics.itl_list) == len(end.output_tokens) - 1 == 11
    assert all(x >= 0 for x in end.metrics.itl_list)
    harness.flush()
    assert harness.request_spans()["stream-1"].attributes[sc.GEN_AI_REQUEST_STREAM] is True


def test_cancel_mid_stream_aborts_and_is_recorded(harness: EngineHarness) -> None:
    req = Request(
        request_id="cancel-1",
        trace_id="cancel-1",
        prompt="import os\n",
        max_tokens=400,
        stream=True,
        metadata={"ignore_eos": True},
    )
    it = harness.engine.stream(req)
    got = [next(it) for _ in range(4)]
    assert got[0].event == "start"
    it.close()  # type: ignore[attr-defined]
    harness.flush()
    span = harness.request_spans()["cancel-1"]
    assert span.attributes[sc.SAGELLM_CANCELLED] is True
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("abort",)
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] < 400
    llm = harness.engine.engine.llm
    assert llm.output_processor.get_num_unfinished_requests() == 0
    # The engine keeps serving.
    r = harness.engine.completion("x = 1", max_tokens=3, ignore_eos=True)
    assert len(r.output_tokens) == 3


def test_invalid_requests_raise_validation_errors(harness: EngineHarness) -> None:
    engine = harness.engine
    with pytest.raises(ProtocolValidationError) as no_prompt:
        engine.generate(Request(request_id="bad-1", trace_id="bad-1", max_tokens=4))
    assert no_prompt.value.code == ErrorCode.INVALID_ARGUMENT
    assert no_prompt.value.field == "prompt"
    with pytest.raises(ProtocolValidationError) as bad_field:
        engine.generate(
            {"request_id": "bad-2", "trace_id": "bad-2", "prompt": "x", "max_tokens": 0}
        )
    assert bad_field.value.field == "max_tokens"
    with pytest.raises(ProtocolValidationError) as too_long:
        engine.generate(
            Request(request_id="bad-3", trace_id="bad-3", prompt="word " * 3000, max_tokens=4)
        )
    assert too_long.value.code == ErrorCode.INVALID_ARGUMENT
    harness.flush()
    spans = harness.request_spans()
    assert spans["bad-1"].status.status_code == StatusCode.ERROR
    assert spans["bad-3"].attributes[sc.ERROR_TYPE] == "invalid_argument"
    assert engine.completion("ok", max_tokens=2).finish_reason in ("stop", "length")


def test_chat_completion_uses_template_and_chat_operation(harness: EngineHarness) -> None:
    resp = harness.engine.chat_completion(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
        max_tokens=4,
        request_id="chat-1",
        ignore_eos=True,
    )
    assert len(resp.output_tokens) == 4
    harness.flush()
    span = harness.request_spans()["chat-1"]
    assert span.name == "chat tiny-llama"
    assert span.attributes[sc.GEN_AI_OPERATION_NAME] == "chat"


def test_no_prompt_text_exported_unless_captured(harness: EngineHarness) -> None:
    marker = "ZEBRA-MARKER-7731"
    harness.engine.completion(f"{marker} says hello", max_tokens=2, request_id="priv-1")
    harness.flush()
    blob = b"".join(p.read_bytes() for p in harness.run_dir.glob("*.jsonl"))
    assert marker.encode() not in blob
    for s in harness.spans.get_finished_spans():
        assert marker not in json.dumps(dict(s.attributes or {}), default=str)
    harness.telemetry.capture_content = True
    try:
        harness.engine.completion(f"{marker} again", max_tokens=2, request_id="priv-2")
        harness.flush()
    finally:
        harness.telemetry.capture_content = False
    span = harness.request_spans()["priv-2"]
    assert marker in str(span.attributes[sc.GEN_AI_INPUT_MESSAGES])
    assert sc.GEN_AI_OUTPUT_MESSAGES in span.attributes


def test_store_reloads_with_protobuf_parser_even_truncated(
    harness: EngineHarness, tmp_path: Any
) -> None:
    harness.flush()
    harness.telemetry.tracer_provider.force_flush()
    trace_files = files_of(harness.run_dir, "traces")
    assert trace_files
    span_names = set()
    for f in trace_files:
        for _, obj in iter_jsonl(f):
            msg = parse_traces_line(obj)
            for rs in msg.resource_spans:
                for ss in rs.scope_spans:
                    span_names.update(s.name for s in ss.spans)
    assert {"queue", "prefill", "decode", "text_completion tiny-llama"} <= span_names
    # Cut the last file mid-line: every complete line still loads.
    data = trace_files[-1].read_bytes()
    cut = tmp_path / "traces-00001.jsonl"
    cut.write_bytes(data[: len(data) - 50])
    with pytest.warns(UserWarning, match="torn last line"):
        rows = list(iter_jsonl(cut))
    assert len(rows) == data.count(b"\n") - 1


def test_in_process_calls_join_the_current_trace(harness: EngineHarness) -> None:
    """Without a traceparent, a request made under an application's span (here through the
    sync facade, whose event loop runs in another thread) is a child of that span; the
    traceparent, when given, still wins."""
    tracer = harness.telemetry.tracer
    engine = harness.engine
    with tracer.start_as_current_span("Assistant.ask") as app:
        engine.generate(
            {"request_id": "joined-1", "trace_id": "joined-1", "prompt": "a b", "max_tokens": 2}
        )
        list(
            engine.stream(
                {"request_id": "joined-2", "trace_id": "joined-2", "prompt": "c d", "max_tokens": 2}
            )
        )
        (explicit,) = _shared_prefix_requests("joined-explicit", 1, PARENT)
        engine.generate(explicit)
    engine.generate(
        {"request_id": "joined-none", "trace_id": "joined-none", "prompt": "e f", "max_tokens": 2}
    )
    harness.flush()
    spans = harness.request_spans()
    ctx = app.get_span_context()
    for rid in ("joined-1", "joined-2"):
        span = spans[rid]
        assert span.context.trace_id == ctx.trace_id, rid
        assert span.parent is not None and span.parent.span_id == ctx.span_id, rid
        assert [k.name for k in harness.children(span)] == list(sc.PHASE_SPANS)
    assert f"{spans['joined-explicit-0'].context.trace_id:032x}" == PARENT.trace_id
    alone = spans["joined-none"]
    assert alone.parent is None and alone.context.trace_id != ctx.trace_id
    assert f"{alone.context.trace_id:032x}" == otel_trace_id("joined-none")
