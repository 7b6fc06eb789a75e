"""W3C traceparent parsing and the protocol trace_id mapping."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

import sagellm_obs.protocol as p

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


def test_parse_valid() -> None:
    tp = p.parse_traceparent(VALID)
    assert tp == p.TraceParent(version=0, trace_id=TRACE, span_id=SPAN, flags=1)
    assert tp.sampled
    assert p.format_traceparent(tp) == VALID
    assert str(tp) == VALID


def test_round_trip_unsampled_and_other_flags() -> None:
    for flags in (0, 1, 2, 0xFF):
        tp = p.TraceParent(version=0, trace_id=TRACE, span_id=SPAN, flags=flags)
        assert p.parse_traceparent(p.format_traceparent(tp)) == tp
        assert tp.sampled is bool(flags & 1)


def test_from_ints_matches_otel_ids() -> None:
    tp = p.TraceParent.from_ints(int(TRACE, 16), int(SPAN, 16), flags=0)
    assert p.format_traceparent(tp) == f"00-{TRACE}-{SPAN}-00"


@pytest.mark.parametrize(
    "value",
    [
        f" {VALID}\t",  # HTTP optional whitespace
        f"01-{TRACE}-{SPAN}-01",  # future version, same length
        f"cc-{TRACE}-{SPAN}-01-what-the-future-will-be-like",  # future versions may add fields
        f"fe-{TRACE}-{SPAN}-09",
    ],
)
def test_parse_accepts(value: str) -> None:
    tp = p.parse_traceparent(value)
    assert tp is not None
    assert (tp.trace_id, tp.span_id) == (TRACE, SPAN)


def test_parse_future_version_keeps_version() -> None:
    tp = p.parse_traceparent(f"cc-{TRACE}-{SPAN}-01-extra")
    assert tp is not None
    assert tp.version == 0xCC
    assert p.format_traceparent(tp) == f"cc-{TRACE}-{SPAN}-01"


MALFORMED = [
    "",
    "00",
    VALID[:-1],  # too short
    VALID + "0",  # too long for version 00
    VALID + "-extra",  # extra field not allowed for version 00
    f"ff-{TRACE}-{SPAN}-01",  # forbidden version
    f"0g-{TRACE}-{SPAN}-01",  # non-hex version
    f"0A-{TRACE}-{SPAN}-01",  # uppercase version
    f"00-{TRACE.upper()}-{SPAN}-01",  # uppercase trace id
    f"00-{TRACE}-{SPAN.upper()}-01",  # uppercase span id
    f"00-{TRACE}-{SPAN}-0A",  # uppercase flags
    f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
    f"00-{TRACE[:-1]}-{SPAN}0-01",  # trace id 31 chars
    f"00-{TRACE}0-{SPAN[:-1]}-01",  # span id 15 chars
    f"00-{TRACE}-{SPAN}-1",  # flags 1 char
    f"00_{TRACE}_{SPAN}_01",  # wrong separators
    f"00-{TRACE}-{SPAN}.01",
    f"cc-{TRACE}-{SPAN}-01.what-the-future-will-not-be-like",  # future version, bad separator
    f"00-{TRACE[:-1]}z-{SPAN}-01",  # non-hex trace id
    f"00-{TRACE}-{SPAN[:-1]}x-01",  # non-hex span id
    f"00-{TRACE}-{SPAN}-0x",  # non-hex flags
    f"00-{TRACE}-{SPAN}-01\n",  # newline is not optional whitespace
    f"00-{TRACE[:-1]}٣-{SPAN}-01",  # non-ASCII digit
    f"-00-{TRACE}-{SPAN}-1",
]


@pytest.mark.parametrize("value", MALFORMED)
def test_parse_rejects(value: str) -> None:
    assert p.parse_traceparent(value) is None


@pytest.mark.parametrize(
    "value", [None, 1, b"00-" + TRACE.encode() + b"-" + SPAN.encode() + b"-01"]
)
def test_parse_rejects_non_strings(value: object) -> None:
    assert p.parse_traceparent(value) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"trace_id": "0" * 32},
        {"trace_id": TRACE.upper()},
        {"trace_id": TRACE[:-1]},
        {"span_id": "0" * 16},
        {"span_id": SPAN + "0"},
        {"flags": 256},
        {"flags": -1},
        {"version": 255},
    ],
)
def test_traceparent_constructor_validates(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"version": 0, "trace_id": TRACE, "span_id": SPAN, "flags": 1}
    with pytest.raises(ValueError):  # noqa: PT011 - any field message
        p.TraceParent(**{**fields, **kwargs})  # type: ignore[arg-type]


def test_traceparent_is_frozen() -> None:
    tp = p.TraceParent(version=0, trace_id=TRACE, span_id=SPAN, flags=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tp.flags = 0  # type: ignore[misc]


def test_metadata_keys() -> None:
    assert p.TRACEPARENT_KEY == "traceparent"
    assert p.TRACESTATE_KEY == "tracestate"


def test_traceparent_from_metadata() -> None:
    assert p.traceparent_from_metadata(None) is None
    assert p.traceparent_from_metadata({}) is None
    assert p.traceparent_from_metadata({"traceparent": 5}) is None
    assert p.traceparent_from_metadata({"traceparent": "garbage"}) is None
    tp = p.traceparent_from_metadata({"traceparent": VALID, "other": 1})
    assert tp is not None
    assert tp.trace_id == TRACE


def test_with_traceparent_returns_a_copy() -> None:
    req = p.Request(request_id="r", trace_id="trace-001", max_tokens=3, metadata={"keep": [1]})
    tp = p.TraceParent(version=0, trace_id=TRACE, span_id=SPAN, flags=0)
    out = p.with_traceparent(req, tp, tracestate="vendor=1")
    assert out is not req
    assert out.metadata == {
        "keep": [1],
        "traceparent": f"00-{TRACE}-{SPAN}-00",
        "tracestate": "vendor=1",
    }
    assert req.metadata == {"keep": [1]}  # original untouched
    assert out.metadata is not None
    out.metadata["keep"].append(2)
    assert req.metadata == {"keep": [1]}  # deep copy
    assert out.trace_id == "trace-001"  # the protocol trace_id is left alone
    assert p.traceparent_from_metadata(out.metadata) == tp
    # Survives the wire.
    again = p.validate(p.Request, out.model_dump_json())
    assert p.traceparent_from_metadata(again.metadata) == tp


def test_with_traceparent_string_and_no_metadata() -> None:
    req = p.Request(request_id="r", trace_id="t", max_tokens=3)
    out = p.with_traceparent(req, f"  {VALID}")
    assert out.metadata == {"traceparent": VALID}
    with pytest.raises(ValueError, match="traceparent"):
        p.with_traceparent(req, "00-nope")


def test_otel_trace_id_pass_through() -> None:
    assert p.otel_trace_id(TRACE) == TRACE


@pytest.mark.parametrize(
    "value",
    [
        "trace-001",
        "",
        "0" * 32,
        TRACE.upper(),
        TRACE + "0",
        "benchmark-chatcmpl-1a2b3c4d",
        "\ud800",
    ],
)
def test_otel_trace_id_hashes_everything_else(value: str) -> None:
    out = p.otel_trace_id(value)
    assert len(out) == 32
    assert out == out.lower()
    int(out, 16)
    assert out != "0" * 32
    assert out != value
    assert p.otel_trace_id(value) == out  # deterministic
    assert p.parse_traceparent(f"00-{out}-{SPAN}-01") is not None


def test_otel_trace_id_known_value() -> None:
    # Stable across processes and versions: plain blake2b, 16-byte digest, UTF-8.
    expected = hashlib.blake2b(b"trace-001", digest_size=16).hexdigest()
    assert p.otel_trace_id("trace-001") == expected
    assert p.otel_trace_id("trace-002") != expected
