"""Drive a workload through any OpenAI-compatible HTTP endpoint, measuring the client side.

:func:`run_http_workload` is the HTTP twin of :func:`~sagellm_obs.workload.runner.run_workload`:
same scheduling (``at`` offsets open loop, else ``concurrency`` at a time), same
:class:`~sagellm_obs.workload.runner.Progress` and
:class:`~sagellm_obs.workload.runner.RunResult`, same ``requests-client`` rows in the run folder.
There is no engine here: the engine-side spans live in the server's run folder (our server writes
them; the request ids match because every request carries ``X-Request-Id``, and the trace ids
match because it carries a W3C ``traceparent`` derived from the protocol trace id).

Several endpoints (replicas of one model) spread the workload by a named policy
(:data:`~sagellm_obs.workload.routing.ROUTES`): ``round-robin`` or ``least-loaded`` (fewest
requests this client has in flight there). Given a telemetry, each request also gets a GenAI
CLIENT span (the ``traceparent``'s parent), so loading the client's run folder with the
replicas' folders gives one trace per request: client span -> the replica's HTTP span -> its
engine span (``frames.time_breakdown``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from sagellm_obs import semconv as sc
from sagellm_obs.protocol import Request
from sagellm_obs.protocol.tracecontext import otel_trace_id
from sagellm_obs.workload.item import WorkItem
from sagellm_obs.workload.routing import ReplicaStats, Router, make_router, parse_endpoints
from sagellm_obs.workload.runner import Progress, RunResult, drive

__all__ = [
    "request_body",
    "run_http_workload",
]

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
_DATA = "data:"


def request_body(request: Request, model: str | None) -> tuple[str, dict[str, Any]]:
    """The route and the streaming OpenAI body of a protocol request.

    Args:
        request: The protocol request (``prompt`` or ``messages``).
        model: Model name to ask for; default: the request's, else none (the server's default).

    Returns:
        ``(path, body)``: ``/v1/chat/completions`` for messages, else ``/v1/completions``.
    """
    body: dict[str, Any] = {
        "max_tokens": request.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "trace_id": request.trace_id,
    }
    name = model or request.model
    if name:
        body["model"] = name
    sp = request.sampling_params
    temperature = request.temperature
    top_p = request.top_p
    if sp is not None:
        temperature = getattr(sp, "temperature", None) or temperature
        top_p = getattr(sp, "top_p", None) or top_p
    if temperature is not None:
        body["temperature"] = temperature
    if top_p is not None:
        body["top_p"] = top_p
    if (request.metadata or {}).get("ignore_eos"):
        body["ignore_eos"] = True
    if request.messages:
        body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        return CHAT, body
    body["prompt"] = request.prompt
    return COMPLETIONS, body


def _content(chunk: dict[str, Any]) -> str:
    """The generated text of one stream chunk (completions ``text`` or chat ``delta.content``)."""
    out = ""
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        text = choice.get("text")
        if text is None:
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
        if text:
            out += str(text)
    return out


def _finish_reason(chunk: dict[str, Any]) -> str | None:
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and choice.get("finish_reason"):
            return str(choice["finish_reason"])
    return None


async def run_http_workload(
    endpoint: str | Sequence[str],
    items: Sequence[WorkItem],
    *,
    route: str = "round-robin",
    telemetry: Any = None,
    store: Any = None,
    concurrency: int = 8,
    duration: float | None = None,
    api_key: str | None = None,
    model: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    timeout: float = 120,
    engine_ids: Mapping[str, str] | None = None,
) -> RunResult:
    """Send ``items`` to an OpenAI-compatible server, streaming each and timing it client-side.

    Each request goes to ``/v1/completions`` (prompt) or ``/v1/chat/completions`` (messages) with
    ``stream=True`` and ``stream_options.include_usage``; it carries ``X-Request-Id`` (the
    protocol request id), a ``traceparent`` whose trace id is
    :func:`~sagellm_obs.protocol.tracecontext.otel_trace_id` of the protocol trace id (and a
    random parent span id), and the body extensions ``ignore_eos`` and ``trace_id`` (our server
    honours both, vLLM's honours ``ignore_eos``, others ignore them).

    Timings per request: ``client_ttft_s`` is the time to the first chunk with non-empty content
    (null when no text arrived at all: servers send no chunk for tokens that detokenize to "");
    ``client_itl_ms`` holds the gaps between consecutive content chunks, so it has
    ``chunks - 1`` entries. Over HTTP a chunk may carry several tokens and nothing says how many,
    so these are chunk gaps, not per-token gaps (the in-process runner pads with zeros instead).
    ``client_e2e_s`` runs to the end of the stream; output tokens come from the usage chunk.

    One ``requests-client`` row is written per request to ``store`` (``request_id``,
    ``client_start_unix_nano``, ``client_ttft_s``, ``client_e2e_s``, ``client_itl_ms``,
    ``finish_reason``, ``error``, ``trace_id``, ``endpoint``, ``workload``, ``family``,
    ``workload_phase``, ``output_tokens``, ``chunks``, ``replica``: the base URL it went to;
    ``input_tokens`` and ``cached_tokens`` when the usage chunk has them).
    ``error`` is the HTTP status (an int) or the exception name; such a request counts as failed
    and the run goes on. ``trace_id`` is the server's ``X-Trace-Id`` when it returns one, else the
    trace id of the ``traceparent`` sent.

    Args:
        endpoint: Base URL, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is accepted), or
            several (a list, or comma-separated): replicas the items are spread over.
        items: What to send; timed items at their ``at`` offsets, others ``concurrency`` at a
            time.
        route: How items are spread over several endpoints: a
            :data:`~sagellm_obs.workload.routing.ROUTES` name.
        telemetry: A :class:`~sagellm_obs.telemetry.Telemetry`: a GenAI CLIENT span per request
            (its trace id the protocol trace id's, the parent of the ``traceparent`` sent);
            None sends a ``traceparent`` with a random parent span id and records no span.
        store: A :class:`~sagellm_obs.store.RunStore` for the rows, or None.
        concurrency: Most requests in flight (closed loop).
        duration: Stop sending after this many seconds.
        api_key: Sent as ``Authorization: Bearer``.
        model: Model name to ask for; default: each request's, else the server's default.
        on_progress: Called with the live :class:`Progress`.
        timeout: Per-request read/connect timeout in seconds.
        engine_ids: The engine id of each endpoint (base URL), as the replica told it
            (:mod:`~sagellm_obs.workload.replica_info`): each CLIENT span names the engine it
            went to (``sagellm.engine_id``), so a collector's trace has one engine throughout.

    Returns:
        The :class:`RunResult`; ``interrupted`` when the task was cancelled (in-flight requests
        are closed and recorded as cancelled, finished rows are kept); ``replicas`` has what
        each endpoint got.

    Raises:
        ValueError: A bad endpoint or route name.
    """
    bases = parse_endpoints(endpoint)
    replicas = [ReplicaStats(b) for b in bases]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(
        max_connections=max(concurrency, 1) + 4, max_keepalive_connections=max(concurrency, 1)
    )
    async with httpx.AsyncClient(
        headers=headers, limits=limits, timeout=httpx.Timeout(timeout)
    ) as http:
        run = _HttpRun(
            http=http,
            progress=Progress(total=len(items)),
            router=make_router(route, replicas),
            slots=asyncio.Semaphore(max(concurrency, 1)),
            telemetry=telemetry,
            model=model,
            engine_ids=engine_ids or {},
            on_progress=on_progress,
        )
        interrupted = await drive(
            items,
            run.one,
            slots=run.slots,
            duration=duration,
            store=store,
            pending=run.pending,
            refresh=run.refresh,
        )
    return RunResult(
        progress=run.progress,
        client=run.client_rows,
        interrupted=interrupted,
        replicas={r.endpoint: r for r in replicas},
    )


@dataclass
class _Timing:
    """The client-side clock of one streamed request."""

    t0: float = field(default_factory=time.perf_counter)
    first: float | None = None  # seconds from t0 to the first content chunk
    last: float | None = None
    itl_ms: list[float] = field(default_factory=list)  # gaps between content chunks
    chunks: int = 0

    def content(self) -> None:
        """A chunk with generated text arrived now."""
        now = time.perf_counter()
        if self.first is None:
            self.first = now - self.t0
        elif self.last is not None:
            self.itl_ms.append((now - self.last) * 1000.0)
        self.last = now
        self.chunks += 1

    def record(self, row: dict[str, Any]) -> None:
        """The timings into the request's ``requests-client`` row."""
        row["client_ttft_s"] = self.first
        row["client_e2e_s"] = time.perf_counter() - self.t0
        row["client_itl_ms"] = self.itl_ms
        row["chunks"] = self.chunks


@dataclass
class _HttpRun:
    """One :func:`run_http_workload`: what its requests share, and :meth:`one` to send one."""

    http: httpx.AsyncClient
    progress: Progress
    router: Router
    slots: asyncio.Semaphore
    telemetry: Any
    model: str | None
    engine_ids: Mapping[str, str]
    on_progress: Callable[[Progress], None] | None
    client_rows: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)  # rows not yet in the store

    def refresh(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)

    async def one(self, item: WorkItem) -> None:
        """Send one item to the replica the router picks, stream it, and record its row."""
        async with self.slots:
            req = item.request
            path, body = request_body(req, self.model)
            replica = self.router.pick()
            base = replica.endpoint
            replica.sent += 1
            replica.in_flight += 1
            trace_hex = otel_trace_id(req.trace_id)
            engine = self.engine_ids.get(base)
            span = _client_span(self.telemetry, req, body, base, path, trace_hex, engine)
            parent = span.get_span_context().span_id if span is not None else 0
            parent_hex = f"{parent:016x}" if parent else secrets.token_hex(8)
            row: dict[str, Any] = {
                "request_id": req.request_id,
                "client_start_unix_nano": time.time_ns(),
                "workload": item.kind,
                "family": item.family,
                "workload_phase": (req.metadata or {}).get("phase"),
                "endpoint": base + path,
                "replica": base,
                "trace_id": trace_hex,
                "finish_reason": None,
                "error": None,
            }
            headers = {
                "X-Request-Id": req.request_id,
                "traceparent": f"00-{trace_hex}-{parent_hex}-01",
            }
            timing = _Timing()
            self.progress.sent += 1
            try:
                await self._send(base + path, body, headers, row, timing)
            except asyncio.CancelledError:
                row["error"] = "cancelled"
                row["finish_reason"] = "cancelled"
                self._done(row, timing, span, replica)
                raise
            except Exception as exc:  # a bad request must not stop the run
                row["error"] = type(exc).__name__
            self._done(row, timing, span, replica)
            replica.output_tokens += int(row.get("output_tokens") or 0)
            self.refresh()

    async def _send(
        self,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        row: dict[str, Any],
        timing: _Timing,
    ) -> None:
        """POST the request and read its event stream into ``row`` and ``timing``."""
        async with self.http.stream("POST", url, json=body, headers=headers) as resp:
            returned = resp.headers.get(sc.TRACE_ID_HEADER)
            if returned:
                row["trace_id"] = returned
            if resp.status_code >= 400:
                await resp.aread()
                row["error"] = resp.status_code
                row["finish_reason"] = "error"
                return
            async for line in resp.aiter_lines():
                chunk = _event(line)
                if chunk is _DONE:
                    break
                if chunk is None:
                    continue
                if "error" in chunk and not chunk.get("choices"):
                    err = chunk["error"]
                    code = err.get("code") if isinstance(err, dict) else None
                    row["error"] = code or "stream_error"
                    row["finish_reason"] = "error"
                    break
                if _content(chunk):
                    timing.content()
                reason = _finish_reason(chunk)
                if reason is not None:
                    row["finish_reason"] = reason
                usage = chunk.get("usage")
                if isinstance(usage, dict):
                    tokens = int(usage.get("completion_tokens") or 0)
                    row["output_tokens"] = tokens
                    self.progress.output_tokens += tokens
                    _prompt_usage(row, usage)

    def _done(
        self, row: dict[str, Any], timing: _Timing, span: trace.Span | None, replica: ReplicaStats
    ) -> None:
        """A finished (or failed, or cancelled) request: its row, span and counts."""
        if row["error"] is not None:
            self.progress.failed += 1
            replica.failed += 1
        timing.record(row)
        _end_span(span, row)
        self.client_rows.append(row)
        self.pending.append(row)
        self.progress.done += 1
        replica.in_flight -= 1
        replica.done += 1


_DONE: dict[str, Any] = {}


def _event(line: str) -> dict[str, Any] | None:
    """The JSON object of one server-sent event line; :data:`_DONE` for ``[DONE]``; None for
    anything else (comments, blank lines, other data)."""
    if not line.startswith(_DATA):
        return None
    data = line[len(_DATA) :].strip()
    if data == "[DONE]":
        return _DONE
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        return None
    return chunk if isinstance(chunk, dict) else None


def _client_span(
    telemetry: Any,
    req: Request,
    body: dict[str, Any],
    base: str,
    path: str,
    trace_hex: str,
    engine_id: str | None = None,
) -> trace.Span | None:
    """The request's GenAI CLIENT span, in the trace of the protocol trace id; None without
    a telemetry. ``engine_id``: the replica's, so the span does not take this process's."""
    if telemetry is None:
        return None
    operation = sc.OP_CHAT if path == CHAT else sc.OP_TEXT_COMPLETION
    model = str(body.get("model") or "")
    split = urlsplit(base)
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: operation,
        sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_NAME,
        sc.GEN_AI_REQUEST_STREAM: True,
        sc.SERVER_ADDRESS: split.hostname or "",
        sc.SERVER_PORT: split.port or (443 if split.scheme == "https" else 80),
        sc.SAGELLM_REQUEST_ID: req.request_id,
        sc.SAGELLM_TRACE_ID: req.trace_id,
    }
    if model:
        attributes[sc.GEN_AI_REQUEST_MODEL] = model
    if engine_id:
        attributes[sc.SAGELLM_ENGINE_ID] = engine_id
    if body.get("max_tokens") is not None:
        attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] = int(body["max_tokens"])
    try:
        with telemetry.trace_id_hint(int(trace_hex, 16)):
            return telemetry.tracer.start_span(  # type: ignore[no-any-return]
                sc.request_span_name(operation, model),
                context=trace.set_span_in_context(trace.INVALID_SPAN),  # a root span
                kind=SpanKind.CLIENT,
                attributes=attributes,
            )
    except Exception:  # telemetry never stops the run
        return None


def _end_span(span: trace.Span | None, row: dict[str, Any]) -> None:
    if span is None:
        return
    try:
        if row.get("output_tokens") is not None:
            span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, int(row["output_tokens"]))
        if row.get("finish_reason"):
            span.set_attribute(sc.GEN_AI_RESPONSE_FINISH_REASONS, (str(row["finish_reason"]),))
        if row.get("client_ttft_s") is not None:
            span.set_attribute(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, row["client_ttft_s"])
        span.set_attribute(sc.SAGELLM_STREAM_CHUNKS, int(row.get("chunks") or 0))
        error = row.get("error")
        if error == "cancelled":
            span.set_attribute(sc.SAGELLM_CANCELLED, True)
        elif error is not None:
            span.set_attribute(sc.ERROR_TYPE, str(error))
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end()
    except Exception:
        pass


def _prompt_usage(row: dict[str, Any], usage: dict[str, Any]) -> None:
    """``input_tokens`` and, when the server tells (ours does; vLLM with
    ``--enable-prompt-tokens-details``), ``cached_tokens``: the warm-cache check's input."""
    if usage.get("prompt_tokens") is not None:
        row["input_tokens"] = int(usage["prompt_tokens"])
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and details.get("cached_tokens") is not None:
        row["cached_tokens"] = int(details["cached_tokens"])
