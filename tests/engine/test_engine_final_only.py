"""``generate`` asks vLLM for one final output, and a cancelled request keeps what it had."""

from __future__ import annotations

import pytest
from engine_harness import EngineHarness, request

from sagellm_obs import semconv as sc
from tests.hardening.hardening_procs import wait_until

pytestmark = pytest.mark.engine


def test_generate_gets_one_final_output_holding_every_token(harness: EngineHarness) -> None:
    seen: list[str] = []
    keep = harness.engine.engine.on_request_output
    assert keep is not None

    def count(out: object) -> None:
        seen.append(getattr(out, "request_id", ""))
        keep(out)

    harness.engine.engine.on_request_output = count
    try:
        resp = harness.engine.generate(request("final-1", 12))
    finally:
        harness.engine.engine.on_request_output = keep
    out = harness.outputs["final-1"]
    # FINAL_ONLY: the final output is cumulative (a DELTA one holds only the last step's token).
    assert list(out.outputs[0].token_ids) == resp.output_tokens
    assert len(resp.output_tokens) == out.metrics.num_generation_tokens == 12
    assert resp.output_text == out.outputs[0].text
    assert seen == ["final-1"]


def _generated(harness: EngineHarness, rid: str) -> int:
    """Tokens vLLM has generated so far for ``rid`` (read on the engine's loop)."""

    async def probe() -> int:
        states = harness.engine.engine.llm.output_processor.request_states.values()
        got = [s.stats.num_generation_tokens for s in states if s.external_req_id == rid]
        return max(got, default=0)

    return harness.engine.submit(probe()).result()


def test_cancelled_generate_keeps_its_tokens_and_ttft(harness: EngineHarness) -> None:
    """No output reaches ``generate`` before the end, yet a cancelled request is recorded with
    the tokens it had and its TTFT: vLLM's abort output carries them."""
    rid, limit = "final-cancel-1", 1000
    fut = harness.engine.submit(harness.engine.engine.generate(request(rid, limit)))
    wait_until(lambda: _generated(harness, rid) >= 8, 60, "8 tokens of the request")
    fut.cancel()

    def recorded() -> bool:
        harness.flush()
        return rid in harness.request_spans()

    wait_until(recorded, 30, "the cancelled request's span")
    span = harness.request_spans()[rid]
    assert span.attributes[sc.SAGELLM_CANCELLED] is True
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("abort",)
    out = harness.outputs[rid]  # vLLM's abort output
    assert out.finished and out.outputs[0].finish_reason == "abort"
    n = span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS]
    assert 8 <= n < limit
    assert n == len(out.outputs[0].token_ids) == out.metrics.num_generation_tokens
    ttft = span.attributes[sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN]
    assert ttft == pytest.approx(out.metrics.first_token_latency, abs=1e-6)
    assert harness.engine.engine.llm.output_processor.get_num_unfinished_requests() == 0
    assert len(harness.engine.generate(request("final-after", 3)).output_tokens) == 3


def test_stream_closed_early_records_every_token_vllm_made(harness: EngineHarness) -> None:
    """The tokens the consumer read plus those vLLM had made since are the request's count."""
    rid = "stream-close-1"

    async def read_five() -> int:
        events = harness.engine.engine.stream(request(rid, 1000, stream=True))
        streamed = deltas = 0
        async for event in events:
            if event.event == "delta":
                streamed += len(event.content_tokens)
                deltas += 1
                if deltas == 5:
                    break
        await events.aclose()  # type: ignore[attr-defined]
        return streamed

    streamed = harness.engine.submit(read_five()).result()
    harness.flush()
    span = harness.request_spans()[rid]
    assert span.attributes[sc.SAGELLM_CANCELLED] is True
    out = harness.outputs[rid]  # vLLM's abort output: the tokens made since the last read
    n = span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS]
    assert streamed >= 5
    assert n == streamed + len(out.outputs[0].token_ids) == out.metrics.num_generation_tokens


def test_vllm_does_not_deep_copy_our_per_request_parameters(
    harness: EngineHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our ``SamplingParams`` are made for one request, so they are marked as vLLM's own server
    marks its (``skip_clone``) and vLLM does not deep-copy them (~37 µs a request); parameters a
    caller shares still are (the check sees a copy when there is one)."""
    import copy

    from vllm import SamplingParams

    copied: list[object] = []
    deepcopy = copy.deepcopy

    def spy(obj: object, *args: object, **kwargs: object) -> object:
        if isinstance(obj, SamplingParams):
            copied.append(obj)
        return deepcopy(obj, *args, **kwargs)

    monkeypatch.setattr(copy, "deepcopy", spy)
    harness.engine.generate(request("no-copy-1", 3))
    events = list(harness.engine.stream(request("no-copy-2", 3, stream=True)))
    assert len(events) >= 3
    assert copied == []

    async def plain() -> int:
        shared = SamplingParams(max_tokens=3, ignore_eos=True)  # cumulative outputs
        n = 0
        async for out in harness.engine.engine.llm.generate("a prompt", shared, "no-copy-3"):
            n = len(out.outputs[0].token_ids)
        return n

    assert harness.engine.submit(plain()).result() == 3
    assert len(copied) == 1
