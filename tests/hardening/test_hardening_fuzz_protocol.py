"""Fuzzing the protocol types and W3C trace-context parsing with random and adversarial input.

Validation may only raise the documented :class:`ProtocolValidationError` (pydantic's
``ValidationError`` is converted, never leaked), whose messages never echo an input value.
``parse_traceparent`` never raises and agrees with an independent reading of W3C Trace Context.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import pytest
from hardening_fuzz import FUZZ, HUGE_INTS, JSON_VALUES, WEIRD_STRINGS, examples, nested
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import sagellm_obs.protocol as p

MARK = "PRIVATE-MARK-31337"
"""Put into generated string values; no validation message may contain it."""

TYPES: dict[str, Any] = {m.__name__: m for m in p.SCHEMA_MODELS}
TYPES["StreamEvent"] = p.STREAM_EVENT_ADAPTER

# --- protocol types -------------------------------------------------------------------------------

_MARKED_TEXT = st.builds(lambda a, b: f"{a}{MARK}{b}", st.text(max_size=4), st.text(max_size=4))
_VALUES = JSON_VALUES | _MARKED_TEXT | HUGE_INTS | WEIRD_STRINGS
_EVENTS = st.sampled_from(["start", "delta", "end"])


def _fields(tp: Any) -> list[str]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    out: set[str] = set()
    for model in (p.StreamEventStart, p.StreamEventDelta, p.StreamEventEnd):
        out |= set(model.model_fields)
    return sorted(out)


@st.composite
def _payload(draw: st.DrawFn, name: str) -> Any:
    """A dict with the type's field names (and others), adversarial values; sometimes not a dict."""
    tp = TYPES[name]
    keys = st.sampled_from(_fields(tp)) | st.text(max_size=6)
    data = draw(st.dictionaries(keys, _VALUES, max_size=10))
    if name == "StreamEvent" and draw(st.booleans()):
        data["event"] = draw(_EVENTS)
    return draw(st.just(data) | st.just(data) | _VALUES)


def _assert_no_echo(exc: p.ProtocolValidationError) -> None:
    assert exc.code is p.ErrorCode.INVALID_ARGUMENT
    assert exc.errors, exc
    assert exc.field == exc.errors[0]["field"]
    assert MARK not in str(exc), str(exc)
    for err in exc.errors:
        assert MARK not in err["message"], err


def _validate(name: str, data: Any) -> Any:
    try:
        return p.validate(TYPES[name], data, name=name)
    except p.ProtocolValidationError as exc:  # anything else fails the test
        _assert_no_echo(exc)
        return exc


@pytest.mark.parametrize("name", sorted(TYPES))
@settings(FUZZ, max_examples=examples(60))
@given(data=st.data())
def test_validation_raises_only_protocol_errors(name: str, data: Any) -> None:
    payload = data.draw(_payload(name))
    out = _validate(name, payload)
    if isinstance(out, p.ProtocolValidationError):
        return
    # A valid value round-trips through its own JSON.
    dumped = out.model_dump_json() if isinstance(out, BaseModel) else json.dumps(out)
    again = _validate(name, dumped)
    assert not isinstance(again, p.ProtocolValidationError), (dumped, again)
    assert again == out


@pytest.mark.parametrize("name", sorted(TYPES))
@pytest.mark.parametrize("depth", [100, 5_000])
def test_deeply_nested_values(name: str, depth: int) -> None:
    """Deep nesting, as Python objects in every field and as JSON text: a validation error or a
    value, never a RecursionError.

    pydantic-core reprs a bad union tag for its message even when it then drops it; for a tag
    nested thousands deep that repr fails and is reported as "unraisable" (validation still
    raises). Those reports are collected here instead of reaching pytest's hook, which cannot
    repr such an object either.
    """
    unraisable: list[Any] = []
    previous, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        for field in _fields(TYPES[name]):
            _validate(name, {field: nested(depth, MARK)})
            _validate(name, {field: nested(depth, {field: MARK})})
        _validate(name, nested(depth))
        _validate(name, "[" * depth + "]" * depth)
        _validate(name, '{"a": ' * depth + "1" + "}" * depth)
    finally:
        sys.unraisablehook = previous
    assert all(u.exc_type is RecursionError for u in unraisable)
    assert not unraisable or (name, depth) == ("StreamEvent", 5_000)


@settings(FUZZ, max_examples=examples(150))
@given(
    raw=st.binary(max_size=64)
    | st.text(max_size=64)
    | st.builds(lambda v: json.dumps(v, allow_nan=True), JSON_VALUES)
    | st.builds(
        lambda d, cut: json.dumps(d)[:cut],
        st.fixed_dictionaries(
            {"request_id": _MARKED_TEXT, "trace_id": st.text(), "max_tokens": st.integers()}
        ),
        st.integers(0, 80),
    ),
    as_bytes=st.booleans(),
)
@example(raw="[" * 100_000, as_bytes=False)
@example(raw='{"request_id": "' + "\\ud800" + '", "trace_id": "t", "max_tokens": 1}', as_bytes=True)
@example(raw="\ufeff{}", as_bytes=True)
@example(raw='{"request_id": "r", "trace_id": "t", "max_tokens": 1e999}', as_bytes=False)
def test_json_documents_raise_only_protocol_errors(raw: Any, as_bytes: bool) -> None:
    if as_bytes and isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    for name in ("Request", "StreamEvent", "Response", "SamplingParams"):
        _validate(name, raw)


@settings(FUZZ, max_examples=examples(100))
@given(message=st.text(max_size=3000) | _MARKED_TEXT, kind=st.integers(0, 6))
def test_error_from_any_exception(message: str, kind: int) -> None:
    exc: BaseException = [
        ValueError(message),
        TimeoutError(message),
        MemoryError(message),
        NotImplementedError(message),
        ConnectionError(message),
        RuntimeError(message),
        KeyboardInterrupt(message),
    ][kind]
    err = p.Error.from_exception(exc)
    assert isinstance(err.code, p.ErrorCode)
    assert len(err.message) <= 1024
    assert p.validate(p.Error, err.model_dump_json()) == err


# --- traceparent --------------------------------------------------------------------------------

_REFERENCE = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-"
    r"(?P<flags>[0-9a-f]{2})(?P<rest>.*)",
    re.DOTALL,
)


def _reference(value: object) -> tuple[int, str, str, int] | None:
    """W3C Trace Context level 1, written independently of the package."""
    if not isinstance(value, str):
        return None
    m = _REFERENCE.fullmatch(value.strip(" \t"))
    if m is None or m["version"] == "ff":
        return None
    if m["version"] == "00" and m["rest"]:
        return None
    if m["rest"] and not m["rest"].startswith("-"):
        return None
    if set(m["trace"]) == {"0"} or set(m["span"]) == {"0"}:
        return None
    return int(m["version"], 16), m["trace"], m["span"], int(m["flags"], 16)


_VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_CHARS = (
    st.sampled_from(list("0123456789abcdefABCDEF-xz \t\n\r\x00\u0660\uff10٣")) | st.characters()
)


@st.composite
def _near_valid(draw: st.DrawFn) -> str:
    """A valid traceparent with a few edits: replaced, inserted or deleted characters."""
    text = list(draw(st.sampled_from([_VALID, "cc" + _VALID[2:], "fe" + _VALID[2:] + "-what"])))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["set", "insert", "delete", "append", "prefix"]))
        at = draw(st.integers(0, max(len(text) - 1, 0)))
        if op == "set" and text:
            text[at] = draw(_CHARS)
        elif op == "insert":
            text.insert(at, draw(_CHARS))
        elif op == "delete" and text:
            del text[at]
        elif op == "append":
            text.extend(draw(st.text(_CHARS, max_size=4)))
        else:
            text[:0] = draw(st.text(st.sampled_from(" \t"), max_size=2))
    return "".join(text)


_ANY = (
    _near_valid()
    | st.text(max_size=70)
    | st.binary(max_size=60)
    | JSON_VALUES
    | st.builds(lambda s: s.encode(), _near_valid())
)


@settings(FUZZ, max_examples=examples(600))
@given(value=_ANY)
@example(value=_VALID + "\n")
@example(value="ff" + _VALID[2:])
@example(value="00-" + "0" * 32 + "-00f067aa0ba902b7-01")
@example(value=_VALID.upper())
@example(value="\u0660" + _VALID[1:])
def test_parse_traceparent_agrees_with_the_spec(value: Any) -> None:
    got = p.parse_traceparent(value)  # never raises
    expected = _reference(value)
    if expected is None:
        assert got is None, (value, got)
        return
    assert got is not None, value
    assert (got.version, got.trace_id, got.span_id, got.flags) == expected
    assert p.parse_traceparent(p.format_traceparent(got)) == got
    assert p.traceparent_from_metadata({p.TRACEPARENT_KEY: value}) == got


@settings(FUZZ, max_examples=examples(200))
@given(metadata=JSON_VALUES | st.dictionaries(st.just(p.TRACEPARENT_KEY), _ANY, max_size=1))
def test_traceparent_from_any_metadata(metadata: Any) -> None:
    got = p.traceparent_from_metadata(metadata)
    assert got is None or isinstance(got, p.TraceParent)


@settings(FUZZ, max_examples=examples(200))
@given(value=_near_valid() | st.text(max_size=70), state=st.none() | st.text(max_size=20))
def test_with_traceparent_raises_only_value_error(value: str, state: str | None) -> None:
    req = p.Request(request_id="r", trace_id="t", prompt=MARK, max_tokens=1)
    try:
        out = p.with_traceparent(req, value, state)
    except ValueError:
        assert p.parse_traceparent(value) is None
        return
    assert out.metadata is not None
    assert p.traceparent_from_metadata(out.metadata) == p.parse_traceparent(value)
    assert req.metadata is None  # the original is untouched


@settings(FUZZ, max_examples=examples(200))
@given(version=JSON_VALUES, trace_id=_ANY, span_id=_ANY, flags=JSON_VALUES)
def test_traceparent_fields_raise_only_value_error(
    version: Any, trace_id: Any, span_id: Any, flags: Any
) -> None:
    try:
        tp = p.TraceParent(version=version, trace_id=trace_id, span_id=span_id, flags=flags)
    except ValueError:
        return
    assert p.parse_traceparent(p.format_traceparent(tp)) == tp


@settings(FUZZ, max_examples=examples(300))
@given(value=st.text(st.characters(codec=None, exclude_categories=()), max_size=50))
@example(value="\ud800\udfff\udbff")
@example(value="0" * 32)
def test_otel_trace_id_of_any_string(value: str) -> None:
    out = p.otel_trace_id(value)
    assert re.fullmatch(r"[0-9a-f]{32}", out) and out != "0" * 32
    assert p.otel_trace_id(value) == out
