"""Fast checks without vLLM: engine failures, request mapping, the middleware (ASGI in-process)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from sagellm_obs import AdvancedOptions, Telemetry, configure
from sagellm_obs.engine.core import EngineConfig
from sagellm_obs.protocol import (
    Error,
    ErrorCode,
    Metrics,
    Request,
    Response,
    StreamEvent,
    StreamEventDelta,
    StreamEventEnd,
    StreamEventStart,
    otel_trace_id,
)
from sagellm_obs.server import create_app
from sagellm_obs.server.openai_compat import ChatBody, CompletionBody, to_request

METRICS = Metrics(ttft_ms=1.0, throughput_tps=1.0, peak_mem_mb=1, error_rate=0.0)


class FakeEngine:
    """Enough of InstrumentedEngine for the app: ``mode`` picks how requests end."""

    model_name = "fake-model"
    engine_id = "fake-engine"

    def __init__(self, telemetry: Telemetry, mode: str = "ok") -> None:
        self.telemetry = telemetry
        self.mode = mode
        self.llm: Any = SimpleNamespace(errored=False)
        self.config = EngineConfig(max_model_len=256)
        self.seen: list[Request] = []
        self.closed_streams = 0

    def _end(self, req: Request) -> StreamEventEnd:
        if self.mode == "error":
            err = Error(code=ErrorCode.UNAVAILABLE, message="RuntimeError: engine fell over")
            return StreamEventEnd(
                request_id=req.request_id, trace_id=req.trace_id, engine_id=self.engine_id,
                content="", output_tokens=[], finish_reason="error",
                metrics=METRICS.model_copy(update={"error_rate": 1.0}), error=err,
            )  # fmt: skip
        return StreamEventEnd(
            request_id=req.request_id, trace_id=req.trace_id, engine_id=self.engine_id,
            prompt_tokens=3, content="hello", output_tokens=[1, 2], finish_reason="stop",
            metrics=METRICS,
        )  # fmt: skip

    async def generate(self, req: Request) -> Response:
        self.seen.append(req)
        if self.mode == "raise":
            raise RuntimeError(f"crashed on {req.prompt}")
        end = self._end(req)
        return Response(
            request_id=end.request_id, trace_id=end.trace_id, output_text=end.content,
            output_tokens=end.output_tokens, prompt_tokens=end.prompt_tokens,
            finish_reason=end.finish_reason, metrics=end.metrics, error=end.error,
        )  # fmt: skip

    async def _stream(self, req: Request) -> AsyncIterator[StreamEvent]:
        self.seen.append(req)
        try:
            yield StreamEventStart(request_id=req.request_id, trace_id=req.trace_id, engine_id="e")
            for text in ("hel", "lo"):
                yield StreamEventDelta(
                    request_id=req.request_id, trace_id=req.trace_id, engine_id="e",
                    content=text, content_tokens=[1],
                )  # fmt: skip
                await asyncio.sleep(0)
            yield self._end(req)
        finally:
            self.closed_streams += 1

    def stream(self, req: Request) -> AsyncIterator[StreamEvent]:
        return self._stream(req)


@pytest.fixture(scope="module")
def telemetry() -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    tel = configure(
        run_dir=False,
        otlp_endpoint=False,
        make_current=False,
        advanced=AdvancedOptions(span_exporters=[spans], simple_processors=True),
    )
    yield tel, spans
    tel.shutdown()


def _client(engine: FakeEngine, **kw: Any) -> httpx.AsyncClient:
    app = create_app(engine, **kw)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


CHAT = {"messages": [{"role": "user", "content": "secret prompt"}], "max_tokens": 4}


@pytest.mark.parametrize("mode", ["error", "raise"])
def test_engine_failure_is_a_5xx_and_the_app_keeps_serving(
    telemetry: tuple[Telemetry, InMemorySpanExporter], mode: str
) -> None:
    tel, spans = telemetry
    engine = FakeEngine(tel, mode)

    async def run() -> tuple[httpx.Response, httpx.Response]:
        async with _client(engine) as c:
            bad = await c.post("/v1/chat/completions", json=CHAT)
            engine.mode = "ok"
            good = await c.post("/v1/chat/completions", json=CHAT)
            return bad, good

    bad, good = asyncio.run(run())
    assert bad.status_code == 500
    err = bad.json()["error"]
    assert err["code"] == ErrorCode.UNAVAILABLE.value
    assert err["type"] == "server_error"
    assert "secret prompt" not in bad.text
    assert good.status_code == 200
    assert good.json()["choices"][0]["message"]["content"] == "hello"
    trace_id = int(bad.headers["x-trace-id"], 16)
    (http,) = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    assert http.status.status_code == StatusCode.ERROR
    assert http.attributes is not None
    assert http.attributes["http.response.status_code"] == 500


def test_dead_engine_gives_503(telemetry: tuple[Telemetry, InMemorySpanExporter]) -> None:
    engine = FakeEngine(telemetry[0])
    engine.llm = None

    async def run() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with _client(engine) as c:
            return (
                await c.post("/v1/completions", json={"prompt": "x"}),
                await c.post("/v1/chat/completions", json={**CHAT, "stream": True}),
                await c.get("/health"),
            )

    for resp in asyncio.run(run()):
        assert resp.status_code == 503
    assert engine.seen == []


def test_error_mid_stream_is_an_error_frame(
    telemetry: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    engine = FakeEngine(telemetry[0], "error")

    async def run() -> httpx.Response:
        async with _client(engine) as c:
            return await c.post("/v1/chat/completions", json={**CHAT, "stream": True})

    resp = asyncio.run(run())
    assert resp.status_code == 200
    frames = [line for line in resp.text.split("\n\n") if line]
    assert '"error"' in frames[-2] and ErrorCode.UNAVAILABLE.value in frames[-2]
    assert frames[-1] == "data: [DONE]"
    assert engine.closed_streams == 1


def test_stream_without_usage_and_metrics_on_last_chunk(
    telemetry: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    engine = FakeEngine(telemetry[0])

    async def run() -> httpx.Response:
        async with _client(engine) as c:
            return await c.post(
                "/v1/completions",
                json={"prompt": "p", "stream": True},
                headers={"X-Sagellm-Metrics": "1"},
            )

    resp = asyncio.run(run())
    chunks = [json.loads(f[6:]) for f in resp.text.split("\n\n") if f and f != "data: [DONE]"]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "hello"
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["metrics"]["ttft_ms"] == 1.0
    assert engine.seen[0].max_tokens == 16  # OpenAI's completions default


def test_body_limit_and_auth_in_process(telemetry: tuple[Telemetry, InMemorySpanExporter]) -> None:
    engine = FakeEngine(telemetry[0])

    async def run() -> list[httpx.Response]:
        async with _client(engine, api_key="k", max_body_bytes=100) as c:
            return [
                await c.post("/v1/completions", json={"prompt": "x" * 200}),
                await c.post(
                    "/v1/completions",
                    json={"prompt": "x" * 200},
                    headers={"Authorization": "Bearer k"},
                ),
                await c.post(
                    "/v1/completions", json={"prompt": "x"}, headers={"Authorization": "Bearer k"}
                ),
                await c.get("/health"),
            ]

    no_key, too_big, ok, health = asyncio.run(run())
    assert no_key.status_code == 401
    assert too_big.status_code == 413
    assert ok.status_code == 200
    assert health.status_code == 200


def test_request_mapping() -> None:
    chat = ChatBody.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                {"role": "assistant", "content": None},
            ],
            "max_tokens": 9,
            "max_completion_tokens": 5,
            "stop": "END",
            "seed": 3,
            "temperature": 0,
            "trace_id": "t-1",
            "ignore_eos": True,
            "logprobs": False,  # unknown fields are ignored
        }
    )
    req = to_request(chat, request_id="r", metadata={"traceparent": "x"}, default_max_tokens=99)
    assert req.max_tokens == 5
    assert req.trace_id == "t-1"
    assert req.messages is not None
    assert [m.role for m in req.messages] == ["system", "user", "assistant"]
    assert req.messages[1].content == "ab"
    assert req.metadata == {"traceparent": "x", "ignore_eos": True}
    assert req.sampling_params is not None
    assert req.sampling_params.stop_sequences == ["END"]
    assert req.sampling_params.seed == 3
    assert req.sampling_params.strategy.value == "greedy"
    comp = CompletionBody.model_validate({"prompt": ["only"], "temperature": 0.5, "top_p": 0.9})
    req2 = to_request(comp, request_id="r2", metadata={}, default_max_tokens=16)
    assert (req2.prompt, req2.trace_id, req2.max_tokens) == ("only", "r2", 16)
    assert req2.sampling_params is None
    assert (req2.temperature, req2.top_p) == (0.5, 0.9)


def test_per_request_metrics_option_puts_vllms_object_where_vllm_does(
    telemetry: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    """``per_request_metrics``: on every completion, and streamed on the usage chunk only."""
    engine = FakeEngine(telemetry[0])
    # The fake Metrics have no Timestamps and 0 ms phases: vLLM too leaves out queue_time_ms
    # and tokens_per_second then.
    vllm_keys = {"time_to_first_token_ms", "generation_time_ms", "mean_itl_ms"}

    async def run() -> list[httpx.Response]:
        async with _client(engine, per_request_metrics=True) as c:
            return [
                await c.post("/v1/completions", json={"prompt": "p"}),
                await c.post("/v1/chat/completions", json=CHAT),
                await c.post(
                    "/v1/completions",
                    json={"prompt": "p", "stream": True, "stream_options": {"include_usage": True}},
                ),
                await c.post("/v1/completions", json={"prompt": "p", "stream": True}),
            ]

    plain, chat, streamed, no_usage = asyncio.run(run())
    for resp in (plain, chat):
        metrics = resp.json()["metrics"]
        assert set(metrics) == vllm_keys
        assert metrics["mean_itl_ms"] == 0.0  # decode 0 ms over the second token
    chunks = [json.loads(f[6:]) for f in streamed.text.split("\n\n") if f and f != "data: [DONE]"]
    assert [("metrics" in c) for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert "metrics" not in no_usage.text


def test_one_trace_id_per_request(telemetry: tuple[Telemetry, InMemorySpanExporter]) -> None:
    """The body's ``trace_id`` (a sageLLM extension) names the same trace as ``X-Trace-Id``
    unless the client sent its own; the completion's id is ``id``, never a trace id."""
    engine = FakeEngine(telemetry[0])

    async def run() -> list[httpx.Response]:
        async with _client(engine) as c:
            return [
                await c.post("/v1/chat/completions", json=CHAT),
                await c.post("/v1/completions", json={"prompt": "p"}),
                await c.post("/v1/completions", json={"prompt": "p", "trace_id": "bench-7"}),
                await c.post(
                    "/v1/inference/completion", json={"model_id": "fake-model", "content": "p"}
                ),
            ]

    chat, comp, given, llama = asyncio.run(run())
    for resp in (chat, comp):
        assert resp.status_code == 200
        body = resp.json()
        assert body["trace_id"] == resp.headers["x-trace-id"]  # one id: the W3C trace id
        assert len(body["trace_id"]) == 32 and body["id"] != body["trace_id"]
        assert body["id"] == resp.headers["x-request-id"]
    assert chat.json()["id"].startswith("chatcmpl-")
    # A client's own protocol trace id is echoed; the header is the W3C id derived from it.
    assert given.json()["trace_id"] == "bench-7"
    assert given.headers["x-trace-id"] == otel_trace_id("bench-7")
    # llama-stack bodies carry no trace id: the protocol request takes the W3C one too.
    assert llama.status_code == 200
    assert engine.seen[-1].trace_id == llama.headers["x-trace-id"]
    assert [r.trace_id for r in engine.seen[:2]] == [
        chat.headers["x-trace-id"],
        comp.headers["x-trace-id"],
    ]
