"""OTLP/JSON span lines written as text, straight from plain values (no SDK span objects).

The telemetry thread knows every field of its spans as plain ints and strings, so it formats
their OTLP/JSON text directly and joins a batch into one line behind a precomputed resource/scope
envelope. The text is exactly what :func:`~sagellm_obs.store.otlp_json.encode_spans` followed by
``json.dumps`` writes for the same span (same keys, same value encodings: camelCase, hex ids,
int64 as decimal strings, enums as integers); values of unusual types go through that very
encoder. ``tests/telemetry/test_telemetry_direct_spans.py`` checks it field by field against
the SDK path.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any

import msgspec
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from sagellm_obs.store.otlp_json import any_value, key_values
from sagellm_obs.store.run import RunStore

KIND_INTERNAL = 1
KIND_SERVER = 2
STATUS_ERROR = 2
FLAG_HAS_IS_REMOTE = 0x100  # SpanFlags: "has is_remote"
FLAG_IS_REMOTE = 0x200  # SpanFlags: the parent is remote

_log = logging.getLogger(__name__)
_TRUE = '{"boolValue":true}'
_FALSE = '{"boolValue":false}'
_KEY_CACHE: dict[str, tuple[str, str, str, str]] = {}
_SENTINEL = "\x00sagellm-spans\x00"


def _dumps(obj: Any) -> str:
    # The store's own serialisation (RunStore.write): the reference for every fragment here.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)


def value_text(value: Any) -> str:
    """One attribute value as OTLP/JSON ``AnyValue`` text (as ``_dumps(any_value(value))``)."""
    t = type(value)
    if t is str:
        return '{"stringValue":' + encode_basestring(value) + "}"
    if t is float:
        if value - value == 0.0:  # finite: repr is what json writes; NaN/inf below
            return '{"doubleValue":' + float.__repr__(value) + "}"
    elif t is int:
        return '{"intValue":"' + int.__repr__(value) + '"}'
    elif t is bool:
        return _TRUE if value else _FALSE
    elif t is tuple or t is list:
        return '{"arrayValue":{"values":[' + ",".join([value_text(v) for v in value]) + "]}}"
    return _dumps(any_value(value))


def attributes_text(attributes: Mapping[str, Any]) -> str:
    """Attributes as the text of an OTLP/JSON ``KeyValue`` list, without the brackets."""
    cache = _KEY_CACHE
    parts: list[str] = []
    add = parts.append
    for key, value in attributes.items():
        heads = cache.get(key)
        if heads is None:
            head = '{"key":' + encode_basestring(key) + ',"value":'
            heads = cache[key] = (
                head + '{"stringValue":',
                head + '{"doubleValue":',
                head + '{"intValue":"',
                head,
            )
        # The common cases of value_text, inlined (a third of the cost of this function).
        t = type(value)
        if t is str:
            add(heads[0] + encode_basestring(value) + "}}")
        elif t is float and value - value == 0.0:
            add(heads[1] + float.__repr__(value) + "}}")
        elif t is int:
            add(heads[2] + int.__repr__(value) + '"}}')
        else:
            add(heads[3] + value_text(value) + "}")
    return ",".join(parts)


_ENCODE = msgspec.json.Encoder().encode
# The text around one value of each type, inside {"key":...,"value":...}.
_AROUND: dict[type, tuple[str, str]] = {
    str: ('{"stringValue":', "}"),
    int: ('{"intValue":"', '"}'),
    float: ('{"doubleValue":', "}"),
    bool: ('{"boolValue":', "}"),
    tuple: ('{"arrayValue":{"values":[', "]}}"),  # the items' text
}


def _getter(positions: list[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """``itemgetter`` of ``positions`` that returns a tuple for any number of them."""
    if len(positions) > 1:
        return itemgetter(*positions)
    if positions:
        at = positions[0]
        return lambda values: (values[at],)
    return lambda _: ()


def _number_texts(numbers: tuple[Any, ...]) -> list[str] | None:
    """What json writes for each int and finite float; None if one is not finite.

    msgspec writes ints and the same shortest round-trip digits as ``repr`` of a float in one C
    call, at a tenth of the cost of ``repr`` one by one; only its notation of floats below 1e-4
    and from 1e16 differs (``0.00001``, ``1e16``), and those items are redone with ``repr``.
    ``tests/store/test_store_otlp_text.py`` compares the two across the range.
    """
    if not numbers:
        return []
    encoded = _ENCODE(numbers)
    if b"l" in encoded:  # msgspec writes NaN and infinities as null
        return None
    texts = encoded[1:-1].decode().split(",")
    if b"e" in encoded or b"0.0000" in encoded:  # (a superset: "10.00001" is fine)
        for i, text in enumerate(texts):
            if "e" in text or text.lstrip("-").startswith("0.0000"):
                texts[i] = float.__repr__(numbers[i])
    return texts


class AttributesTemplate:
    """Attributes with fixed keys and value types, formatted in a few C-level operations.

    A request span's ~30 attributes always have the same keys in the same order, and their
    values the same types: the text around the values is cut once into pieces, and :meth:`fill`
    converts the values a type at a time (every string in one ``map``, every number in one
    msgspec call) and joins them into those pieces, at under a third of the cost of
    :func:`attributes_text`, which looks up, tests and joins every attribute. The result is
    exactly ``attributes_text`` of the same attributes; a value of another type (a subclass
    included) or a non-finite float makes :meth:`fill` return None, and the caller formats
    them with :func:`attributes_text`.

    Args:
        layout: The keys and the type of each value, in order: ``str``, ``int``, ``float``,
            ``bool``, or ``tuple`` (a tuple of ``str``).
    """

    def __init__(self, layout: Sequence[tuple[str, type]]) -> None:
        self.keys = tuple(key for key, _ in layout)
        self._types = tuple(t for _, t in layout)
        # The text before each value (it closes the one before), then after the last; the
        # values go in the gaps (odd places) of self._pieces.
        texts, close = [], ""
        for n, (key, t) in enumerate(layout):
            before, after = _AROUND[t]
            key_text = '{"key":' + encode_basestring(key) + ',"value":'
            texts.append(close + ("," if n else "") + key_text + before)
            close = after + "}"
        self._pieces = [part for text in texts for part in (text, "")] + [close]
        positions = {t: [i for i, u in enumerate(self._types) if u is t] for t in _AROUND}
        numbers = sorted(positions[int] + positions[float])
        self._strings = _getter(positions[str])
        self._numbers = _getter(numbers)
        self._others = [
            (i, self._types[i] is bool) for i in sorted(positions[bool] + positions[tuple])
        ]
        # The texts come strings, numbers, others: put them back in the attributes' order.
        order = positions[str] + numbers + [i for i, _ in self._others]
        self._in_order = _getter(sorted(range(len(order)), key=order.__getitem__))

    def fill(self, values: Sequence[Any]) -> str | None:
        """The attributes' text (as :func:`attributes_text`), or None for an unusual value."""
        if tuple(map(type, values)) != self._types:
            return None
        numbers = _number_texts(self._numbers(values))
        if numbers is None:
            return None
        texts = list(map(encode_basestring, self._strings(values)))
        texts += numbers
        for i, is_bool in self._others:
            value = values[i]
            if is_bool:
                texts.append("true" if value else "false")
                continue
            for item in value:
                if type(item) is not str:
                    return None
            texts.append(",".join(['{"stringValue":' + encode_basestring(v) + "}" for v in value]))
        pieces = self._pieces.copy()
        pieces[1::2] = self._in_order(texts)
        return "".join(pieces)


def span_text(
    trace_id: int,
    span_id: int,
    trace_state: str,
    parent_span_id: int,
    flags: int,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    attributes: str,
    events: str,
    status: str,
) -> str:
    """One span's OTLP/JSON text.

    Args:
        trace_id: Trace id.
        span_id: Span id.
        trace_state: W3C tracestate header, or "".
        parent_span_id: Parent span id, or 0 for a root span.
        flags: OTLP ``SpanFlags`` (W3C trace flags plus the is-remote bits).
        name: Span name.
        kind: OTLP span kind number.
        start_ns: Start, epoch nanoseconds.
        end_ns: End, epoch nanoseconds.
        attributes: :func:`attributes_text`, or "" for none.
        events: Comma-joined :func:`event_text`, or "" for none.
        status: :func:`status_text`.
    """
    out = f'{{"traceId":"{trace_id:032x}","spanId":"{span_id:016x}"'
    if trace_state:
        out += ',"traceState":' + encode_basestring(trace_state)
    if parent_span_id:
        out += f',"parentSpanId":"{parent_span_id:016x}"'
    out += (
        f',"flags":{flags:d},"name":{encode_basestring(name)},"kind":{kind:d},'
        f'"startTimeUnixNano":"{start_ns:d}","endTimeUnixNano":"{end_ns:d}"'
    )
    if attributes:
        out += ',"attributes":[' + attributes + "]"
    if events:
        out += ',"events":[' + events + "]"
    return out + ',"status":' + status + "}"


def child_spans_text(
    trace_id: int,
    trace_state: str,
    parent_span_id: int,
    flags: int,
    kind: int,
    spans: list[tuple[str, int, int, int]],
) -> list[str]:
    """:func:`span_text` of spans that share their trace, parent, flags and kind and have no
    attributes, events or status (a request's phases), from ``(name, span id, start, end)``."""
    head = f'{{"traceId":"{trace_id:032x}","spanId":"'
    middle = '"'
    if trace_state:
        middle += ',"traceState":' + encode_basestring(trace_state)
    if parent_span_id:
        middle += f',"parentSpanId":"{parent_span_id:016x}"'
    middle += f',"flags":{flags:d},"name":'
    kind_text = f',"kind":{kind:d},"startTimeUnixNano":"'
    status = '","status":' + STATUS_UNSET + "}"
    return [
        f"{head}{span_id:016x}{middle}{encode_basestring(name)}{kind_text}{start_ns:d}"
        f'","endTimeUnixNano":"{end_ns:d}{status}'
        for name, span_id, start_ns, end_ns in spans
    ]


def event_text(timestamp_ns: int, name: str) -> str:
    """An event without attributes."""
    return f'{{"timeUnixNano":"{timestamp_ns:d}","name":{encode_basestring(name)}}}'


def status_text(code: int, message: str | None) -> str:
    """A span status: ``{}`` for UNSET, else the code and message (if any)."""
    status: dict[str, Any] = {}
    if code:
        status["code"] = code
    if message:
        status["message"] = message
    return _dumps(status)


STATUS_UNSET = status_text(0, None)


def envelope(resource: Resource, scope: InstrumentationScope) -> tuple[str, str]:
    """Text before and after the spans of one line, as ``encode_spans`` shapes them."""
    entry: dict[str, Any] = {"scope": {"name": scope.name}, "spans": _SENTINEL}
    if scope.version:
        entry["scope"]["version"] = scope.version
    if scope.attributes:
        entry["scope"]["attributes"] = key_values(scope.attributes)
    if scope.schema_url:
        entry["schemaUrl"] = scope.schema_url
    rs: dict[str, Any] = {
        "resource": {"attributes": key_values(resource.attributes)},
        "scopeSpans": [entry],
    }
    if resource.schema_url:
        rs["schemaUrl"] = resource.schema_url
    text = _dumps({"resourceSpans": [rs]})
    head, tail = text.split(_dumps(_SENTINEL))
    return head + "[", "]" + tail


class SpanLines:
    """Batches span texts of one resource/scope into ``traces-*.jsonl`` lines of a RunStore.

    Like the SDK's batch span processor: a line holds up to ``max_spans`` spans and is written
    once full, or before its first span has waited ``max_delay`` seconds (checked by
    :meth:`write_due`, which the telemetry thread calls after every drain), or on flush.

    Each :meth:`add` is encoded at once (a request's ~3 KB) and a line is handed to the store as
    those pieces: joining a line's ~400 KB into one string and encoding it cost ~4.5 µs a
    request, nearly all of it faulting in the fresh pages of two big buffers.

    Args:
        store: The run store.
        max_spans: Spans per line at most.
        max_delay: Seconds a span may wait for its line.
    """

    def __init__(self, store: RunStore, *, max_spans: int = 512, max_delay: float = 1.0) -> None:
        self._store = store
        self._max_spans = max(1, max_spans)
        self._max_delay = max_delay
        self._key: tuple[Resource, InstrumentationScope] | None = None
        self._head = self._tail = b""
        self._line: list[bytes] = []  # the open line's pieces: head, spans, commas
        self._in_line = 0  # spans in the open line
        self._full: list[bytes] = []  # pieces of full lines not yet written
        self._full_spans = self._full_lines = 0
        self._since = 0.0
        self.spans_written = 0
        self.spans_failed = 0

    def add(self, resource: Resource, scope: InstrumentationScope, texts: list[str]) -> None:
        """Queue span texts; writes the lines that filled up."""
        key = self._key
        if key is None or key[0] is not resource or key[1] is not scope:
            self.write_due(force=True)  # a line has one resource and scope
            self._key = (resource, scope)
            head, tail = envelope(resource, scope)
            self._head, self._tail = head.encode(), (tail + "\n").encode()
        while texts:
            room = self._max_spans - self._in_line
            part, texts = (texts, []) if len(texts) < room else (texts[:room], texts[room:])
            line = self._line
            if line:
                line.append(b",")
            else:
                line.append(self._head)
                self._since = time.monotonic()
            line.append(",".join(part).encode())
            self._in_line += len(part)
            if len(part) == room:
                self._close_line()
        if self._full:
            self._write()

    def write_due(self, *, force: bool = False, within: float = 0.0) -> None:
        """Write what is queued if it waited long enough, or will have ``within`` seconds from
        now (the caller's next check), or ``force``."""
        if self._line and (force or time.monotonic() - self._since + within >= self._max_delay):
            self._close_line()
        if self._full:
            self._write()

    def _close_line(self) -> None:
        self._line.append(self._tail)
        self._full += self._line
        self._full_spans += self._in_line
        self._full_lines += 1
        self._line, self._in_line = [], 0

    def _write(self) -> None:
        pieces, spans, lines = self._full, self._full_spans, self._full_lines
        self._full, self._full_spans, self._full_lines = [], 0, 0
        try:
            self._store.write_lines("traces", pieces, lines)
        except Exception:  # the store must never take the engine down (as StoreSpanExporter)
            self.spans_failed += spans
            _log.exception("sagellm-obs: writing %d spans to the local store failed", spans)
            return
        self.spans_written += spans
