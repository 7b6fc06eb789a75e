"""A stream's inter-token gaps are vLLM's: they add up, gap for gap, to vLLM's own ITL histogram,
whether the consumer keeps up or not."""

from __future__ import annotations

import asyncio

import pytest
from engine_harness import EngineHarness, request

from sagellm_obs.protocol import StreamEventDelta, StreamEventEnd

pytestmark = pytest.mark.engine


def _itl_histogram(harness: EngineHarness) -> tuple[float, float]:
    """(sum in ms, count) of vLLM's ``vllm:inter_token_latency_seconds`` of this engine: vLLM's
    own Prometheus logger observes it from its iteration stats."""
    count, total = harness.vllm_histogram("inter_token_latency")
    return total * 1000.0, count


async def _until_vllm_made(harness: EngineHarness, count: float) -> None:
    """Until vLLM's ITL histogram has ``count`` observations (its stat logger records a step
    after the step's outputs are in their collectors)."""
    for _ in range(6000):
        if _itl_histogram(harness)[1] >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"vLLM made fewer than {count} gaps in 60 s")


def _stream(
    harness: EngineHarness, rid: str, tokens: int, lag: bool
) -> tuple[list[int], StreamEventEnd]:
    """Stream a request on the engine's loop: each delta's token count, and the End. With
    ``lag``, the consumer takes its first delta and then nothing until vLLM has made every token,
    so vLLM's collector merges the rest into one output."""
    made = _itl_histogram(harness)[1] + tokens - 1

    async def consume() -> tuple[list[int], StreamEventEnd]:
        sizes: list[int] = []
        end = None
        async for event in harness.engine.engine.stream(request(rid, tokens, stream=True)):
            if isinstance(event, StreamEventDelta):
                sizes.append(len(event.content_tokens))
                if lag and len(sizes) == 1:
                    await _until_vllm_made(harness, made)
            elif isinstance(event, StreamEventEnd):
                end = event
        assert end is not None
        return sizes, end

    return harness.engine.submit(consume()).result(timeout=120)


@pytest.mark.parametrize("lag", [False, True], ids=["keeps-up", "slow-consumer"])
def test_stream_gaps_add_up_to_vllms_itl_histogram(harness: EngineHarness, lag: bool) -> None:
    """Alone on the engine, a stream's gaps are vLLM's: as many as vLLM's ITL histogram observed
    (one token a step), and the same total to float precision. With a consumer slower than the
    engine (vLLM's collector merges outputs), the total is still vLLM's, not the span of the
    consumer's reads (which the gaps measured when they were the frontend's)."""
    tokens = 24
    sum0, count0 = _itl_histogram(harness)
    sizes, end = _stream(harness, f"itl-{'lag' if lag else 'up'}", tokens, lag)
    sum1, count1 = _itl_histogram(harness)
    assert end.metrics is not None and end.error is None
    itl = end.metrics.itl_list
    assert len(end.output_tokens) == tokens
    assert len(itl) == tokens - 1 == count1 - count0
    assert sum(itl) == pytest.approx(sum1 - sum0, abs=1e-6)
    assert all(x >= 0 for x in itl)
    # Which gaps are 0: the tokens that came with an earlier one of their output (the first
    # output's first token has no gap at all).
    merged = [False] * (sizes[0] > 1) + [True] * (sizes[0] - 2)
    for size in sizes[1:]:
        merged += [False] + [True] * (size - 1)
    assert [gap == 0.0 for gap in itl] == merged
    if lag:  # the first delta, then everything else in one merged output
        assert len(sizes) == 2 and sizes[1] >= tokens - 2
