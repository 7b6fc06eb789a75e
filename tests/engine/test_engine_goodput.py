"""Goodput of a real run, against an SLO whose misses vLLM's own numbers decide."""

from __future__ import annotations

import itertools

import pytest
from engine_harness import SHARED_PREFIX, EngineHarness

from sagellm_obs import frames
from sagellm_obs import semconv as sc
from sagellm_obs.protocol import Request
from sagellm_obs.run_summary import summarize

pytestmark = pytest.mark.engine


def _request(i: int, *, stream: bool = False, max_tokens: int = 6) -> Request:
    return Request(
        request_id=f"goodput-{i}",
        trace_id=f"goodput-{i}",
        prompt=SHARED_PREFIX[: 40 + 60 * i] + f" Question {i}?",
        max_tokens=max_tokens,
        stream=stream,
        metadata={"ignore_eos": True},
    )


def test_goodput_counts_what_vllms_own_ttft_says_missed(harness: EngineHarness) -> None:
    engine = harness.engine
    # Spread the TTFTs: four at once (some wait in the queue), then four one by one.
    done = engine.generate_batch([_request(i) for i in range(4)])
    done += [engine.generate(_request(i)) for i in range(4, 8)]
    # One the client gives up on after its first tokens: never good, however fast.
    stream = engine.stream(_request(8, stream=True, max_tokens=400))
    assert [next(stream).event for _ in range(3)] == ["start", "delta", "delta"]
    stream.close()  # type: ignore[attr-defined]
    harness.flush()

    # The SLO sits in the widest gap of vLLM's own TTFTs (its llm_request spans): vLLM, not
    # our figures, decides which requests meet it.
    vllm_spans = harness.vllm_spans()
    theirs = sorted(
        vllm_spans[r.request_id].attributes[sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN] for r in done
    )
    gaps = [(b - a, (a + b) / 2) for a, b in itertools.pairwise(theirs)]
    width, limit = max(gaps)
    assert width > 0.002  # the SLO is clear of any 1 ms disagreement
    meet = sum(t <= limit for t in theirs)
    assert 0 < meet < len(theirs)
    slo = {"ttft_s": limit}

    run = frames.load(harness.run_dir, cache=False)
    ids = [r.request_id for r in done] + ["goodput-8"]
    mine = run.requests.filter(run.requests["request_id"].is_in(ids))
    assert mine.height == len(ids)
    assert mine.filter(mine["request_id"] == "goodput-8")["cancelled"].to_list() == [True]
    assert frames.goodput(mine, slo) == pytest.approx(meet / len(ids))

    # The summary counts goodput by the very same rule over the whole run folder, which holds
    # failed, cancelled and aborted requests of the other engine tests too.
    summary = summarize(harness.run_dir, slo=slo)
    assert summary.goodput == pytest.approx(frames.goodput(run.requests, slo))
    assert summary.cancelled >= 1
