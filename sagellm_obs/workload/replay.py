"""Replay a recorded workload from a JSONL file, reporting every bad line by number.

Each non-blank line of the file is one JSON object, in either form:

* a protocol :class:`~sagellm_obs.protocol.Request` (``request_id``, ``trace_id``, ``prompt`` or
  ``messages``, ``max_tokens``, ...);
* an OpenAI-style body: completion style ``{"prompt": "..."}`` or chat style
  ``{"messages": [{"role": "user", "content": "..."}]}``, with optional ``max_tokens`` (or
  ``max_completion_tokens``), ``temperature``, ``top_p``, ``model``, ``stream``, ``session_id``.

Both are read the same way: the object is validated as a protocol ``Request`` after filling what
is missing. A missing ``request_id`` becomes ``f"replay-{line:05d}"`` (the 1-based line number, so
ids are stable for a given file), a missing ``trace_id`` the request id, a missing or ``null``
``max_tokens`` ``default_max_tokens``. Unknown keys are ignored. An optional ``"at"`` gives the
send time in seconds after the run start (a finite number >= 0); without it the item is sent as
soon as a concurrency slot frees (``at = None``). ``metadata["workload"]`` is set to ``"replay"``
unless the line sets it; ``session_id`` (top level or in ``metadata``) and ``metadata["family"]``
fill :class:`~sagellm_obs.workload.item.WorkItem`'s fields.

A line is bad when it is not valid UTF-8, not valid JSON, not a JSON object, fails protocol
validation (``max_tokens: 0``, a non-string prompt...), has neither a prompt nor messages, or
repeats an earlier ``request_id``. Each bad line becomes a :class:`BadLine` naming its line number
and the offending field; the good lines are returned in file order. Blank lines are skipped (they
still count for line numbers). A last line without a newline is parsed like the others, so a file
whose writer was cut off mid-line reports its torn last line as bad (and says it was unterminated).
Reading never raises on file contents, whatever the bytes, unless ``errors="raise"``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sagellm_obs.protocol import ProtocolValidationError, Request, validate
from sagellm_obs.workload.item import WorkItem, check_positive

__all__ = [
    "REPLAY_KIND",
    "BadLine",
    "ReplayError",
    "ReplayResult",
    "load_replay",
    "parse_replay",
]

REPLAY_KIND = "replay"
"""``WorkItem.kind`` and default ``metadata["workload"]`` of replayed items."""

_JSON_TYPES: dict[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


@dataclass(frozen=True)
class BadLine:
    """A line of a replay file that could not be used.

    Attributes:
        line: 1-based line number in the file.
        message: What is wrong, starting with the field when one is to blame
            (``"max_tokens: Input should be greater than 0"``); never contains the prompt.
        field: Dotted path of the bad field (``"messages.0.content"``), ``""`` when the line as a
            whole is bad (not UTF-8, not JSON, not an object).
    """

    line: int
    message: str
    field: str = ""

    def __str__(self) -> str:
        """``"line 7: max_tokens: Input should be greater than 0"``."""
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class ReplayResult:
    """What :func:`load_replay` read.

    Attributes:
        path: The file read (``"<bytes>"`` or the given source name for :func:`parse_replay`).
        items: The good lines as work items, in file order.
        bad_lines: The bad lines, in file order.
    """

    path: str
    items: list[WorkItem] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """``True`` when no line was bad."""
        return not self.bad_lines


class ReplayError(ValueError):
    """A bad line of a replay file, raised with ``errors="raise"``.

    Attributes:
        path: The file.
        line: 1-based line number.
        field: The bad field, ``""`` when the whole line is bad.
    """

    def __init__(self, path: str, bad: BadLine) -> None:
        """Builds ``"<path>:<line>: <message>"``."""
        self.path = path
        self.line = bad.line
        self.field = bad.field
        super().__init__(f"{path}:{bad.line}: {bad.message}")


class _LineError(Exception):
    """Internal: why one line is bad."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def load_replay(
    path: str | os.PathLike[str],
    *,
    errors: Literal["report", "raise"] = "report",
    default_max_tokens: int = 128,
    ignore_eos: bool = False,
) -> ReplayResult:
    """Reads a JSONL replay file (see the module documentation for the accepted lines).

    Args:
        path: The file.
        errors: ``"report"`` collects bad lines in :attr:`ReplayResult.bad_lines`; ``"raise"``
            raises :class:`ReplayError` at the first one.
        default_max_tokens: ``max_tokens`` of lines that give none (> 0).
        ignore_eos: Set ``metadata["ignore_eos"]`` on every request (fixed-length outputs).

    Returns:
        The good lines as items and the bad lines.

    Raises:
        ReplayError: ``errors="raise"`` and a line is bad; the message starts with
            ``"<path>:<line>: "``.
        OSError: The file cannot be read.
        ValueError: Bad ``errors`` or ``default_max_tokens``.
    """
    _check_options(errors, default_max_tokens)
    with open(path, "rb") as f:
        data = f.read()
    return parse_replay(
        data,
        source=os.fspath(path),
        errors=errors,
        default_max_tokens=default_max_tokens,
        ignore_eos=ignore_eos,
    )


def parse_replay(
    data: bytes,
    *,
    source: str = "<bytes>",
    errors: Literal["report", "raise"] = "report",
    default_max_tokens: int = 128,
    ignore_eos: bool = False,
) -> ReplayResult:
    """Parses the bytes of a JSONL replay file; :func:`load_replay` without the file.

    Args:
        data: The file contents.
        source: Name used in :attr:`ReplayResult.path` and error messages.
        errors: ``"report"`` or ``"raise"`` (see :func:`load_replay`).
        default_max_tokens: ``max_tokens`` of lines that give none (> 0).
        ignore_eos: Set ``metadata["ignore_eos"]`` on every request.

    Returns:
        The good lines as items and the bad lines.

    Raises:
        ReplayError: ``errors="raise"`` and a line is bad.
        ValueError: Bad ``errors`` or ``default_max_tokens``.
    """
    _check_options(errors, default_max_tokens)
    result = ReplayResult(path=source)
    seen: dict[str, int] = {}
    lines = data.split(b"\n")
    for index, raw in enumerate(lines):
        number = index + 1
        unterminated = index == len(lines) - 1
        try:
            item = _parse_line(raw, number, unterminated, default_max_tokens, ignore_eos)
            if item is None:
                continue
            request_id = item.request.request_id
            if request_id in seen:
                raise _LineError(
                    f"request_id: duplicate of the request on line {seen[request_id]}",
                    "request_id",
                )
        except _LineError as exc:
            bad = BadLine(number, exc.message, exc.field)
            if errors == "raise":
                raise ReplayError(source, bad) from None
            result.bad_lines.append(bad)
            continue
        seen[request_id] = number
        result.items.append(item)
    return result


def _check_options(errors: str, default_max_tokens: int) -> None:
    """Validates the options shared by :func:`load_replay` and :func:`parse_replay`."""
    if errors not in ("report", "raise"):
        raise ValueError(f"errors must be 'report' or 'raise', got {errors!r}")
    check_positive("default_max_tokens", default_max_tokens)


def _parse_line(
    raw: bytes, number: int, unterminated: bool, default_max_tokens: int, ignore_eos: bool
) -> WorkItem | None:
    """One line as a work item, ``None`` for a blank line; raises :class:`_LineError`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _LineError(f"not valid UTF-8 (invalid byte at offset {exc.start})") from None
    if number == 1:
        text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
    text = text.strip()
    if not text:
        return None
    obj = _load_json(text, unterminated)
    if not isinstance(obj, dict):
        kind = _JSON_TYPES.get(type(obj), type(obj).__name__)
        raise _LineError(f"expected a JSON object, got {kind}")
    bad_field = _unencodable_field(obj)
    if bad_field is not None:
        # A "\ud800" escape decodes to a lone surrogate, which no UTF-8 writer can serialise.
        raise _LineError(f"{bad_field}: string with an unpaired surrogate escape", bad_field)
    return _item_from_object(obj, number, default_max_tokens, ignore_eos)


def _unencodable_field(obj: dict[str, Any]) -> str | None:
    """Dotted path of the first string (key or value) that is not valid Unicode, else ``None``."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return path
        elif isinstance(value, dict):
            for key, child in value.items():
                child_path = f"{path}.{key}" if path else str(key)
                if not _encodable(key):
                    return path or "<key>"
                stack.append((child_path, child))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 (has no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _load_json(text: str, unterminated: bool) -> Any:
    """``json.loads`` with every failure turned into a :class:`_LineError`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at column {exc.colno}"
    except (ValueError, RecursionError) as exc:  # huge integers, absurd nesting
        reason = type(exc).__name__ if isinstance(exc, RecursionError) else str(exc)
    torn = "truncated last line (no trailing newline): " if unterminated else ""
    raise _LineError(f"{torn}not valid JSON: {reason}")


def _item_from_object(
    obj: dict[str, Any], number: int, default_max_tokens: int, ignore_eos: bool
) -> WorkItem:
    """Validates one JSON object as a request and wraps it; raises :class:`_LineError`."""
    data = dict(obj)
    at = _send_time(data.pop("at", None))
    if data.get("request_id") is None:
        data["request_id"] = f"{REPLAY_KIND}-{number:05d}"
    if data.get("trace_id") is None:
        data["trace_id"] = data["request_id"]
    if data.get("max_tokens") is None:
        fallback = data.get("max_completion_tokens")
        data["max_tokens"] = default_max_tokens if fallback is None else fallback
    request = _validated(lambda: validate(Request, data))
    if not request.prompt and not request.messages:
        raise _LineError("prompt: a request needs a non-empty prompt or messages", "prompt")
    metadata: dict[str, Any] = dict(request.metadata or {})
    metadata.setdefault("workload", REPLAY_KIND)
    if ignore_eos:
        metadata["ignore_eos"] = True
    request = request.model_copy(update={"metadata": metadata})
    session_id = _str_or_none(obj.get("session_id")) or _str_or_none(metadata.get("session_id"))
    family = _str_or_none(metadata.get("family")) or session_id
    return WorkItem(request=request, at=at, session_id=session_id, family=family, kind=REPLAY_KIND)


def _validated(build: Callable[[], Request]) -> Request:
    """Runs a validation, mapping every failure to a :class:`_LineError` naming the field."""
    try:
        return build()
    except ProtocolValidationError as exc:
        parts = [
            f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in exc.errors
        ]
        raise _LineError("; ".join(parts) or str(exc), exc.field) from None
    except (ValueError, TypeError, RecursionError) as exc:  # pragma: no cover - defensive
        raise _LineError(f"invalid request ({type(exc).__name__})") from None


def _send_time(value: Any) -> float | None:
    """The ``"at"`` value as seconds, ``None`` when absent; raises :class:`_LineError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _LineError("at: must be a number of seconds", "at")
    try:
        seconds = float(value)
    except OverflowError:  # an integer too large for a float
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise _LineError("at: must be a finite number of seconds >= 0", "at")
    return seconds


def _str_or_none(value: Any) -> str | None:
    """``value`` when it is a non-empty string, else ``None``."""
    return value if isinstance(value, str) and value else None
