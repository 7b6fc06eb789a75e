"""The engine's per-output helpers, against pydantic's own validation (no engine needed)."""

from __future__ import annotations

import pickle

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
