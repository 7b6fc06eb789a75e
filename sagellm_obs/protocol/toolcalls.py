"""OpenAI tool calls: assembling streamed deltas (clients) and forcing calls (the server).

Client side: :class:`ToolCallAccumulator` turns ``delta.tool_calls`` fragments -- arguments split
over many chunks, several parallel calls interleaved by ``index`` -- into complete
:class:`ToolCall` objects.

Server side: :func:`forced_tool` reads a request's ``tools``/``tool_choice``; when a call is forced
(a named function, or ``"required"``) the engine generates a JSON object
``{"name": ..., "arguments": {...}}`` under a JSON-schema constraint (:attr:`ForcedTool.schema`),
and :class:`ToolCallTextParser` / :class:`ForcedToolStream` turn that text, as it streams, into the
tool call and its ``arguments`` fragments. One call per response (no parallel calls).

Standard library only (the server imports it).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FUNCTION = "function"


def new_call_id() -> str:
    """A fresh tool-call id in OpenAI's style (``call_`` + 24 hex digits)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


# --- client side: accumulating deltas ------------------------------------------------------------
@dataclass
class ToolCall:
    """One tool call, complete or being assembled.

    Attributes:
        index: Position among the response's calls (the delta ``index``).
        id: The call id (``call_...``).
        name: The function name.
        arguments: The arguments as JSON text (concatenated fragments).
        type: Always ``"function"`` today.
    """

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""
    type: str = FUNCTION

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON, or None when they are not (yet) valid JSON."""
        try:
            return json.loads(self.arguments) if self.arguments else None
        except ValueError:
            return None

    def to_openai(self) -> dict[str, Any]:
        """The call as an OpenAI ``message.tool_calls`` entry."""
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class ToolCallAccumulator:
    """Assembles tool calls from streamed ``delta.tool_calls`` entries.

    Entries may be openai ``ChoiceDeltaToolCall`` objects or plain dicts. ``id``, ``type`` and
    ``function.name`` arrive once (normally in a call's first fragment); ``function.arguments``
    fragments are concatenated per ``index``.
    """

    calls: dict[int, ToolCall] = field(default_factory=dict)

    def add(self, delta: Any) -> tuple[ToolCall, str]:
        """Add one fragment; returns the call it belongs to and the new arguments text."""
        raw_index = _get(delta, "index")
        index = int(raw_index) if raw_index is not None else len(self.calls)
        call = self.calls.get(index)
        if call is None:
            call = self.calls[index] = ToolCall(index=index)
        call_id = _get(delta, "id")
        if call_id:
            call.id = str(call_id)
        kind = _get(delta, "type")
        if kind:
            call.type = str(kind)
        fn = _get(delta, "function")
        piece = ""
        if fn is not None:
            name = _get(fn, "name")
            if name:
                call.name = call.name + str(name) if call.name and call.name != name else str(name)
            args = _get(fn, "arguments")
            if args:
                piece = str(args)
                call.arguments += piece
        return call, piece

    def complete(self) -> list[ToolCall]:
        """Every call, in index order."""
        return [self.calls[i] for i in sorted(self.calls)]


# --- server side: forcing a call -----------------------------------------------------------------
@dataclass(frozen=True)
class ToolSpec:
    """A function tool from a request's ``tools``."""

    name: str
    description: str | None
    parameters: dict[str, Any]

    @classmethod
    def from_openai(cls, tool: Any) -> ToolSpec:
        """From ``{"type": "function", "function": {"name", "description", "parameters"}}``.

        Raises:
            ValueError: Not a function tool, or no name.
        """
        if _get(tool, "type") not in (None, FUNCTION):
            raise ValueError("only function tools are supported")
        fn = _get(tool, "function")
        name = _get(fn, "name") if fn is not None else None
        if not isinstance(name, str) or not name:
            raise ValueError("a function tool needs a name")
        params = _get(fn, "parameters")
        if params is None:
            params = {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise ValueError("function parameters must be a JSON schema object")
        desc = _get(fn, "description")
        return cls(
            name=name, description=desc if isinstance(desc, str) else None, parameters=params
        )


@dataclass(frozen=True)
class ForcedTool:
    """A tool call the response must make: one of ``tools`` (exactly one when named)."""

    tools: tuple[ToolSpec, ...]

    @property
    def name(self) -> str | None:
        """The function name when only one function may be called."""
        return self.tools[0].name if len(self.tools) == 1 else None

    @property
    def schema(self) -> dict[str, Any]:
        """JSON schema of ``{"name": <one of the names>, "arguments": <its parameters>}``."""
        options = [
            {
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for t in self.tools
        ]
        return options[0] if len(options) == 1 else {"anyOf": options}

    def system_prompt(self) -> str:
        """Instructions listing the functions, for models that were not told about them."""
        described = [
            {"name": t.name, "description": t.description, "parameters": t.parameters}
            for t in self.tools
        ]
        return (
            "Call one of these functions by answering with a JSON object "
            '{"name": <function name>, "arguments": <arguments object>}.\n'
            f"Functions: {json.dumps(described, separators=(',', ':'))}"
        )

    def parse(self, text: str) -> ToolCall | None:
        """The call in a complete (or truncated) generated text; None without a function name."""
        parser = ToolCallTextParser()
        parser.feed(text)
        name = parser.name or self.name
        if not name:
            return None
        return ToolCall(index=0, id=new_call_id(), name=name, arguments=parser.arguments)


def forced_tool(tools: Sequence[Any] | None, tool_choice: Any) -> ForcedTool | None:
    """The call a request forces, if any.

    ``tool_choice`` ``None``/``"auto"``/``"none"`` force nothing (the model answers with text:
    free-text tool calls are not parsed); ``"required"`` forces a call of any tool; a
    ``{"type": "function", "function": {"name": ...}}`` object forces that function.

    Raises:
        ValueError: An invalid combination (message names the problem).
    """
    specs = tuple(ToolSpec.from_openai(t) for t in (tools or ()))
    if tool_choice is None or tool_choice in ("auto", "none"):
        return None
    if tool_choice == "required":
        if not specs:
            raise ValueError('tool_choice "required" needs tools')
        return ForcedTool(specs)
    if isinstance(tool_choice, str):
        raise ValueError('tool_choice must be "none", "auto", "required" or a named function')
    fn = _get(tool_choice, "function")
    name = _get(fn, "name") if fn is not None else None
    if not isinstance(name, str) or not name:
        raise ValueError("tool_choice names no function")
    for spec in specs:
        if spec.name == name:
            return ForcedTool((spec,))
    raise ValueError(f"tool_choice names a function that is not in tools: {name[:100]}")


class ToolCallTextParser:
    """Reads ``{"name": "...", "arguments": {...}}`` as it is generated, character by character.

    After each :meth:`feed`, :attr:`name` holds the function name once its string is complete and
    :attr:`arguments` the raw JSON text of the ``arguments`` value generated so far (whitespace
    inside it kept, as generated). Keys may come in any order; other keys are skipped.
    """

    _START, _KEY_OR_END, _KEY, _COLON, _VALUE_START, _VALUE, _AFTER, _DONE = range(8)

    def __init__(self) -> None:
        self.name: str | None = None
        self.arguments = ""
        self.arguments_complete = False
        self.done = False
        self._state = self._START
        self._key_raw: list[str] = []
        self._key: str | None = None
        self._val: list[str] = []
        self._depth = 0
        self._in_str = False
        self._esc = False

    def feed(self, text: str) -> str:
        """Consume generated text; returns the new ``arguments`` text it contained."""
        before = len(self.arguments)
        for ch in text:
            self._step(ch)
        return self.arguments[before:]

    def _step(self, ch: str) -> None:
        st = self._state
        if st == self._START:
            if ch == "{":
                self._state = self._KEY_OR_END
        elif st == self._KEY_OR_END:
            if ch == '"':
                self._key_raw, self._esc, self._state = ['"'], False, self._KEY
            elif ch == "}":
                self._state, self.done = self._DONE, True
        elif st == self._KEY:
            self._key_raw.append(ch)
            if self._esc:
                self._esc = False
            elif ch == "\\":
                self._esc = True
            elif ch == '"':
                try:
                    self._key = str(json.loads("".join(self._key_raw)))
                except ValueError:
                    self._key = None
                self._state = self._COLON
        elif st == self._COLON:
            if ch == ":":
                self._state = self._VALUE_START
        elif st == self._VALUE_START:
            if not ch.isspace():
                self._val, self._depth, self._in_str, self._esc = [], 0, False, False
                self._state = self._VALUE
                self._value_char(ch)
        elif st == self._VALUE:
            self._value_char(ch)
        elif st == self._AFTER:
            self._after_char(ch)

    def _value_char(self, ch: str) -> None:
        ended, consumed = False, True
        if self._in_str:
            if self._esc:
                self._esc = False
            elif ch == "\\":
                self._esc = True
            elif ch == '"':
                self._in_str = False
                ended = self._depth == 0
        elif ch == '"':
            self._in_str = True
        elif ch in "{[":
            self._depth += 1
        elif ch in "}]":
            if self._depth == 0:  # a scalar value closed by the enclosing object
                ended, consumed = True, False
            else:
                self._depth -= 1
                ended = self._depth == 0
        elif self._depth == 0 and (ch == "," or ch.isspace()):
            ended, consumed = True, False
        if consumed:
            self._val.append(ch)
            if self._key == "arguments":
                self.arguments += ch
        if ended:
            self._end_value()
            if not consumed:
                self._after_char(ch)

    def _end_value(self) -> None:
        raw = "".join(self._val)
        if self._key == "name":
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
            if isinstance(value, str):
                self.name = value
        elif self._key == "arguments":
            self.arguments_complete = True
        self._state = self._AFTER

    def _after_char(self, ch: str) -> None:
        if ch == ",":
            self._state = self._KEY_OR_END
        elif ch == "}":
            self._state, self.done = self._DONE, True


class ForcedToolStream:
    """The ``delta.tool_calls`` entries of a forced call, from the streamed generated text.

    The first entry carries ``id``, ``type`` and ``function.name`` (with empty arguments); the
    following ones carry ``function.arguments`` fragments, as OpenAI streams them. Arguments
    generated before the name is known (a model that writes ``arguments`` first) are held back.
    """

    def __init__(self, forced: ForcedTool, call_id: str | None = None) -> None:
        self.forced = forced
        self.call_id = call_id or new_call_id()
        self.parser = ToolCallTextParser()
        self.announced = False
        self._pending = ""

    @property
    def name(self) -> str | None:
        """The function name, once known."""
        return self.parser.name or self.forced.name

    def feed(self, text: str) -> list[dict[str, Any]]:
        """Entries for newly generated text."""
        self._pending += self.parser.feed(text)
        return self._flush()

    def finish(self) -> list[dict[str, Any]]:
        """Entries still held back at the end of the generation."""
        return self._flush()

    def _flush(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        name = self.name
        if not self.announced and name:
            self.announced = True
            out.append(
                {
                    "index": 0,
                    "id": self.call_id,
                    "type": FUNCTION,
                    "function": {"name": name, "arguments": ""},
                }
            )
        if self.announced and self._pending:
            out.append({"index": 0, "function": {"arguments": self._pending}})
            self._pending = ""
        return out
