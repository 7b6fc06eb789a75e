"""Fuzzing the server's request parsing: random and adversarial bodies and headers, real server.

Every answer must be a 2xx (a stream read to its end without an error frame) or a 4xx with an
OpenAI-style error body whose ``code`` is a protocol ``ErrorCode`` and which never echoes the
prompt; never a 5xx. Afterwards the server still answers ``/health`` and a normal request, and its
log holds no traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hardening_fuzz import FUZZ, HUGE_INTS, JSON_VALUES, TIMEOUT, WEIRD_STRINGS, examples, nested
from hardening_procs import ServerProcess
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sagellm_obs.protocol import ErrorCode

pytestmark = [pytest.mark.engine, pytest.mark.timeout(2 * TIMEOUT)]

MARK = "PROMPT-MARK-5a1e"  # in every prompt; no error message may echo it
COMP, CHAT, NATIVE = "/v1/completions", "/v1/chat/completions", "/v1/sagellm/generate"
CODES = {c.value for c in ErrorCode}
EXAMPLES = 100  # per endpoint

# --- bodies -------------------------------------------------------------------------------------

_TEXT = st.builds(lambda a, b: f"{a}{MARK}{b}", st.text(max_size=8), st.text(max_size=8))
_PROMPT = _TEXT | st.just(MARK + "\ud800") | st.just(MARK + "\x00\u202e") | st.just("")
# Small valid lengths (a tiny model is fast, but every token costs), and the invalid kinds.
_MAX_TOKENS = st.sampled_from([1, 2, 4, 8, 0, -1, 2**63, 2**64, 10**30, 1.5, "4", True, None])
_FLOATS = st.sampled_from([0.0, 0.5, 1.0, 2.0, 2.5, -0.1, 1e-320, 1e308]) | st.floats()
_INTS = st.sampled_from([-1, 0, 1, 50, 2**31, 2**63, -(2**63) - 1]) | HUGE_INTS
_ODD = JSON_VALUES | WEIRD_STRINGS
_STOP = st.none() | _TEXT | st.lists(_TEXT | st.just("") | _ODD, max_size=3) | _ODD


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


_COMMON: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from([None, "", "tiny-llama", "gpt-17"]) | _ODD,
    "temperature": _FLOATS | _ODD,
    "top_p": _FLOATS,
    "top_k": _INTS,
    "n": st.sampled_from([1, 2, 0]),
    "stop": _STOP,
    "seed": _INTS,
    "presence_penalty": _FLOATS,
    "frequency_penalty": _FLOATS,
    "stream": st.booleans() | _ODD,
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | _ODD,
    "user": _TEXT | _ODD,
    "trace_id": _TEXT | _ODD,
    "ignore_eos": st.booleans(),
    "logprobs": _ODD,
}


def _with_extra(body: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    extra = st.dictionaries(st.text(max_size=6), _ODD, max_size=2)
    return st.builds(lambda b, e: {**e, **b}, body, extra)


_COMPLETION = _with_extra(
    st.builds(
        lambda req, opt: {**req, **opt},
        st.fixed_dictionaries(
            {"prompt": _PROMPT | st.lists(_PROMPT, max_size=2) | _ODD, "max_tokens": _MAX_TOKENS}
        ),
        _optional(**_COMMON),
    )
)

_CONTENT = (
    _TEXT
    | st.none()
    | st.lists(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": _TEXT}),
        max_size=2,
    )
    | _ODD
)
_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "developer", "tool", "wizard"])},
    optional={"content": _CONTENT, "name": _TEXT | _ODD, "tool_calls": _ODD},
)
_TOOL = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["function", "retrieval"]),
        "function": st.fixed_dictionaries(
            {"name": st.sampled_from(["get_weather", "", "f"])},
            optional={"parameters": st.just({"type": "object"}) | _ODD},
        ),
    }
)
_CHAT = _with_extra(
    st.builds(
        lambda req, opt: {**req, **opt},
        st.fixed_dictionaries(
            {
                "messages": st.lists(_MESSAGE, min_size=1, max_size=3) | _ODD,
                # Never absent: chat's default is the whole context (1024 tokens, seconds each).
                "max_tokens": _MAX_TOKENS.filter(lambda v: v is not None),
            }
        ),
        _optional(
            **_COMMON,
            max_completion_tokens=st.sampled_from([2, 0, -3]),
            tools=st.lists(_TOOL, max_size=2) | _ODD,
            tool_choice=st.sampled_from(["auto", "none", "required", "sideways"])
            | st.just({"type": "function", "function": {"name": "get_weather"}})
            | _ODD,
        ),
    )
)

_SAMPLING = st.fixed_dictionaries(
    {},
    optional={
        "strategy": st.sampled_from(["greedy", "sampling", "beam_search", "contrastive", "x"]),
        "temperature": _FLOATS,
        "top_p": _FLOATS,
        "top_k": _INTS,
        "seed": _INTS,
        "stop_sequences": _STOP,
        "repetition_penalty": _FLOATS,
        "beam_size": _INTS,
        "skip_special_tokens": _ODD,
    },
)
_TRACEPARENT = st.sampled_from(
    ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
     "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-ff",
     "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "garbage", ""]
) | _ODD  # fmt: skip
_NATIVE = _with_extra(
    st.builds(
        lambda req, opt: {**req, **opt},
        st.fixed_dictionaries(
            {
                "request_id": _TEXT | st.just("") | _ODD,
                "trace_id": _TEXT | st.just("") | _ODD,
                "max_tokens": _MAX_TOKENS.filter(lambda v: v is not None),
            }
        ),
        _optional(
            prompt=_PROMPT | _ODD,
            messages=st.lists(_MESSAGE, max_size=2) | _ODD,
            stream=st.booleans() | _ODD,
            model=st.sampled_from(["", "tiny-llama", "gpt-17"]),
            sampling_params=_SAMPLING | _ODD,
            temperature=_FLOATS,
            top_p=_FLOATS,
            kv_budget_tokens=_INTS,
            phase=st.sampled_from(["prefill", "decode", "both"]),
            rank=_INTS,
            world_size=_INTS,
            metadata=st.fixed_dictionaries(
                {},
                optional={
                    "traceparent": _TRACEPARENT,
                    "tracestate": st.text(max_size=20) | _ODD,
                    "ignore_eos": _ODD,
                    "structured_output": st.just({"json": {"type": "object"}})
                    | st.just({"regex": "[a-z]{0,3}"})
                    | _ODD,
                },
            )
            | _ODD,
        ),
    )
)
BODIES = {COMP: _COMPLETION, CHAT: _CHAT, NATIVE: _NATIVE}

# --- requests ---------------------------------------------------------------------------------

# Header values as HTTP allows them (printable ASCII, no surrounding spaces).
_GOOD_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(str.strip)
_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-8",
                "application/vnd.x+json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "",
                "APPLICATION/JSON",
            ]
        ),
        "traceparent": st.just(_GOOD_TRACEPARENT) | _ASCII,
        "tracestate": _ASCII,
        "x-request-id": _ASCII,
        "x-sagellm-metrics": st.sampled_from(["1", "true", "no", ""]),
    },
)


def _encode(body: Any, ascii_only: bool) -> bytes:
    return json.dumps(body, ensure_ascii=ascii_only, allow_nan=True).encode(
        "utf-8", "surrogatepass"
    )


@st.composite
def _request(draw: st.DrawFn, path: str) -> tuple[bytes, dict[str, str]]:
    kind = draw(st.sampled_from(["body", "body", "body", "body", "json", "raw", "cut"]))
    if kind == "body":
        content = _encode(draw(BODIES[path]), draw(st.booleans()))
    elif kind == "json":
        content = _encode(draw(JSON_VALUES), draw(st.booleans()))
    elif kind == "raw":
        content = draw(st.binary(max_size=120))
    else:
        whole = _encode(draw(BODIES[path]), True)
        content = whole[: draw(st.integers(0, len(whole)))]
    return content, draw(_HEADERS)


# --- checking one answer ------------------------------------------------------------------------


def _check_error(resp: httpx.Response, body: bytes) -> None:
    assert resp.headers["content-type"].startswith("application/json"), resp.text[:300]
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["type"] == "invalid_request_error", err
    assert err["code"] in CODES, err
    assert err["param"] is None or isinstance(err["param"], str), err
    assert isinstance(err["message"], str) and err["message"], err
    assert MARK not in resp.text, f"the prompt was echoed: {resp.text[:300]}"


def _check_stream(resp: httpx.Response, path: str) -> None:
    frames = [ln[len("data: ") :] for ln in resp.iter_lines() if ln.startswith("data: ")]
    assert frames, "an empty stream"
    if path != NATIVE:
        assert frames[-1] == "[DONE]", frames[-3:]
        frames = frames[:-1]
    events = [json.loads(f) for f in frames]
    assert all("error" not in e or e["error"] is None for e in events), events[-1]
    if path == NATIVE:
        assert events[-1]["event"] == "end" and events[-1]["finish_reason"] != "error", events[-1]


def _post(client: httpx.Client, path: str, content: bytes, headers: dict[str, str]) -> None:
    with client.stream("POST", path, content=content, headers=headers) as resp:
        status = resp.status_code
        assert status < 500, f"{status} for {content[:300]!r} {headers}: {resp.read()[:500]!r}"
        assert len(resp.headers.get("x-trace-id", "")) == 32
        if status >= 400:
            resp.read()
            _check_error(resp, content)
        elif resp.headers["content-type"].startswith("text/event-stream"):
            _check_stream(resp, path)
        else:
            resp.read()
            out = resp.json()
            if path == NATIVE:
                assert out["finish_reason"] != "error", out


@pytest.fixture
def client(shared_server: ServerProcess) -> Iterator[httpx.Client]:
    with shared_server.client(timeout=120) as c:
        yield c
    # The server survived: it answers /health and a normal request, and logged no traceback.
    assert httpx.get(f"{shared_server.url}/health", timeout=30).status_code == 200
    with shared_server.client() as c:
        ok = c.post(COMP, json={"prompt": "def f(x):", "max_tokens": 2})
    assert ok.status_code == 200, ok.text
    assert "Traceback" not in shared_server.log_text(), shared_server.log_text()[-6000:]


def _fixed(path: str, bodies: list[Any]) -> Any:
    """``@example`` decorators for hand-written adversarial bodies."""

    def wrap(fn: Any) -> Any:
        for body in bodies:
            content = body if isinstance(body, bytes) else _encode(body, False)
            fn = example(req=(content, {}))(fn)
        return fn

    return wrap


_USER = [{"role": "user", "content": MARK}]
_ALL_F = "00-" + "f" * 32 + "-" + "f" * 16 + "-ff"
_N = {"request_id": "fixed", "trace_id": "fixed", "max_tokens": 2}


@_fixed(
    COMP,
    [
        {"prompt": MARK, "max_tokens": 2, "stop": [""]},
        {"prompt": MARK, "max_tokens": 2, "seed": 2**64},
        {"prompt": MARK, "max_tokens": 2, "top_k": 2**64},
        {"prompt": MARK + "\ud800", "max_tokens": 2},
        {"prompt": MARK, "max_tokens": 2**64},
        {"prompt": MARK, "max_tokens": 2, "stream": True, "stop": [""]},
        {"prompt": nested(900, MARK), "max_tokens": 2},
        b'{"prompt": "' + b"[" * 5000 + b'"}',
        b"[" * 100_000,
    ],
)
@settings(FUZZ, max_examples=examples(EXAMPLES))
@given(req=_request(COMP))
def test_completions_parsing(client: httpx.Client, req: tuple[bytes, dict[str, str]]) -> None:
    _post(client, COMP, *req)


@_fixed(
    CHAT,
    [
        {"messages": [{"role": "user", "content": MARK + "\ud800"}], "max_tokens": 2},
        {"messages": _USER, "max_tokens": 2, "stop": ["", MARK]},
        {"messages": _USER, "max_tokens": 2, "seed": -(2**63) - 1, "stream": True},
        {"messages": _USER, "max_tokens": 2, "tool_choice": "required", "tools": []},
        {"messages": [{"role": "user", "content": nested(900, MARK)}], "max_tokens": 2},
    ],
)
@settings(FUZZ, max_examples=examples(EXAMPLES))
@given(req=_request(CHAT))
def test_chat_completions_parsing(client: httpx.Client, req: tuple[bytes, dict[str, str]]) -> None:
    _post(client, CHAT, *req)


@_fixed(
    NATIVE,
    [
        {**_N, "prompt": MARK, "sampling_params": {"seed": 2**64}},
        {**_N, "prompt": MARK, "sampling_params": {"stop_sequences": [""]}},
        {**_N, "prompt": MARK, "sampling_params": {"top_k": 2**63}},
        {**_N, "prompt": MARK + "\ud800", "stream": True},
        {**_N, "prompt": MARK, "sampling_params": {"strategy": nested(900, "x")}},
        {**_N, "prompt": MARK, "metadata": {"structured_output": {"json": 5}}},
        {**_N, "prompt": MARK, "metadata": {"structured_output": {"regex": "("}}},
        {**_N, "prompt": MARK, "metadata": {"traceparent": _ALL_F, "tracestate": "a=\x00"}},
    ],
)  # fmt: skip
@settings(FUZZ, max_examples=examples(EXAMPLES))
@given(req=_request(NATIVE))
def test_native_generate_parsing(client: httpx.Client, req: tuple[bytes, dict[str, str]]) -> None:
    _post(client, NATIVE, *req)
