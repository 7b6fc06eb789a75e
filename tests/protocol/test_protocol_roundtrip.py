"""Round trips and wire compatibility of the protocol models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import sagellm_obs.protocol as p

TS = p.Timestamps(
    queued_at=1_700_000_000.0,
    scheduled_at=1_700_000_000.01,
    executed_at=1_700_000_000.25,
    completed_at=1_700_000_001.5,
)
METRICS = p.Metrics(
    ttft_ms=250.0,
    tbt_ms=40.0,
    tpot_ms=40.0,
    throughput_tps=21.3,
    peak_mem_mb=2048,
    error_rate=0.0,
    itl_list=[40.0, 41.5],
    timestamps=TS,
    component_trace=["sagellm-core", "sagellm-backend:cpu"],
)
ERROR = p.Error(code=p.ErrorCode.KV_TRANSFER_FAILED, message="boom", retryable=False)
MESSAGE = p.ChatMessage(role="user", content="hi", name="u1")

SAMPLES: dict[str, BaseModel] = {
    "Timestamps": TS,
    "Metrics": METRICS,
    "MetricsDefaults": p.Metrics(ttft_ms=0, throughput_tps=0, peak_mem_mb=0, error_rate=0),
    "Request": p.Request(
        request_id="r1",
        trace_id="trace-001",
        model="tiny",
        messages=[MESSAGE],
        max_tokens=16,
        stream=True,
        sampling_params=p.get_params("balanced"),
        temperature=0.0,
        top_p=1.0,
        kv_budget_tokens=512,
        metadata={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "n": [1, 2]},
        phase="prefill",
        rank=0,
        world_size=2,
        group_id="g",
        tp_rank=1,
        pp_rank=0,
        tp_size=2,
        pp_size=1,
    ),
    "RequestMinimal": p.Request(request_id="r", trace_id="t", max_tokens=1),
    "Response": p.Response(
        request_id="r1",
        trace_id="t1",
        output_text="hello",
        output_tokens=[1, 2, 3],
        prompt_tokens=7,
        finish_reason="error",
        metrics=METRICS,
        error=ERROR,
    ),
    "StreamEventStart": p.StreamEventStart(
        request_id="r", trace_id="t", engine_id="e", prompt_tokens=3
    ),
    "StreamEventDelta": p.StreamEventDelta(
        request_id="r", trace_id="t", engine_id="e", content="he", content_tokens=[5]
    ),
    "StreamEventEnd": p.StreamEventEnd(
        request_id="r",
        trace_id="t",
        engine_id="e",
        content="hello",
        output_tokens=[5, 6],
        finish_reason="length",
        metrics=METRICS,
    ),
    "Error": ERROR,
    "SamplingParams": p.SamplingParams(
        strategy="contrastive", top_k=-1, stop_sequences=["\n"], seed=3, max_tokens=9
    ),
    "KVAllocateParams": p.KVAllocateParams(
        request_id="r",
        num_tokens=16,
        kv_dtype="fp8",
        layout="bhsd",
        block_size=16,
        trace_id="t",
        priority=2,
        qos_labels={"tier": "gold"},
        metadata={"x": 1},
    ),
    "KVHandle": p.KVHandle(handle_id="h", request_id="r", num_tokens=3, device="cuda:0"),
    "ChatMessage": MESSAGE,
    "ChatCompletionRequest": p.ChatCompletionRequest(
        model="m", messages=[MESSAGE], stop=["x", "y"], top_p=0.5, trace_id="t"
    ),
    "ChatCompletionResponse": p.ChatCompletionResponse(
        id="chatcmpl-1",
        created=1_700_000_000,
        model="m",
        choices=[p.ChatCompletionChoice(index=0, message=MESSAGE, finish_reason=None)],
        usage=p.ChatCompletionUsage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
        trace_id="t",
    ),
    "ChatCompletionStreamResponse": p.ChatCompletionStreamResponse(
        id="c",
        created=1,
        model="m",
        choices=[
            p.ChatCompletionStreamChoice(
                index=0,
                delta=p.ChatCompletionStreamDelta(role="assistant", content="x"),
                finish_reason="tool_calls",
            )
        ],
    ),
    "CompletionRequest": p.CompletionRequest(model="m", prompt="p", stop="\n", n=2),
    "CompletionResponse": p.CompletionResponse(
        id="cmpl-1",
        created=2,
        model="m",
        choices=[p.CompletionChoice(index=0, text="t", finish_reason="content_filter")],
        usage=p.CompletionUsage(prompt_tokens=1, completion_tokens=1, total_tokens=2),
    ),
    "EmbeddingRequest": p.EmbeddingRequest(input=["a", "b"], model="m", dimensions=8),
    "EmbeddingResponse": p.EmbeddingResponse(
        data=[p.EmbeddingData(embedding=[0.5, -1.0], index=0)],
        model="m",
        usage=p.EmbeddingUsage(prompt_tokens=2, total_tokens=2),
    ),
    "ModelListResponse": p.ModelListResponse(data=[p.ModelInfo(id="m", created=5)]),
    "OpenAIErrorResponse": p.OpenAIErrorResponse(
        error=p.OpenAIError(message="m", type="invalid_request_error", param="x")
    ),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_json_round_trip(name: str) -> None:
    model = SAMPLES[name]
    text = model.model_dump_json()
    again = type(model).model_validate_json(text)
    assert again == model
    assert again.model_dump_json() == text
    assert p.validate(type(model), text) == model
    assert p.validate(type(model), json.loads(text)) == model


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_dump_writes_every_field(name: str) -> None:
    model = SAMPLES[name]
    assert list(json.loads(model.model_dump_json())) == list(type(model).model_fields)


def test_metrics_has_the_23_documented_fields_in_order() -> None:
    assert list(p.Metrics.model_fields) == [
        "ttft_ms", "tbt_ms", "tpot_ms", "throughput_tps", "peak_mem_mb", "error_rate",
        "kv_used_tokens", "kv_used_bytes", "prefix_hit_rate", "evict_count", "evict_ms",
        "spec_accept_rate", "prefill_ms", "decode_ms", "kv_transfer_count", "kv_transfer_bytes",
        "kv_transfer_ms", "comm_overhead_ms", "allreduce_count", "allgather_count", "itl_list",
        "timestamps", "component_trace",
    ]  # fmt: skip
    schema = p.Metrics.model_json_schema()
    assert schema["required"] == ["ttft_ms", "throughput_tps", "peak_mem_mb", "error_rate"]
    assert schema["properties"]["peak_mem_mb"]["type"] == "integer"
    dumped = json.loads(SAMPLES["MetricsDefaults"].model_dump_json())
    assert dumped["itl_list"] == []
    assert dumped["timestamps"] is None
    assert dumped["component_trace"] is None
    assert dumped["kv_used_bytes"] == 0
    assert dumped["prefix_hit_rate"] == 0.0


def test_request_required_fields_exactly() -> None:
    assert p.Request.model_json_schema()["required"] == ["request_id", "trace_id", "max_tokens"]
    # The exact command from the spec, in a fresh interpreter.
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sagellm_obs.protocol as p; print(p.Request.model_json_schema()['required'])",
        ],
        cwd=root,
        env={"PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "['request_id', 'trace_id', 'max_tokens']\n"


def test_request_defaults() -> None:
    req = SAMPLES["RequestMinimal"]
    assert isinstance(req, p.Request)
    assert (req.model, req.prompt, req.stream) == ("", "", False)
    assert req.messages is None
    assert req.sampling_params is None
    assert req.metadata is None


# Written by hand from the note's field lists, as a sageLLM 0.5 engine would send it.
SAGELLM_RESPONSE_JSON = """
{
  "request_id": "chatcmpl-1a2b3c4d",
  "trace_id": "benchmark-chatcmpl-1a2b3c4d",
  "output_text": "Paris.",
  "output_tokens": [3681, 13],
  "prompt_tokens": 12,
  "finish_reason": "stop",
  "metrics": {
    "ttft_ms": 812.44, "tbt_ms": 0.31, "tpot_ms": 0.31, "throughput_tps": 2.44,
    "peak_mem_mb": 1832, "error_rate": 0.0, "kv_used_tokens": 4, "kv_used_bytes": 1024,
    "prefix_hit_rate": 0.5, "evict_count": 0, "evict_ms": 0.0, "spec_accept_rate": 0.0,
    "prefill_ms": 0.0, "decode_ms": 0.0, "kv_transfer_count": 0, "kv_transfer_bytes": 0,
    "kv_transfer_ms": 0.0, "comm_overhead_ms": 0.0, "allreduce_count": 0, "allgather_count": 0,
    "itl_list": [],
    "timestamps": {"queued_at": 1731000000.125, "scheduled_at": 1731000000.2,
                   "executed_at": 1731000001.01, "completed_at": 1731000001.02},
    "component_trace": ["sagellm-core", "sagellm-backend:cpu"]
  },
  "error": null,
  "timestamps": {"queued_at": 1.0, "scheduled_at": 2.0, "executed_at": 3.0, "completed_at": 4.0}
}
"""


def test_hand_written_sagellm_response_parses() -> None:
    resp = p.validate(p.Response, SAGELLM_RESPONSE_JSON)
    assert resp.finish_reason == "stop"
    assert resp.metrics.peak_mem_mb == 1832
    assert isinstance(resp.metrics.peak_mem_mb, int)
    assert resp.metrics.timestamps is not None
    assert resp.metrics.timestamps.executed_at == 1731000001.01
    assert resp.metrics.component_trace == ["sagellm-core", "sagellm-backend:cpu"]
    # The engine's stray top-level "timestamps" is dropped (extra="ignore"), not an error.
    assert "timestamps" not in resp.model_dump()
    # Our output has exactly the keys a sageLLM consumer expects.
    ours = json.loads(resp.model_dump_json())
    theirs = json.loads(SAGELLM_RESPONSE_JSON)
    del theirs["timestamps"]
    assert ours == theirs


def test_unknown_fields_are_ignored_not_rejected() -> None:
    req = p.validate(
        p.Request,
        {"request_id": "r", "trace_id": "t", "max_tokens": 2, "span_id": "x", "future": {}},
    )
    assert "span_id" not in req.model_dump_json()


def test_enums_serialise_as_values() -> None:
    dumped = json.loads(SAMPLES["KVAllocateParams"].model_dump_json())
    assert dumped["kv_dtype"] == "fp8"
    assert dumped["layout"] == "bhsd"
    assert json.loads(ERROR.model_dump_json())["code"] == "kv_transfer_failed"
    assert SAMPLES["KVAllocateParams"].model_dump()["kv_dtype"] is p.KVDType.FP8


def test_peak_mem_mb_rejects_fractional_float() -> None:
    base = {"ttft_ms": 1, "throughput_tps": 1, "error_rate": 0}
    assert p.validate(p.Metrics, {**base, "peak_mem_mb": 3.0}).peak_mem_mb == 3
    with pytest.raises(p.ProtocolValidationError) as info:
        p.validate(p.Metrics, {**base, "peak_mem_mb": 3.5})
    assert info.value.field == "peak_mem_mb"
    assert "fractional part" in str(info.value)


# --- StreamEvent discriminated union --------------------------------------------------------------

_START = {"event": "start", "request_id": "r", "trace_id": "t", "engine_id": "e"}
_DELTA = {**_START, "event": "delta", "content": "a", "content_tokens": [1]}
_END = {
    **_START,
    "event": "end",
    "content": "ab",
    "output_tokens": [1, 2],
    "finish_reason": "stop",
    "metrics": {"ttft_ms": 1, "throughput_tps": 2, "peak_mem_mb": 0, "error_rate": 0},
}


@pytest.mark.parametrize(
    ("payload", "cls"),
    [(_START, p.StreamEventStart), (_DELTA, p.StreamEventDelta), (_END, p.StreamEventEnd)],
)
def test_stream_event_union_picks_the_class(payload: dict[str, Any], cls: type) -> None:
    event = p.parse_stream_event(json.dumps(payload))
    assert type(event) is cls
    assert type(p.STREAM_EVENT_ADAPTER.validate_json(json.dumps(payload))) is cls
    assert p.parse_stream_event(event.model_dump_json()) == event


def test_stream_event_aliases() -> None:
    assert p.StartEvent is p.StreamEventStart
    assert p.DeltaEvent is p.StreamEventDelta
    assert p.EndEvent is p.StreamEventEnd


@pytest.mark.parametrize("event", ["middle", "START", "", None, 3])
def test_stream_event_union_rejects_unknown_event(event: object) -> None:
    with pytest.raises(p.ProtocolValidationError) as info:
        p.parse_stream_event({**_DELTA, "event": event})
    assert info.value.field == "event"
    assert info.value.code is p.ErrorCode.INVALID_ARGUMENT
    assert str(info.value).startswith("invalid stream_event: event: ")


def test_stream_event_missing_event_is_rejected() -> None:
    payload = dict(_DELTA)
    del payload["event"]
    with pytest.raises(p.ProtocolValidationError) as info:
        p.parse_stream_event(payload)
    assert info.value.field == "event"


def test_old_0_4_delta_payload_fails_on_missing_content() -> None:
    old = {**_START, "event": "delta", "chunk": "a", "chunk_tokens": [1]}
    with pytest.raises(p.ProtocolValidationError) as info:
        p.parse_stream_event(old)
    assert [e["field"] for e in info.value.errors] == ["delta.content", "delta.content_tokens"]


def test_end_event_requires_full_content_and_metrics() -> None:
    payload = dict(_END)
    del payload["metrics"]
    with pytest.raises(p.ProtocolValidationError) as info:
        p.parse_stream_event(payload)
    assert info.value.field == "end.metrics"
