"""Trace context across the HTTP hop, and client disconnects mid-stream."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

import pytest
from opentelemetry.trace import SpanKind

from sagellm_obs import semconv as sc
from sagellm_obs.protocol import otel_trace_id

if TYPE_CHECKING:
    from conftest import ServerHarness

pytestmark = pytest.mark.engine


def test_traceparent_joins_caller_trace(harness: ServerHarness) -> None:
    trace_hex, parent_hex = secrets.token_hex(16), secrets.token_hex(8)
    headers = {
        "traceparent": f"00-{trace_hex}-{parent_hex}-01",
        "tracestate": "vendor=abc",
        "X-Request-Id": "traced-1",
    }
    body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    with harness.client() as c:
        resp = c.post("/v1/chat/completions", json=body, headers=headers)
    assert resp.status_code == 200
    assert resp.headers["x-trace-id"] == trace_hex
    assert resp.headers["traceparent"].startswith(f"00-{trace_hex}-")

    trace_id = int(trace_hex, 16)
    engine = harness.engine_span("traced-1")
    (http,) = harness.http_spans(trace_id)
    assert http.name == "POST /v1/chat/completions"
    assert http.kind == SpanKind.SERVER
    assert http.context.trace_id == trace_id
    assert http.parent is not None and http.parent.span_id == int(parent_hex, 16)
    assert http.parent.is_remote
    assert http.attributes is not None
    assert http.attributes["http.request.method"] == "POST"
    assert http.attributes["url.path"] == "/v1/chat/completions"
    assert http.attributes["http.response.status_code"] == 200
    assert resp.headers["traceparent"] == f"00-{trace_hex}-{http.context.span_id:016x}-01"
    # engine request span -> HTTP span -> caller's span: one trace
    assert engine.context.trace_id == trace_id
    assert engine.parent is not None and engine.parent.span_id == http.context.span_id
    assert engine.context.trace_state.get("vendor") == "abc"
    kids = harness.children(engine)
    assert [k.name for k in kids] == list(sc.PHASE_SPANS)
    assert all(k.context.trace_id == trace_id for k in kids)
    in_trace = {s.context.span_id for s in harness.finished() if s.context.trace_id == trace_id}
    assert in_trace == {http.context.span_id, engine.context.span_id} | {
        k.context.span_id for k in kids
    }
    # The HTTP span encloses the engine span.
    assert http.start_time is not None and engine.start_time is not None
    assert http.start_time <= engine.start_time
    assert engine.end_time is not None and http.end_time is not None
    assert engine.end_time <= http.end_time


def test_protocol_trace_id_names_the_trace_without_traceparent(harness: ServerHarness) -> None:
    body = {"prompt": "x = ", "max_tokens": 2, "trace_id": "bench-run-42"}
    with harness.client() as c:
        resp = c.post("/v1/completions", json=body, headers={"X-Request-Id": "hinted-1"})
    assert resp.status_code == 200
    expected = otel_trace_id("bench-run-42")
    assert resp.headers["x-trace-id"] == expected
    assert resp.json()["trace_id"] == "bench-run-42"
    span = harness.engine_span("hinted-1")
    assert f"{span.context.trace_id:032x}" == expected
    assert span.attributes is not None
    assert span.attributes[sc.SAGELLM_TRACE_ID] == "bench-run-42"
    (http,) = harness.http_spans(span.context.trace_id)
    assert http.parent is None


def test_invalid_traceparent_starts_a_new_trace(harness: ServerHarness) -> None:
    with harness.client() as c:
        resp = c.get("/v1/models", headers={"traceparent": "00-zzzz-01"})
    assert resp.status_code == 200
    trace_id = int(resp.headers["x-trace-id"], 16)
    (http,) = harness.wait_for(lambda: harness.http_spans(trace_id))
    assert http.parent is None
    assert http.name == "GET /v1/models"


def test_client_disconnect_mid_stream_cancels(harness: ServerHarness) -> None:
    body = {
        "prompt": "import os\n",
        "max_tokens": 600,
        "stream": True,
        "ignore_eos": True,
    }
    with (
        harness.client() as c,
        c.stream("POST", "/v1/completions", json=body, headers={"X-Request-Id": "gone-1"}) as r,
    ):
        assert r.status_code == 200
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                json.loads(line[6:])
                seen += 1
            if seen >= 4:
                break
        # leaving the block closes the connection mid-stream
    span = harness.engine_span("gone-1", timeout=20)
    assert span.attributes is not None
    assert span.attributes[sc.SAGELLM_CANCELLED] is True
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] < 600
    assert harness.wait_for(lambda: harness.unfinished_requests() == 0)
    # The engine keeps serving.
    with harness.client() as c:
        ok = c.post("/v1/completions", json={"prompt": "y", "max_tokens": 2})
    assert ok.status_code == 200
