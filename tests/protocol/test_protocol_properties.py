"""Property-based tests: parsers never raise anything unexpected."""

from __future__ import annotations

from typing import Any

import pytest

import sagellm_obs.protocol as p

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")
given, settings = hypothesis.given, hypothesis.settings

_HEX = "0123456789abcdef"
_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_REQUEST_KEYS = st.sampled_from(list(p.Request.model_fields)) | st.text(max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parse_traceparent_never_raises_on_text(value: str) -> None:
    result = p.parse_traceparent(value)
    if result is not None:
        assert p.parse_traceparent(p.format_traceparent(result)) is not None


@settings(max_examples=200, deadline=None)
@given(
    st.text(_HEX, min_size=32, max_size=32),
    st.text(_HEX, min_size=16, max_size=16),
    st.integers(0, 255),
)
def test_traceparent_round_trip(trace_id: str, span_id: str, flags: int) -> None:
    hypothesis.assume(set(trace_id) != {"0"} and set(span_id) != {"0"})
    tp = p.TraceParent(version=0, trace_id=trace_id, span_id=span_id, flags=flags)
    assert p.parse_traceparent(p.format_traceparent(tp)) == tp


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_REQUEST_KEYS, _JSON, max_size=8))
def test_request_validation_raises_only_protocol_errors(data: dict[str, Any]) -> None:
    outcome: p.Request | p.ProtocolValidationError
    try:
        outcome = p.validate(p.Request, data)
    except p.ProtocolValidationError as exc:  # anything else propagates and fails the test
        outcome = exc
    if isinstance(outcome, p.ProtocolValidationError):
        assert outcome.code is p.ErrorCode.INVALID_ARGUMENT
        assert outcome.errors
        assert outcome.field == outcome.errors[0]["field"]
    else:
        assert p.validate(p.Request, outcome.model_dump_json()) == outcome


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_otel_trace_id_always_valid(value: str) -> None:
    out = p.otel_trace_id(value)
    assert p.parse_traceparent(f"00-{out}-00f067aa0ba902b7-01") is not None
