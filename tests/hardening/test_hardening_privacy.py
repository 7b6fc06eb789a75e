"""Privacy sweep: a marker in every prompt reaches no exported byte unless content capture is on.

The real server (its own process) exports to its run folder and over OTLP to a real collector
(rotel), which forwards to a receiver here that keeps the raw bodies. Prompts carrying the marker
go through every route: completions, chat, both streamed, a forced tool call, the native
endpoint (plain and streamed), and requests the server or the engine rejects. Then the marker
is looked for in the run folder (every file, its columnar Parquet copies decoded), what
the collector forwarded, ``/metrics``, ``summary.json`` and ``report.html``, the response bodies
and the server's log. With ``capture_content`` on, the same sweep must find it in the spans
(in the run folder, its columnar copies and over OTLP), which shows the sweep can fail; metrics and
logs must stay clean either way.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl
import pytest
from hardening_procs import (
    ROTEL_HOW,
    RawReceived,
    ServerProcess,
    find_rotel,
    metric_totals,
    need,
    raw_receiver,
    rotel_agent,
    start_servers,
    wait_until,
)
from openai import OpenAI
from rich.console import Console

from sagellm_obs import semconv as sc
from sagellm_obs.cli_run import summarize_run
from sagellm_obs.frames import load

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]

MARKER = "zq-privacy-marker-4f1b9c7e"
"""In every prompt; a string no tokenizer output, id or metric name could produce by chance."""

LONG = f"{MARKER} " * 3000  # longer than the context: the engine rejects it
SERVER_REJECTED = "privacy-6"  # its body is invalid: the server rejects it before the engine


def _forms(marker: str) -> list[bytes]:
    """The marker as bytes in the encodings an export could use: UTF-8, UTF-16 and base64."""
    raw = marker.encode()
    forms = [raw, marker.encode("utf-16-le"), marker.encode("utf-16-be")]
    for shift in range(3):  # base64 of any text containing the marker holds one of these
        chunk = base64.b64encode(b"\0" * shift + raw)[4:-4]
        forms.append(chunk)
    return forms


FORMS = _forms(MARKER)


def _found(data: bytes) -> bool:
    return any(form in data for form in FORMS)


def _parquet_text(path: Path) -> bytes:
    """A Parquet file's values as NDJSON (the file's own bytes are compressed)."""
    df = pl.read_parquet(path)
    for name, dtype in df.schema.items():
        if dtype == pl.Binary:
            df = df.with_columns(pl.col(name).cast(pl.String, strict=False))
    buf = io.BytesIO()
    df.write_ndjson(buf)
    return buf.getvalue()


def _files(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield str(path.relative_to(root)), path.read_bytes()
            if path.suffix == ".parquet":
                yield f"{path.relative_to(root)} (decoded)", _parquet_text(path)


def _send_everything(url: str) -> tuple[list[str], list[bytes]]:
    """Every kind of request, each prompt carrying the marker; returns request ids and bodies."""
    ids: list[str] = []
    bodies: list[bytes] = []
    user = [
        {"role": "system", "content": f"You keep secrets like {MARKER}."},
        {"role": "user", "content": f"Repeat {MARKER} back to me."},
    ]
    requests: list[tuple[str, dict[str, object], int]] = [
        ("/v1/completions", {"prompt": f"Say {MARKER}", "max_tokens": 4}, 200),
        ("/v1/completions", {"prompt": f"Say {MARKER}", "max_tokens": 4, "stream": True,
                             "stream_options": {"include_usage": True}}, 200),
        ("/v1/chat/completions", {"messages": user, "max_tokens": 4}, 200),
        ("/v1/chat/completions", {"messages": user, "max_tokens": 4, "stream": True}, 200),
        ("/v1/chat/completions", {"messages": user, "max_tokens": 8, "tool_choice": "required",
                                  "tools": [{"type": "function", "function": {
                                      "name": "lookup", "parameters": {"type": "object"}}}]}, 200),
        ("/v1/completions", {"prompt": LONG, "max_tokens": 4}, 400),  # the engine rejects it
        ("/v1/chat/completions", {"messages": user, "temperature": 5}, 400),  # the server does
        ("/v1/completions", {"prompt": LONG, "max_tokens": 4, "stream": True}, 400),
        # llama-stack's routes
        ("/v1/inference/completion", {"model_id": "tiny-llama", "content": f"Say {MARKER}",
                                      "sampling_params": {"max_tokens": 4}}, 200),
        ("/v1/inference/chat-completion", {"model_id": "tiny-llama", "messages": user,
                                           "sampling_params": {"max_tokens": 4},
                                           "stream": True}, 200),
        ("/v1/inference/chat-completion", {"model_id": "tiny-llama", "messages": user,
                                           "sampling_params": {"max_tokens": 8},
                                           "tool_choice": "required",
                                           "tools": [{"tool_name": "lookup"}]}, 200),
    ]  # fmt: skip
    with httpx.Client(base_url=url, timeout=60) as http:
        for i, (path, body, status) in enumerate(requests):
            rid = f"privacy-{i}"
            resp = http.post(
                path, json=body, headers={"X-Request-Id": rid, "X-Sagellm-Metrics": "1"}
            )
            assert resp.status_code == status, resp.text[:500]
            ids.append(rid)
            bodies.append(resp.content)
        for i, stream in enumerate((False, True)):
            rid = f"privacy-native-{i}"
            native = {"request_id": rid, "trace_id": f"privacy-trace-{i}", "max_tokens": 4,
                      "prompt": f"Say {MARKER}", "stream": stream}  # fmt: skip
            resp = http.post("/v1/sagellm/generate", json=native)
            assert resp.status_code == 200, resp.text[:500]
            ids.append(rid)
            bodies.append(resp.content)
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    out = client.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": f"hello {MARKER}"}],
        max_tokens=4,
        extra_headers={"X-Request-Id": "privacy-openai"},
    )
    ids.append(out.id)
    bodies.append(out.model_dump_json().encode())
    return ids, bodies


@dataclass
class Exporting:
    """A server exporting through its own rotel to a raw receiver here."""

    server: ServerProcess
    received: RawReceived


@pytest.fixture(scope="module")
def exporting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[bool, Exporting]]:
    """Both servers, without and with content capture, started at once (each test uses one)."""
    binary = find_rotel()
    need(binary is not None, "rotel-agent (an OTLP collector)", ROTEL_HOW)
    assert binary is not None
    captures = (False, True)
    with ExitStack() as stack:
        works, envs, received = [], [], []
        for capture in captures:
            work = tmp_path_factory.mktemp("capture" if capture else "default")
            receiver_url, got = stack.enter_context(raw_receiver())
            rotel = stack.enter_context(rotel_agent(binary, receiver_url, work / "rotel"))
            env = {
                "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.http_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            }
            if capture:
                env["SAGELLM_OBS_CAPTURE_CONTENT"] = "true"
            works.append(work / "server")
            envs.append(env)
            received.append(got)
        servers = start_servers(works, envs=envs)
        for server in servers:
            stack.callback(server.stop)  # before its rotel and receiver (a test stops it first)
        yield {
            capture: Exporting(server, got)
            for capture, server, got in zip(captures, servers, received, strict=True)
        }


@pytest.mark.parametrize("capture", [False, True], ids=["default", "capture_content"])
def test_prompt_marker_reaches_no_exported_byte(
    exporting: dict[bool, Exporting], capture: bool
) -> None:
    server, received = exporting[capture].server, exporting[capture].received
    try:
        ids, bodies = _send_everything(server.url)
        ids.remove(SERVER_REJECTED)  # it never reached the engine: no engine span
        wait_until(
            lambda: (
                metric_totals(server.metrics_text()).get(sc.M_REQUESTS.prometheus_name, 0)
                >= len(ids)
            ),
            30,
            "the request counter",
        )
        metrics_text = server.metrics_text()
    finally:
        code = server.stop()  # graceful: flushes the store and the OTLP exporters
    assert code == 0, server.log_text()[-3000:]

    def forwarded() -> bool:
        seen = {
            attrs[sc.SAGELLM_REQUEST_ID].string_value
            for attrs in received.span_attributes()
            if sc.SAGELLM_REQUEST_ID in attrs
        }
        return set(ids) <= seen

    wait_until(forwarded, 30, "rotel to forward every request's span")
    assert received.paths().get("/v1/metrics"), "no metrics came through the collector"
    otlp = received.all_bytes()

    run_dir = server.run_dir
    frames = load(run_dir)  # from the columnar copies the server's store wrote
    assert set(ids) <= set(frames.requests["request_id"].to_list())
    console_out = io.StringIO()
    summarize_run(run_dir, Console(file=console_out, width=120))
    assert (run_dir / "report.html").is_file() and (run_dir / "summary.json").is_file()
    assert list((run_dir / "columnar").glob("traces-*.spans.parquet"))

    exported: dict[str, bytes] = dict(_files(run_dir))
    exported["OTLP received through rotel"] = otlp
    exported["/metrics"] = metrics_text.encode()
    exported["server log"] = server.log.read_bytes()
    exported["summary printed"] = console_out.getvalue().encode()
    leaks = sorted(name for name, data in exported.items() if _found(data))
    # Responses: generated text only, never the prompt (and no error message echoes it).
    assert not [b for b in bodies if _found(b)], "a response echoed the prompt"
    if not capture:
        assert not leaks, f"the prompt marker leaked into: {leaks}"
        return
    # Opt-in: the prompts are on the spans, in the store, its columnar copies and over OTLP ...
    assert "OTLP received through rotel" in leaks
    assert any(name.startswith("traces-") for name in leaks), leaks
    assert any(name.endswith(".spans.parquet (decoded)") for name in leaks), leaks
    # ... and still never in metrics or logs.
    assert not {"/metrics", "server log"} & set(leaks), leaks
    messages = frames.spans.filter(pl.col("request_id") == "privacy-0")["attributes"].to_list()
    inputs = [kv["value"] for kv in messages[0] if kv["key"] == sc.GEN_AI_INPUT_MESSAGES]
    assert inputs and MARKER in json.loads(inputs[0])[0]["parts"][0]["content"]
