"""The instrumented engine against real vLLM and the tiny offline model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from engine_harness import SHARED_PREFIX, EngineHarness
from opentelemetry.trace import SpanKind, StatusCode

from sagellm_obs import semconv as sc
from sagellm_obs.engine import vllm_requests
from sagellm_obs.protocol import (
    ErrorCode,
    ProtocolValidationError,
    Request,
    StreamEventDelta,
)
from sagellm_obs.protocol.tracecontext import TraceParent, otel_trace_id
from sagellm_obs.store import files_of, iter_jsonl
from sagellm_obs.store.otlp_json import parse_traces_line

pytestmark = pytest.mark.engine

PARENT = TraceParent(
    version=0, trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7", flags=1
)


def _hist_points(h: EngineHarness, name: str) -> list[Any]:
    data = h.reader.get_metrics_data()
    if data is None:  # nothing recorded yet (this test run alone)
        return []
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
    ttft_before = harness.vllm_histogram("time_to_first_token")[0]
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
    assert harness.vllm_histogram("time_to_first_token")[0] - ttft_before == len(reqs) + 1
    # Step records: KV in use and prefix hits observed.
    steps = [obj for f in files_of(harness.run_dir, "steps") for _, obj in iter_jsonl(f)]
    assert max(s[sc.STEP_KV_USAGE] for s in steps) > 0
    assert sum(s[sc.STEP_PREFIX_HITS] for s in steps) > 0


_MS = 1e-3  # agreement required where our definition and vLLM's are the same
_VLLM_HISTOGRAMS = {
    "ttft": "time_to_first_token",
    "e2e": "e2e_time_request",
    "queue": "queue_time_request",
    "prefill": "prefill_time_request",
    "decode": "decode_time_request",
    "input_tokens": "num_prompt_tokens_request",
    "output_tokens": "num_generation_tokens_request",
}


def _vllm_histograms(h: EngineHarness) -> dict[str, tuple[float, float]]:
    """``(count, sum)`` of vLLM's own per-request Prometheus histograms of this engine."""
    return {key: h.vllm_histogram(name) for key, name in _VLLM_HISTOGRAMS.items()}


def _our_ttft_histogram(h: EngineHarness) -> tuple[int, float]:
    points = _hist_points(h, sc.M_TTFT.name)
    return sum(p.count for p in points), sum(p.sum for p in points)


def test_numbers_agree_with_vllms_own_span_and_histograms(harness: EngineHarness) -> None:
    """Our figures against vLLM's, never against the values ours were computed from.

    vLLM's side: the ``llm_request`` span vLLM itself built (``OutputProcessor.do_tracing``) and
    exported over OTLP into our receiver, and the Prometheus histograms vLLM's own stat logger
    observed. Where the definitions are the same they agree within 1 ms (docs/vllm-tracing.md).
    """
    before, ours_before = _vllm_histograms(harness), _our_ttft_histogram(harness)
    reqs = _shared_prefix_requests("agree", 4)
    responses = harness.engine.generate_batch(reqs)
    harness.flush()
    after, ours_after = _vllm_histograms(harness), _our_ttft_histogram(harness)
    spans, vllm_spans = harness.request_spans(), harness.vllm_spans()
    figures: dict[str, list[float]] = {key: [] for key in _VLLM_HISTOGRAMS}
    for resp in responses:
        span, theirs = spans[resp.request_id], vllm_spans[resp.request_id]
        # One trace: vLLM's own span is the child of our request span.
        assert theirs.context.trace_id == span.context.trace_id
        assert theirs.parent is not None and theirs.parent.span_id == span.context.span_id
        assert theirs.instrumentation_scope.name == "vllm.tracing.otel"
        m, ts, ours, v = resp.metrics, resp.metrics.timestamps, span.attributes, theirs.attributes
        assert ts is not None
        n = len(resp.output_tokens)
        # TTFT (arrival -> first token, frontend clock) in Metrics, Timestamps and our span.
        assert m.ttft_ms / 1000 == pytest.approx(v[sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN], abs=_MS)
        assert ts.executed_at - ts.queued_at == pytest.approx(
            v[sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN], abs=_MS
        )
        assert ours[sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN] == pytest.approx(
            v[sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN], abs=_MS
        )
        # Queue, prefill, decode (EngineCore clock) and the phase spans that show them.
        queue_s = ours[sc.GEN_AI_LATENCY_TIME_IN_QUEUE]
        assert queue_s == pytest.approx(v[sc.GEN_AI_LATENCY_TIME_IN_QUEUE], abs=_MS)
        # Documented difference: the protocol Timestamps' queue starts at the frontend's
        # arrival, so it also holds tokenization and the hand-over to EngineCore.
        assert ts.scheduled_at - ts.queued_at >= v[sc.GEN_AI_LATENCY_TIME_IN_QUEUE] - _MS
        assert m.prefill_ms / 1000 == pytest.approx(
            v[sc.GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL], abs=_MS
        )
        assert m.decode_ms / 1000 == pytest.approx(
            v[sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE], abs=_MS
        )
        queue, prefill, decode = harness.children(span)
        for phase, key in (
            (queue, sc.GEN_AI_LATENCY_TIME_IN_QUEUE),
            (prefill, sc.GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL),
            (decode, sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE),
        ):
            assert (phase.end_time - phase.start_time) / 1e9 == pytest.approx(v[key], abs=_MS)
        assert m.tpot_ms / 1000 == pytest.approx(
            v[sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE] / (n - 1), abs=_MS
        )
        # E2E and arrival: our span's extent, the Timestamps, vLLM's figure and span start.
        e2e = v[sc.GEN_AI_LATENCY_E2E]
        assert (span.end_time - span.start_time) / 1e9 == pytest.approx(e2e, abs=_MS)
        assert ts.completed_at - ts.queued_at == pytest.approx(e2e, abs=_MS)
        assert span.start_time == pytest.approx(theirs.start_time, abs=_MS * 1e9)
        assert m.throughput_tps == pytest.approx(n / e2e, rel=1e-2)
        # Tokens.
        assert ours[sc.GEN_AI_USAGE_INPUT_TOKENS] == v[sc.GEN_AI_USAGE_PROMPT_TOKENS_DEPRECATED]
        assert resp.prompt_tokens == v[sc.GEN_AI_USAGE_PROMPT_TOKENS_DEPRECATED]
        assert (
            ours[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == v[sc.GEN_AI_USAGE_COMPLETION_TOKENS_DEPRECATED]
        )
        assert n == v[sc.GEN_AI_USAGE_COMPLETION_TOKENS_DEPRECATED]
        # KV: an estimate from vLLM's token counts (docs/semconv.md), and bytes from the model.
        assert m.kv_used_tokens == (
            v[sc.GEN_AI_USAGE_PROMPT_TOKENS_DEPRECATED]
            + v[sc.GEN_AI_USAGE_COMPLETION_TOKENS_DEPRECATED]
            - 1
        )
        assert m.kv_used_bytes == m.kv_used_tokens * 2 * 4 * 2 * 64 * 4  # 4 layers, 2 KV heads
        # ... and vLLM's own sizing agrees: the blocks it made of the 64 MiB it was given
        cache = harness.engine.engine.llm.vllm_config.cache_config
        per_token = m.kv_used_bytes // m.kv_used_tokens
        assert cache.num_gpu_blocks == 64 * 2**20 // (cache.block_size * per_token)
        assert m.peak_mem_mb > 100
        assert sc.SAGELLM_CLOCK_ISSUES not in ours
        figures["ttft"].append(m.ttft_ms / 1000)
        figures["e2e"].append(ts.completed_at - ts.queued_at)
        figures["queue"].append(queue_s)
        figures["prefill"].append(m.prefill_ms / 1000)
        figures["decode"].append(m.decode_ms / 1000)
        figures["input_tokens"].append(resp.prompt_tokens or 0)
        figures["output_tokens"].append(n)
    # vLLM's own Prometheus histograms observed the same requests, with the same values.
    for key, values in figures.items():
        count = after[key][0] - before[key][0]
        total = after[key][1] - before[key][1]
        assert count == len(responses), key
        assert total == pytest.approx(sum(values), abs=len(values) * _MS), key
    # Our TTFT histogram against vLLM's.
    assert ours_after[0] - ours_before[0] == after["ttft"][0] - before["ttft"][0]
    assert ours_after[1] - ours_before[1] == pytest.approx(
        after["ttft"][1] - before["ttft"][1], abs=len(responses) * _MS
    )


def test_frames_hold_vllms_figures_beside_ours(harness: EngineHarness) -> None:
    """On a real run, the requests frame has one row per request, vLLM's figures beside ours."""
    from sagellm_obs.frames import load

    reqs = _shared_prefix_requests("frames", 3)
    harness.engine.generate_batch(reqs)
    harness.flush()
    rows = load(harness.run_dir, cache=False).requests
    mine = rows.filter(rows["request_id"].is_in([r.request_id for r in reqs]))
    assert mine.height == len(reqs)  # vLLM's span does not make a second row
    assert set(mine["source"]) == {"sagellm"}
    assert mine["vllm_span_id"].null_count() == 0
    for ours, theirs in (
        ("ttft_s", "vllm_ttft_s"),
        ("queue_s", "vllm_queue_s"),
        ("prefill_s", "vllm_prefill_s"),
        ("decode_s", "vllm_decode_s"),
        ("e2e_s", "vllm_e2e_s"),
    ):
        assert (mine[ours] - mine[theirs]).abs().max() < _MS, ours
    assert (mine["input_tokens"] == mine["vllm_input_tokens"]).all()
    assert (mine["output_tokens"] == mine["vllm_output_tokens"]).all()


def test_streaming_events_and_itl(harness: EngineHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    req = Request(
        request_id="stream-1",
        trace_id="stream-1",
        prompt="def fibonacci(n):",
        max_tokens=12,
        stream=True,
        metadata={"ignore_eos": True},
    )
    swapped: list[tuple[str, bool]] = []
    slot_for = vllm_requests._slot_for

    def spy(llm: Any, q: Any) -> Any:  # on the engine's loop, as the request is added
        slot = slot_for(llm, q)
        state = llm.output_processor.request_states[q.request_id]
        swapped.append((type(slot).__name__, state.queue is slot))
        return slot

    monkeypatch.setattr(vllm_requests, "_slot_for", spy)
    events = list(harness.engine.stream(req, on_token=lambda d: seen.append(d.content)))
    # vLLM's output handler hands this request's outputs to our slot, not to its collector.
    assert swapped == [("OutputSlot", True)]
    assert events[0].event == "start"
    assert events[-1].event == "end"
    deltas = [e for e in events[1:-1] if e.event == "delta"]
    assert len(deltas) == len(events) - 2
    # The engine builds its deltas unvalidated: each must be what validation would make.
    for d in deltas:
        again = StreamEventDelta(**d.model_dump(exclude={"event"}))
        assert again == d
        assert again.model_fields_set == d.model_fields_set
        assert StreamEventDelta.model_validate_json(d.model_dump_json()) == d
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


def test_abort_from_elsewhere_ends_as_an_error_not_stop(harness: EngineHarness) -> None:
    """A request vLLM aborts reports its abort: never a normal ``stop``."""
    req = Request(
        request_id="abort-1",
        trace_id="abort-1",
        prompt="import sys\n",
        max_tokens=400,
        stream=True,
        metadata={"ignore_eos": True},
    )
    it = harness.engine.stream(req)
    assert next(it).event == "start"
    assert next(it).event == "delta"
    harness.engine.abort("abort-1")
    end = next(e for e in it if e.event == "end")
    assert end.finish_reason == "error"
    assert end.error is not None and end.error.message.startswith("aborted")
    assert end.metrics.error_rate == 1.0
    assert len(end.output_tokens) < 400
    harness.flush()
    span = harness.request_spans()["abort-1"]
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("abort",)
    assert span.attributes[sc.SAGELLM_CANCELLED] is True
    assert "abort-1" not in harness.vllm_spans()  # vLLM does not trace an aborted request


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


def test_per_request_metrics_in_vllms_format_agree_with_vllms_own(harness: EngineHarness) -> None:
    """The server's vLLM-format ``metrics`` object against vLLM's own builder of it."""
    from vllm.entrypoints.generate.base.serving import build_per_request_timing_metrics

    from sagellm_obs.server.openai_compat import vllm_request_metrics

    reqs = _shared_prefix_requests("permetrics", 2)
    for resp in harness.engine.generate_batch(reqs):
        n = len(resp.output_tokens)
        ours = vllm_request_metrics(resp.metrics, n)
        theirs = build_per_request_timing_metrics(
            harness.outputs[resp.request_id].metrics, n
        ).model_dump(exclude_none=True)
        assert set(ours) == set(theirs)
        for key in ("time_to_first_token_ms", "generation_time_ms", "mean_itl_ms"):
            assert ours[key] == pytest.approx(theirs[key], abs=1.0), key  # 1 ms
        assert ours["tokens_per_second"] == pytest.approx(theirs["tokens_per_second"], rel=1e-3)
        # Documented difference: ours starts at the frontend's arrival.
        assert ours["queue_time_ms"] >= theirs["queue_time_ms"] - 1.0
