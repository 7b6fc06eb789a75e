"""The engine's per-output helpers, against pydantic's own validation (no engine needed)."""

from __future__ import annotations

import pickle

import pytest

from sagellm_obs.engine.outputs import delta_event, delta_head
from sagellm_obs.protocol import StreamEventDelta, parse_stream_event

IDS = {"request_id": "req-1", "trace_id": "trace-1", "engine_id": "engine-1"}
HEAD = delta_head(IDS)


def test_delta_event_is_the_validated_event() -> None:
    fast = delta_event(HEAD, "héllo", [5, 6])
    validated = StreamEventDelta(**IDS, content="héllo", content_tokens=[5, 6])
    assert fast == validated
    assert repr(fast) == repr(validated)
    assert fast.model_fields_set == validated.model_fields_set
    assert fast.model_dump_json() == validated.model_dump_json()
    assert parse_stream_event(fast.model_dump_json()) == validated
    assert pickle.loads(pickle.dumps(fast)) == validated
    assert fast.model_copy(update={"content": "x"}).content == "x"


def test_delta_events_do_not_share_state() -> None:
    a, b = delta_event(HEAD, "a", [1]), delta_event(HEAD, "b", [2])
    a.content = "changed"
    assert b.content == "b"
    assert a.model_fields_set is not b.model_fields_set
    assert HEAD == {"event": "delta", **IDS}  # each event copied it


def _output(tokens: list[int], stats: object, *, finished: bool = False) -> object:
    from vllm.outputs import CompletionOutput, RequestOutput

    comp = CompletionOutput(0, "x" * len(tokens), tokens, None, None)
    return RequestOutput("r", None, [1], None, [comp], finished, metrics=stats)


def test_stream_gaps_are_on_vllms_step_clock() -> None:
    """Gaps come from vLLM's step timestamps as each output is read, whatever the reader's clock:
    a merged output's first token takes the gap, the others 0, and the gaps add up to the span
    from the first token to the last (vLLM's decode time)."""
    from vllm.v1.metrics.stats import RequestStateStats

    from sagellm_obs.engine.outputs import RequestOutputs

    stats = RequestStateStats(first_token_ts=100.0, last_token_ts=100.002)
    outs = RequestOutputs(stream=True)
    outs.add(_output([5, 6], stats))  # the first token at 100.000, the second at 100.002
    stats.last_token_ts = 100.005
    outs.add(_output([7], stats))
    stats.last_token_ts = 100.011
    outs.add(_output([8, 9, 10], stats, finished=True))  # merged: three steps in one output
    assert outs.itl_ms == pytest.approx([2.0, 3.0, 6.0, 0.0, 0.0])
    assert len(outs.itl_ms) == len(outs.token_ids) - 1
    assert sum(outs.itl_ms) == pytest.approx((100.011 - 100.0) * 1000.0)


def test_stream_gaps_without_vllm_stats_use_the_frontends_clock() -> None:
    from sagellm_obs.engine.outputs import RequestOutputs

    outs = RequestOutputs(stream=True)
    outs.add(_output([5, 6], None))
    outs.add(_output([7], None))
    assert outs.itl_ms[0] == 0.0  # the first output's tokens came together
    assert len(outs.itl_ms) == 2 and outs.itl_ms[1] >= 0.0
