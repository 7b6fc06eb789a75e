"""W3C Trace Context (level 1) carried through protocol ``metadata``.

The sageLLM protocol has no span or parent fields, and its ``trace_id`` is a free-form string
(``"trace-001"``, ``"benchmark-<uuid>"``...). Trace context therefore travels as
``Request.metadata["traceparent"]`` (and optionally ``["tracestate"]``): sageLLM receivers pass the
bag through untouched.

:func:`otel_trace_id` maps a protocol ``trace_id`` onto a valid OpenTelemetry trace id. Callers
that use it keep the original string as the ``sagellm.trace_id`` span attribute, so the mapping
never loses information.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from sagellm_obs.protocol.types import Request

__all__ = [
    "TRACEPARENT_KEY",
    "TRACESTATE_KEY",
    "TraceParent",
    "format_traceparent",
    "otel_trace_id",
    "parse_traceparent",
    "traceparent_from_metadata",
    "with_traceparent",
]

TRACEPARENT_KEY = "traceparent"
"""``metadata`` key (and HTTP header name) of the W3C ``traceparent`` value."""

TRACESTATE_KEY = "tracestate"
"""``metadata`` key (and HTTP header name) of the W3C ``tracestate`` value."""

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX2 = re.compile(r"[0-9a-f]{2}")
_ZERO32 = "0" * 32
_ZERO16 = "0" * 16
_V00_LENGTH = 55  # "00-" + 32 + "-" + 16 + "-" + 2
_SAMPLED = 0x01


@dataclass(frozen=True)
class TraceParent:
    """A parsed ``traceparent`` value.

    Attributes:
        version: Format version, 0..254 (255 is forbidden); 0 for everything written here.
        trace_id: 32 lowercase hex digits, not all zero.
        span_id: The parent span id: 16 lowercase hex digits, not all zero.
        flags: Trace flags, 0..255 (bit 0 = sampled).

    Raises:
        ValueError: On construction, when a field is malformed.
    """

    version: int
    trace_id: str
    span_id: str
    flags: int

    def __post_init__(self) -> None:
        """Validates the fields."""
        if not (isinstance(self.trace_id, str) and _HEX32.fullmatch(self.trace_id)):
            raise ValueError("trace_id must be 32 lowercase hex digits")
        if self.trace_id == _ZERO32:
            raise ValueError("trace_id must not be all zero")
        if not (isinstance(self.span_id, str) and _HEX16.fullmatch(self.span_id)):
            raise ValueError("span_id must be 16 lowercase hex digits")
        if self.span_id == _ZERO16:
            raise ValueError("span_id must not be all zero")
        if not (isinstance(self.flags, int) and 0 <= self.flags <= 0xFF):
            raise ValueError("flags must be in 0..255")
        if not (isinstance(self.version, int) and 0 <= self.version < 0xFF):
            raise ValueError("version must be in 0..254")

    @property
    def sampled(self) -> bool:
        """Whether the caller recorded (sampled) the parent span."""
        return bool(self.flags & _SAMPLED)

    @classmethod
    def from_ints(cls, trace_id: int, span_id: int, flags: int = _SAMPLED) -> TraceParent:
        """Builds a version-00 value from OpenTelemetry's integer ids (``SpanContext``)."""
        return cls(version=0, trace_id=f"{trace_id:032x}", span_id=f"{span_id:016x}", flags=flags)

    def __str__(self) -> str:
        """The header value, see :func:`format_traceparent`."""
        return format_traceparent(self)


def parse_traceparent(value: object) -> TraceParent | None:
    """Parses a ``traceparent`` value strictly per W3C Trace Context level 1.

    Surrounding spaces and tabs (HTTP optional whitespace) are ignored. Rejected: anything that is
    not a ``str``; version ``ff`` or non-hex/uppercase version; wrong field lengths or separators;
    uppercase hex; all-zero trace or span ids; for version ``00``, anything after the flags. Higher
    versions are parsed leniently as the spec asks: the value may continue after the flags, but
    only after a ``-``.

    Args:
        value: The header or metadata value.

    Returns:
        The parsed value, or ``None`` when it is invalid (never raises).
    """
    if not isinstance(value, str):
        return None
    text = value.strip(" \t")
    if len(text) < _V00_LENGTH:
        return None
    version = text[0:2]
    if not _HEX2.fullmatch(version) or version == "ff":
        return None
    if version == "00" and len(text) != _V00_LENGTH:
        return None
    if len(text) > _V00_LENGTH and text[_V00_LENGTH] != "-":
        return None
    if text[2] != "-" or text[35] != "-" or text[52] != "-":
        return None
    trace_id, span_id, flags = text[3:35], text[36:52], text[53:55]
    if not (_HEX32.fullmatch(trace_id) and _HEX16.fullmatch(span_id) and _HEX2.fullmatch(flags)):
        return None
    if trace_id == _ZERO32 or span_id == _ZERO16:
        return None
    return TraceParent(
        version=int(version, 16), trace_id=trace_id, span_id=span_id, flags=int(flags, 16)
    )


def format_traceparent(tp: TraceParent) -> str:
    """Formats ``"{version:02x}-{trace_id}-{span_id}-{flags:02x}"``.

    Examples:
        >>> tp = TraceParent(0, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1)
        >>> format_traceparent(tp)
        '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    """
    return f"{tp.version:02x}-{tp.trace_id}-{tp.span_id}-{tp.flags:02x}"


def traceparent_from_metadata(metadata: dict[str, Any] | None) -> TraceParent | None:
    """Reads ``metadata["traceparent"]``; ``None`` when absent, not a dict or invalid."""
    if not isinstance(metadata, dict):
        return None
    return parse_traceparent(metadata.get(TRACEPARENT_KEY))


def default_trace_id(metadata: dict[str, Any] | None, fallback: str) -> str:
    """The protocol ``trace_id`` of a request whose client named none.

    The W3C trace id of ``metadata["traceparent"]`` when it has a valid one, so the protocol
    trace id, the ``X-Trace-Id`` response header and the spans' trace id are one id; else
    ``fallback`` (the request id, as sageLLM's engine does).
    """
    tp = traceparent_from_metadata(metadata)
    return tp.trace_id if tp is not None else fallback


def with_traceparent(
    request: Request, traceparent: TraceParent | str, tracestate: str | None = None
) -> Request:
    """Returns a copy of ``request`` whose metadata carries the trace context.

    Existing metadata keys are kept; ``traceparent`` (and ``tracestate`` when given) are set.
    The original request is not modified.

    Args:
        request: The request.
        traceparent: A ``TraceParent`` or a valid header value.
        tracestate: Optional W3C ``tracestate`` value, stored verbatim.

    Returns:
        The new request.

    Raises:
        ValueError: ``traceparent`` is a string that does not parse.
    """
    if isinstance(traceparent, str):
        parsed = parse_traceparent(traceparent)
        if parsed is None:
            raise ValueError("invalid traceparent value")
        traceparent = parsed
    metadata = copy.deepcopy(request.metadata) if request.metadata else {}
    metadata[TRACEPARENT_KEY] = format_traceparent(traceparent)
    if tracestate is not None:
        metadata[TRACESTATE_KEY] = tracestate
    return request.model_copy(update={"metadata": metadata}, deep=True)


def otel_trace_id(protocol_trace_id: str) -> str:
    """Maps a protocol ``trace_id`` to a valid OpenTelemetry / W3C trace id (32 lowercase hex).

    A value that already is 32 lowercase hex digits and not all zero is returned unchanged. Any
    other string is hashed: ``blake2b(value.encode("utf-8"), digest_size=16).hexdigest()``
    (lone surrogates are encoded with ``surrogatepass``), which is deterministic across processes
    and hosts, so every component derives the same id for the same protocol ``trace_id``. An
    all-zero digest (probability 2**-128) becomes ``...01``. Callers keep the original string as
    the ``sagellm.trace_id`` attribute.

    Args:
        protocol_trace_id: The free-form protocol ``trace_id``.

    Returns:
        32 lowercase hex digits, never all zero.

    Examples:
        >>> otel_trace_id("4bf92f3577b34da6a3ce929d0e0e4736")
        '4bf92f3577b34da6a3ce929d0e0e4736'
        >>> len(otel_trace_id("trace-001"))
        32
    """
    if _HEX32.fullmatch(protocol_trace_id) and protocol_trace_id != _ZERO32:
        return protocol_trace_id
    digest = hashlib.blake2b(
        protocol_trace_id.encode("utf-8", "surrogatepass"), digest_size=16
    ).hexdigest()
    return digest if digest != _ZERO32 else _ZERO32[:-1] + "1"
