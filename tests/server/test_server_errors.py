"""Malformed requests, the API key and the body limit against the real engine; it keeps serving."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from sagellm_obs.protocol import ErrorCode

if TYPE_CHECKING:
    from conftest import ServerHarness

pytestmark = pytest.mark.engine

SECRET = "zebra-secret-words"  # must never come back in an error message
CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
NATIVE = "/v1/sagellm/generate"
USER = [{"role": "user", "content": f"{SECRET} hello"}]
PROTOCOL_CODES = {c.value for c in ErrorCode}

# (id, path, body: dict/list -> JSON, bytes -> raw, extra headers, status, param)
CASES: list[tuple[str, str, Any, dict[str, str], int, str | None]] = [
    ("bad-json", CHAT, b'{"messages": [', {}, 400, None),
    ("empty-body", CHAT, b"", {}, 400, None),
    ("array-body", CHAT, [{"messages": USER}], {}, 400, None),
    ("missing-messages", CHAT, {"max_tokens": 4}, {}, 400, "messages"),
    ("empty-messages", CHAT, {"messages": []}, {}, 400, "messages"),
    ("content-int", CHAT, {"messages": [{"role": "user", "content": 5}]}, {}, 400,
     "messages.0.content"),
    ("image-part", CHAT, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}, {}, 400,
     "messages.0.content"),
    ("bad-role", CHAT, {"messages": [{"role": "wizard", "content": SECRET}]}, {}, 400,
     "messages.0.role"),
    ("max-tokens-0", CHAT, {"messages": USER, "max_tokens": 0}, {}, 400, "max_tokens"),
    ("max-tokens-neg", COMP, {"prompt": SECRET, "max_tokens": -1}, {}, 400, "max_tokens"),
    ("max-tokens-str", COMP, {"prompt": SECRET, "max_tokens": "x"}, {}, 400, "max_tokens"),
    # Past the context (1024): refused as vLLM's server does, never silently capped.
    ("max-tokens-past-context", COMP, {"prompt": SECRET, "max_tokens": 10**12}, {}, 400,
     "max_tokens"),
    ("chat-max-tokens-past-context", CHAT, {"messages": USER, "max_tokens": 1025}, {}, 400,
     "max_tokens"),
    ("stream-max-tokens-past-context", COMP, {"prompt": SECRET, "max_tokens": 5000,
                                              "stream": True}, {}, 400, "max_tokens"),
    ("native-max-tokens-past-context", NATIVE, {"request_id": "n4", "trace_id": "n4",
                                                "prompt": SECRET, "max_tokens": 10**12}, {}, 400,
     "max_tokens"),
    ("temperature-5", CHAT, {"messages": USER, "temperature": 5}, {}, 400, "temperature"),
    ("top-p-0", CHAT, {"messages": USER, "top_p": 0}, {}, 400, "top_p"),
    ("n-2", CHAT, {"messages": USER, "n": 2}, {}, 400, "n"),
    ("missing-prompt", COMP, {"max_tokens": 3}, {}, 400, "prompt"),
    ("token-prompt", COMP, {"prompt": [1, 2, 3]}, {}, 400, "prompt"),
    ("two-prompts", COMP, {"prompt": ["a", "b"]}, {}, 400, "prompt"),
    ("stream-not-bool", COMP, {"prompt": "a", "stream": "maybe"}, {}, 400, "stream"),
    ("unknown-model", CHAT, {"model": "gpt-17", "messages": USER}, {}, 404, "model"),
    ("prompt-too-long", COMP, {"prompt": f"{SECRET} " * 3000, "max_tokens": 4}, {}, 400,
     "prompt"),
    ("chat-too-long", CHAT, {"messages": [{"role": "user", "content": f"{SECRET} " * 3000}]},
     {}, 400, "messages"),
    ("stream-too-long", COMP, {"prompt": f"{SECRET} " * 3000, "stream": True}, {}, 400,
     "prompt"),
    ("body-too-large", COMP, {"prompt": SECRET * 80_000}, {}, 413, None),
    ("wrong-content-type", CHAT, b'{"messages": []}', {"Content-Type": "text/plain"}, 415,
     None),
    ("form-content-type", COMP, b"prompt=x", {"Content-Type": "application/x-www-form-urlencoded"},
     415, None),
    ("native-missing-fields", NATIVE, {"prompt": SECRET}, {}, 400, "request_id"),
    ("native-bad-max-tokens", NATIVE, {"request_id": "n1", "trace_id": "n1", "prompt": SECRET,
                                       "max_tokens": 0}, {}, 400, "max_tokens"),
    ("native-too-long", NATIVE, {"request_id": "n3", "trace_id": "n3",
                                 "prompt": f"{SECRET} " * 3000, "max_tokens": 2}, {}, 400,
     "prompt"),
    ("native-no-prompt", NATIVE, {"request_id": "n2", "trace_id": "n2", "max_tokens": 2}, {},
     400, "prompt"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "param"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_malformed_request(
    harness: ServerHarness,
    path: str,
    body: Any,
    headers: dict[str, str],
    status: int,
    param: str | None,
) -> None:
    with harness.client() as c:
        if isinstance(body, bytes):
            hdrs = {"Content-Type": "application/json", **headers}
            resp = c.post(path, content=body, headers=hdrs)
        else:
            resp = c.post(path, content=json.dumps(body), headers=headers)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"
    assert err["code"] in PROTOCOL_CODES
    assert err["code"] == ErrorCode.INVALID_ARGUMENT.value
    assert err["param"] == param
    assert isinstance(err["message"], str) and err["message"]
    assert SECRET not in resp.text
    assert len(resp.headers["x-trace-id"]) == 32


def test_engine_serves_after_bad_requests(harness: ServerHarness) -> None:
    with harness.client() as c:
        resp = c.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
    assert resp.status_code == 200
    assert resp.json()["usage"]["completion_tokens"] >= 1
    assert harness.unfinished_requests() == 0


@pytest.mark.parametrize("path", ["/v1/models", "/metrics"])
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_api_key_required(harness: ServerHarness, path: str, key: str | None) -> None:
    with harness.client(key=key) as c:
        resp = c.get(path)
    assert resp.status_code == 401
    err = resp.json()["error"]
    assert err["code"] == "invalid_api_key"
    assert err["type"] == "invalid_request_error"


def test_api_key_checked_before_the_body(harness: ServerHarness) -> None:
    with harness.client(key=None) as c:
        resp = c.post(COMP, json={"prompt": "x", "max_tokens": 2})
        basic = c.get("/v1/models", headers={"Authorization": f"Basic {harness.api_key}"})
    assert resp.status_code == 401
    assert basic.status_code == 401


def test_health_is_open(harness: ServerHarness) -> None:
    with harness.client(key=None) as c:
        resp = c.get("/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


def test_unknown_route_and_method(harness: ServerHarness) -> None:
    with harness.client() as c:
        missing = c.get("/v1/nothing")
        wrong = c.get(CHAT)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == ErrorCode.INVALID_ARGUMENT.value
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "invalid_request_error"


def test_chunked_body_over_limit(harness: ServerHarness) -> None:
    def chunks() -> Any:
        for _ in range(20):
            yield b" " * 100_000  # no Content-Length: counted while read

    with harness.client() as c:
        resp = c.post(COMP, content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == ErrorCode.INVALID_ARGUMENT.value
