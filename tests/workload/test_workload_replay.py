"""Replay files: good lines in order, every bad line reported by number, never a crash."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sagellm_obs.workload as wl
from sagellm_obs.protocol import Request, validate

PROTOCOL = {
    "request_id": "r-1",
    "trace_id": "t-1",
    "prompt": "def fib(n):",
    "max_tokens": 8,
    "metadata": {"family": "fib"},
}
OPENAI_PROMPT = {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0.5, "at": 1.5}
OPENAI_CHAT = {
    "model": "tiny",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ],
    "top_p": 0.9,
    "stream": True,
    "session_id": "s-7",
}


def _lines() -> bytes:
    good = [json.dumps(o).encode() for o in (PROTOCOL, OPENAI_PROMPT, OPENAI_CHAT)]
    return b"\n".join(
        [
            good[0],  # 1
            b"",  # 2 blank
            b"this is not json",  # 3
            good[1],  # 4
            b"[1, 2, 3]",  # 5
            json.dumps({"prompt": "x", "max_tokens": 0}).encode(),  # 6
            b'{"prompt": "caf\xff"}',  # 7 invalid UTF-8
            b"   ",  # 8 blank
            good[2],  # 9
            b'{"prompt": "torn',  # 10, no newline after it
        ]
    )


def test_mixed_file(tmp_path: Path) -> None:
    path = tmp_path / "replay.jsonl"
    path.write_bytes(_lines())
    result = wl.load_replay(path)
    assert result.path == str(path)
    assert [b.line for b in result.bad_lines] == [3, 5, 6, 7, 10]
    by_line = {b.line: b for b in result.bad_lines}
    assert "not valid JSON" in by_line[3].message
    assert "array" in by_line[5].message
    assert by_line[6].field == "max_tokens"
    assert by_line[6].message.startswith("max_tokens:")
    assert "UTF-8" in by_line[7].message
    assert "truncated last line" in by_line[10].message
    assert str(by_line[6]).startswith("line 6: max_tokens")
    assert not result.ok

    items = result.items
    assert [i.request.request_id for i in items] == ["r-1", "replay-00004", "replay-00009"]
    assert all(i.kind == wl.REPLAY_KIND for i in items)
    first, prompt, chat = items
    assert first.request.trace_id == "t-1"
    assert first.request.max_tokens == 8
    assert first.family == "fib"
    assert first.request.metadata == {"family": "fib", "workload": "replay"}
    assert first.at is None
    assert prompt.request.trace_id == "replay-00004"
    assert prompt.request.prompt == "Once upon a time"
    assert prompt.request.temperature == 0.5
    assert prompt.at == 1.5
    assert chat.request.messages is not None
    assert [m.role for m in chat.request.messages] == ["system", "user"]
    assert chat.request.max_tokens == 128  # default_max_tokens
    assert chat.request.stream is True
    assert chat.request.top_p == 0.9
    assert chat.request.model == "tiny"
    assert chat.session_id == chat.family == "s-7"
    for item in items:
        assert validate(Request, item.request.model_dump(mode="json")) == item.request


def test_ids_are_stable(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(_lines())
    a = [i.request for i in wl.load_replay(path).items]
    b = [i.request for i in wl.load_replay(path).items]
    assert a == b


def test_errors_raise_names_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "replay.jsonl"
    path.write_bytes(_lines())
    with pytest.raises(ValueError, match=r"replay\.jsonl:3: not valid JSON") as info:
        wl.load_replay(path, errors="raise")
    assert isinstance(info.value, wl.ReplayError)
    assert info.value.line == 3
    assert str(info.value).startswith(f"{path}:3: ")
    bad_field = tmp_path / "field.jsonl"
    bad_field.write_text(json.dumps(OPENAI_PROMPT) + "\n" + json.dumps({"prompt": 3}) + "\n")
    with pytest.raises(wl.ReplayError, match=r"field\.jsonl:2: prompt:") as info:
        wl.load_replay(bad_field, errors="raise")
    assert info.value.field == "prompt"


def test_empty_and_blank_files(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    result = wl.load_replay(path)
    assert result.items == []
    assert result.bad_lines == []
    assert result.ok
    path.write_bytes(b"\n\n  \r\n")
    assert wl.load_replay(path, errors="raise").items == []


def test_other_bad_lines() -> None:
    data = b"\n".join(
        [
            b'{"max_tokens": 4}',  # 1 no prompt or messages
            b'{"prompt": "a", "request_id": "x"}',  # 2
            b'{"prompt": "b", "request_id": "x"}',  # 3 duplicate id
            b'{"prompt": "c", "at": -1}',  # 4
            b'{"prompt": "c", "at": "soon"}',  # 5
            b'{"messages": [{"role": "robot", "content": "hi"}]}',  # 6
            b'{"prompt": "d", "temperature": 5}',  # 7
            b'"just a string"',  # 8
            b'{"prompt": "e", "max_completion_tokens": 3}\r',  # 9 CRLF, good
            b"",
        ]
    )
    result = wl.parse_replay(data, source="mem")
    fields = {b.line: b.field for b in result.bad_lines}
    assert fields == {
        1: "prompt",
        3: "request_id",
        4: "at",
        5: "at",
        6: "messages.0.role",
        7: "temperature",
        8: "",
    }
    assert "line 2" in next(b.message for b in result.bad_lines if b.line == 3)
    assert [i.request.request_id for i in result.items] == ["x", "replay-00009"]
    assert result.items[1].request.max_tokens == 3


def test_options() -> None:
    data = b'{"prompt": "a"}\n{"prompt": "b", "metadata": {"workload": "prod"}}\n'
    result = wl.parse_replay(data, default_max_tokens=5, ignore_eos=True)
    assert [i.request.max_tokens for i in result.items] == [5, 5]
    assert [i.request.metadata for i in result.items] == [
        {"workload": "replay", "ignore_eos": True},
        {"workload": "prod", "ignore_eos": True},
    ]
    with pytest.raises(ValueError, match="errors"):
        wl.parse_replay(data, errors="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="default_max_tokens"):
        wl.parse_replay(data, default_max_tokens=0)


def test_bom_and_deep_nesting() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    data = b'\xef\xbb\xbf{"prompt": "a"}\n' + deep + b"\n"
    result = wl.parse_replay(data)
    assert len(result.items) == 1
    assert [b.line for b in result.bad_lines] == [2]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.jsonl"
        path.write_bytes(data)
        result = wl.load_replay(path)
    lines = data.split(b"\n")
    assert all(1 <= b.line <= len(lines) for b in result.bad_lines)
    assert len(result.items) + len(result.bad_lines) <= len(lines)


_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_KEYS = st.sampled_from(
    ["prompt", "messages", "max_tokens", "at", "request_id", "trace_id", "metadata", "stream"]
) | st.text(max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_KEYS, _JSON, max_size=5), max_size=5))
def test_arbitrary_json_objects_never_raise(objects: list[dict[str, object]]) -> None:
    data = b"\n".join(json.dumps(o).encode() for o in objects)
    result = wl.parse_replay(data)
    assert len(result.items) + len(result.bad_lines) == len(objects)


def test_lone_surrogate_escapes_are_bad_lines() -> None:
    data = b'{"prompt": "a\\ud800b"}\n{"messages": [{"role": "user", "content": "\\udfff"}]}\n'
    result = wl.parse_replay(data)
    assert result.items == []
    assert [(b.line, b.field) for b in result.bad_lines] == [
        (1, "prompt"),
        (2, "messages.0.content"),
    ]
    ok = wl.parse_replay(b'{"prompt": "\\ud83d\\ude00"}\n')  # a proper surrogate pair
    assert ok.items[0].request.prompt == "\U0001f600"
