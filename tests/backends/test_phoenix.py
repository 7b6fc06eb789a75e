"""Our engine's spans in Arize Phoenix: every request arrives, and Phoenix shows it as an LLM span.

Phoenix (20.26.1) takes a span's kind from the OpenInference attribute ``openinference.span.kind``.
For a span without OpenInference attributes but with ``gen_ai.*`` ones, Phoenix derives them at
ingestion (``phoenix/trace/gen_ai/conversion.py``): ``gen_ai.operation.name`` ``text_completion``
or ``chat`` -> kind LLM; ``gen_ai.request.model`` -> ``llm.model_name``;
``gen_ai.usage.input_tokens``/``output_tokens``/``cache_read.input_tokens`` ->
``llm.token_count.prompt``/``completion``/``prompt_details.cache_read`` (and ``total``, their sum);
``gen_ai.input.messages`` -> ``llm.input_messages.*``. So our request spans need no OpenInference
attributes of their own, and these tests hold Phoenix to that.

Real components only: vLLM with the tiny offline model, the SDK's OTLP exporters configured from
the ``OTEL_EXPORTER_OTLP_TRACES_*`` variables as docs/phoenix.md says, a Phoenix server from its
own virtualenv (conftest.py), and Phoenix's REST API to read the spans back.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from phoenix_server import Phoenix

import sagellm_obs as so
from sagellm_obs import semconv as sc
from sagellm_obs.protocol import TRACEPARENT_KEY, Request, Response, StreamEventEnd

pytestmark = [pytest.mark.engine, pytest.mark.slow]

# What Phoenix shows: OpenInference names, which Phoenix derives from our gen_ai.* attributes. We
# do not emit them, so they are named here rather than in semconv.py.
OI_KIND_LLM = "LLM"
OI_MODEL_NAME = "llm.model_name"
OI_SYSTEM = "llm.system"
OI_TOKENS_PROMPT = "llm.token_count.prompt"
OI_TOKENS_COMPLETION = "llm.token_count.completion"
OI_TOKENS_TOTAL = "llm.token_count.total"
OI_TOKENS_CACHE_READ = "llm.token_count.prompt_details.cache_read"
OI_INPUT_MESSAGES = "llm.input_messages"
OI_OUTPUT_MESSAGES = "llm.output_messages"
OI_PROJECT_NAME = "openinference.project.name"  # a resource attribute: the Phoenix project
# Attribute prefixes that carry prompt or completion text, in Phoenix's model or in ours.
CONTENT_PREFIXES = (
    "input.",
    OI_INPUT_MESSAGES,
    OI_OUTPUT_MESSAGES,
    "llm.prompts",
    "llm.prompt_template",
    sc.GEN_AI_INPUT_MESSAGES,
    sc.GEN_AI_OUTPUT_MESSAGES,
    "gen_ai.system_instructions",
)

PROJECT_HTTP = "sagellm-obs-http"
PROJECT_GRPC = "sagellm-obs-grpc"
MAX_TOKENS = 4
# The caller's span of the request sent with a W3C traceparent.
CALLER_TRACE_ID = "5ca1ab1e0000000000000000c0ffee01"
CALLER_SPAN_ID = "00f067aa0ba902b7"


def _hex_span(span: ReadableSpan) -> str:
    return format(span.context.span_id, "016x")


def _hex_trace(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x")


@dataclass
class Sent:
    """One request we ran, what came back, and the spans our SDK exported for it."""

    request: Request
    project: str
    prompt_tokens: int
    output_tokens: int
    text: str
    spans: list[ReadableSpan] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        return self.request.prompt or "\n".join(m.content for m in self.request.messages or [])

    @property
    def root(self) -> ReadableSpan:
        (span,) = [s for s in self.spans if s.kind == SpanKind.SERVER]
        return span

    @property
    def phases(self) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name in sc.PHASE_SPANS]


@dataclass
class Run:
    model: str
    sent: dict[str, Sent]
    stored: dict[str, dict[str, dict[str, Any]]]  # project -> span id -> span, from Phoenix
    timings: dict[str, float]

    def in_phoenix(self, sent: Sent) -> list[dict[str, Any]]:
        """Phoenix's spans of ``sent``'s trace."""
        trace_id = _hex_trace(sent.root)
        return [
            s for s in self.stored[sent.project].values() if s["context"]["trace_id"] == trace_id
        ]

    def stored_span(self, sent: Sent, span: ReadableSpan) -> dict[str, Any]:
        return self.stored[sent.project][_hex_span(span)]


def _request(rid: str, prompt: str = "", **fields: Any) -> Request:
    # A distinct prompt per request: no prefix-cache reuse, and a text to look for in Phoenix.
    return Request(
        request_id=rid, trace_id=f"phoenix-{rid}", prompt=prompt, max_tokens=MAX_TOKENS, **fields
    )


def _sent(req: Request, project: str, out: Response | StreamEventEnd) -> Sent:
    text = out.output_text if isinstance(out, Response) else out.content
    return Sent(req, project, out.prompt_tokens or 0, len(out.output_tokens), text)


def _configure(
    tmp: Path, mp: pytest.MonkeyPatch, project: str, **env: str
) -> tuple[so.Telemetry, InMemorySpanExporter]:
    """configure() from the environment, as docs/phoenix.md says; a copy of the spans in memory."""
    for key, value in env.items():
        mp.setenv(key, value)
    mp.setenv("OTEL_RESOURCE_ATTRIBUTES", f"{OI_PROJECT_NAME}={project}")
    mem = InMemorySpanExporter()
    tel = so.configure(run_dir=tmp, advanced=so.AdvancedOptions(span_exporters=[mem]))
    assert tel.otlp, "OTLP export should be on, from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    return tel, mem


@pytest.fixture(scope="module")
def run(phoenix: Phoenix, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Four requests over OTLP/HTTP (content off), then one over OTLP/gRPC (content on)."""
    tmp = tmp_path_factory.mktemp("phoenix-run")
    timings = {
        "phoenix_install": phoenix.venv.install_seconds,
        "phoenix_start": phoenix.start_seconds,
    }
    sent: dict[str, Sent] = {}
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(("OTEL_", "SAGELLM_OBS_"))]:
            mp.delenv(key)
        mp.delenv("SAGELLM_ENGINE_ID", raising=False)
        # vLLM's engine-core process reads the same variables and exports its start-up spans
        # too: name the protocol for it (its default is grpc).
        tel_http, mem_http = _configure(
            tmp / "http",
            mp,
            PROJECT_HTTP,
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=phoenix.otlp_http_traces,
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
        )
        engine = None
        try:
            started = time.monotonic()
            # No telemetry argument: the engine follows configure() calls, as in a notebook.
            engine = so.Engine("tiny", in_process=True, kv_cache_memory_bytes=64 * 2**20)
            timings["engine_start"] = time.monotonic() - started
            model = engine.model_name

            started = time.monotonic()
            caller = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"
            batch = [
                _request("http-completion", "Phoenix privacy check one: def fibonacci(n):"),
                _request(
                    "http-chat",
                    messages=[{"role": "user", "content": "Phoenix privacy check two: hello"}],
                ),
                _request(
                    "http-traceparent",
                    "Phoenix privacy check three: class Stack:",
                    metadata={TRACEPARENT_KEY: caller},
                ),
            ]
            for req, resp in zip(batch, engine.generate_batch(batch), strict=True):
                sent[req.request_id] = _sent(req, PROJECT_HTTP, resp)
            req = _request("http-stream", "Phoenix privacy check four: import os", stream=True)
            (end,) = [e for e in engine.stream(req) if isinstance(e, StreamEventEnd)]
            sent[req.request_id] = _sent(req, PROJECT_HTTP, end)
            assert tel_http.flush()

            # Re-configure for gRPC, with content capture: the running engine follows.
            tel_grpc, mem_grpc = _configure(
                tmp / "grpc",
                mp,
                PROJECT_GRPC,
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=phoenix.otlp_grpc,
                OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grpc",
                SAGELLM_OBS_CAPTURE_CONTENT="true",
            )
            assert tel_grpc.capture_content
            req = _request("grpc-captured", "Phoenix capture check: def main():")
            sent[req.request_id] = _sent(req, PROJECT_GRPC, engine.generate(req))
            assert tel_grpc.flush()
            timings["requests"] = time.monotonic() - started
        finally:
            if engine is not None:
                engine.close()
            so.shutdown()

    # Our spans, grouped by request: the request span by its id, the phases by its trace.
    exported = [*mem_http.get_finished_spans(), *mem_grpc.get_finished_spans()]
    for s in sent.values():
        (root,) = [
            x
            for x in exported
            if x.kind == SpanKind.SERVER
            and (x.attributes or {}).get(sc.SAGELLM_REQUEST_ID) == s.request.request_id
        ]
        s.spans = [x for x in exported if x.context.trace_id == root.context.trace_id]

    started = time.monotonic()
    stored = {}
    for project in (PROJECT_HTTP, PROJECT_GRPC):
        ids = {_hex_span(x) for s in sent.values() if s.project == project for x in s.spans}
        stored[project] = phoenix.wait_for_spans(project, ids)
    timings["phoenix_ingest"] = time.monotonic() - started
    print("Phoenix test timings (s):", ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return Run(model, sent, stored, timings)


# --- the tests ------------------------------------------------------------------------------------


def test_every_span_arrives_with_our_ids(run: Run) -> None:
    for rid, s in run.sent.items():
        assert len(s.spans) == 1 + len(sc.PHASE_SPANS), rid  # request + queue/prefill/decode
        got = {x["context"]["span_id"]: x for x in run.in_phoenix(s)}
        want = {_hex_span(x): x for x in s.spans}
        assert got.keys() == want.keys(), (
            f"{rid}: Phoenix has {sorted(got)}, we sent {sorted(want)}"
        )
        for span_id, ours in want.items():
            assert got[span_id]["name"] == ours.name
            assert got[span_id]["context"]["trace_id"] == _hex_trace(ours)
        # Each transport landed in its own project, and nowhere else.
        other = PROJECT_GRPC if s.project == PROJECT_HTTP else PROJECT_HTTP
        assert not want.keys() & run.stored[other].keys()

    root = run.stored_span(run.sent["http-completion"], run.sent["http-completion"].root)
    assert root["attributes"][sc.SAGELLM_TRACE_ID] == "phoenix-http-completion"
    # A W3C traceparent puts the request span in the caller's trace, under the caller's span.
    joined = run.sent["http-traceparent"]
    stored = run.stored_span(joined, joined.root)
    assert stored["context"]["trace_id"] == CALLER_TRACE_ID
    assert stored["parent_id"] == CALLER_SPAN_ID
    assert stored["attributes"][sc.SAGELLM_TRACE_ID] == "phoenix-http-traceparent"


def test_phases_are_children_of_the_request_span(run: Run) -> None:
    for rid, s in run.sent.items():
        root = run.stored_span(s, s.root)
        phases = sorted((run.stored_span(s, p) for p in s.phases), key=lambda x: x["start_time"])
        assert [p["name"] for p in phases] == list(sc.PHASE_SPANS), rid
        for p in phases:
            assert p["parent_id"] == root["context"]["span_id"], rid
            assert p["context"]["trace_id"] == root["context"]["trace_id"], rid
            assert root["start_time"] <= p["start_time"] <= p["end_time"] <= root["end_time"], rid
        if rid != "http-traceparent":
            assert root["parent_id"] is None, rid  # the trace's root


def test_request_spans_show_as_llm_spans(run: Run) -> None:
    for rid, s in run.sent.items():
        root = run.stored_span(s, s.root)
        attrs = root["attributes"]
        ours = s.root.attributes or {}
        assert root["span_kind"] == OI_KIND_LLM, rid
        assert root["name"] == sc.request_span_name(str(ours[sc.GEN_AI_OPERATION_NAME]), run.model)
        assert attrs[OI_MODEL_NAME] == run.model, rid
        assert attrs[OI_SYSTEM] == sc.PROVIDER_NAME, rid
        assert attrs[OI_TOKENS_PROMPT] == s.prompt_tokens == ours[sc.GEN_AI_USAGE_INPUT_TOKENS] > 0
        assert attrs[OI_TOKENS_COMPLETION] == s.output_tokens == MAX_TOKENS, rid
        assert attrs[OI_TOKENS_TOTAL] == s.prompt_tokens + s.output_tokens, rid
        assert attrs[OI_TOKENS_CACHE_READ] == ours[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS], rid
        assert [e["name"] for e in root["events"]] == [sc.EVENT_FIRST_TOKEN], rid
        # The phases are not LLM calls: Phoenix must not count their tokens again.
        for p in s.phases:
            phase = run.stored_span(s, p)
            assert phase["span_kind"] != OI_KIND_LLM, (rid, p.name)
            assert not any(k.startswith("llm.token_count") for k in phase["attributes"])
    operations = {
        (run.sent[rid].root.attributes or {}).get(sc.GEN_AI_OPERATION_NAME)
        for rid in ("http-completion", "http-chat")
    }
    assert operations == {sc.OP_TEXT_COMPLETION, sc.OP_CHAT}


def test_phoenix_filters_exactly_our_request_spans_as_llm(run: Run, phoenix: Phoenix) -> None:
    # The span-kind filter reads Phoenix's own column (what its UI lists), not the attributes.
    for project in (PROJECT_HTTP, PROJECT_GRPC):
        llm = {x["context"]["span_id"] for x in phoenix.spans(project, span_kind=OI_KIND_LLM)}
        ours = {_hex_span(s.root) for s in run.sent.values() if s.project == project}
        assert llm == ours, project


def test_no_prompt_or_completion_text_by_default(run: Run) -> None:
    for rid, s in run.sent.items():
        if s.project != PROJECT_HTTP:
            continue  # content capture off
        for span in run.in_phoenix(s):
            assert not [k for k in span["attributes"] if k.startswith(CONTENT_PREFIXES)], rid
            dumped = json.dumps(span, ensure_ascii=False)
            assert s.prompt not in dumped, rid
            if len(s.text.strip()) >= 8:  # too short a completion could occur by chance
                assert s.text not in dumped, rid


def test_captured_prompt_shows_as_the_llm_input_message(run: Run) -> None:
    s = run.sent["grpc-captured"]
    stored = run.stored_span(s, s.root)
    attrs = stored["attributes"]
    assert s.prompt in json.dumps(stored, ensure_ascii=False)  # the privacy test's probe finds it
    assert attrs[f"{OI_INPUT_MESSAGES}.0.message.role"] == "user"
    assert attrs[f"{OI_INPUT_MESSAGES}.0.message.content"] == s.prompt
    # The completion shows too: Phoenix maps gen_ai.output.messages to llm.output_messages
    # only when every message has the finish_reason the GenAI schema requires.
    assert attrs[f"{OI_OUTPUT_MESSAGES}.0.message.role"] == "assistant", sorted(attrs)
    if s.text:  # the tiny random model may say nothing printable
        assert attrs[f"{OI_OUTPUT_MESSAGES}.0.message.content"] == s.text


def test_phoenix_listens_on_loopback_only(phoenix: Phoenix) -> None:
    listening = [
        c.laddr
        for c in psutil.Process(phoenix.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert {a.port for a in listening} >= {phoenix.http_port, phoenix.grpc_port}
    assert {a.ip for a in listening} <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, listening
