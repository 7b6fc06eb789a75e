"""The native protocol endpoint and the Prometheus ``/metrics`` route."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sagellm_obs.protocol import Response, StreamEventDelta, StreamEventEnd, parse_stream_event

if TYPE_CHECKING:
    from conftest import ServerHarness

pytestmark = pytest.mark.engine


def test_native_generate_returns_protocol_response(harness: ServerHarness) -> None:
    trace_hex, parent_hex = secrets.token_hex(16), secrets.token_hex(8)
    req = {
        "request_id": "native-1",
        "trace_id": "native-trace",
        "prompt": "def add(a, b):",
        "max_tokens": 5,
        "metadata": {"ignore_eos": True, "traceparent": f"00-{trace_hex}-{parent_hex}-01"},
    }
    with harness.client() as c:
        resp = c.post("/v1/sagellm/generate", json=req)
    assert resp.status_code == 200
    out = Response.model_validate_json(resp.content)
    assert out.request_id == "native-1"
    assert out.trace_id == "native-trace"
    assert len(out.output_tokens) == 5
    assert out.finish_reason == "length"
    assert out.metrics.ttft_ms > 0
    # The traceparent in the body's metadata parents the HTTP span when no header is sent.
    assert resp.headers["x-trace-id"] == trace_hex
    span = harness.engine_span("native-1")
    (http,) = harness.http_spans(int(trace_hex, 16))
    assert http.parent is not None and http.parent.span_id == int(parent_hex, 16)
    assert span.parent is not None and span.parent.span_id == http.context.span_id


def test_native_stream_events(harness: ServerHarness) -> None:
    req = {
        "request_id": "native-2",
        "trace_id": "native-2",
        "prompt": "x = [",
        "max_tokens": 6,
        "stream": True,
        "metadata": {"ignore_eos": True},
    }
    with harness.client() as c, c.stream("POST", "/v1/sagellm/generate", json=req) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    events = [parse_stream_event(json.loads(line)) for line in lines]
    assert events[0].event == "start"
    assert isinstance(events[-1], StreamEventEnd)
    deltas = [e for e in events if isinstance(e, StreamEventDelta)]
    assert "".join(d.content for d in deltas) == events[-1].content
    assert len(events[-1].output_tokens) == 6
    assert events[-1].metrics.itl_list


def test_metrics_route_serves_vllm_and_genai_metrics(harness: ServerHarness) -> None:
    with harness.client() as c:
        assert c.post("/v1/completions", json={"prompt": "a", "max_tokens": 2}).status_code == 200
        harness.flush()
        resp = c.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert "vllm:time_to_first_token_seconds" in text
    assert "gen_ai_server_time_to_first_token_seconds" in text
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "gen_ai_server_time_to_first_token_seconds" in names
    assert "vllm:time_to_first_token_seconds" in names
