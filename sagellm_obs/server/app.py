"""``create_app()``: an OpenAI-compatible HTTP server over one :class:`InstrumentedEngine`.

Routes:

* ``POST /v1/completions`` and ``POST /v1/chat/completions``: OpenAI bodies, JSON or SSE
  (``data: {...}`` frames and a final ``data: [DONE]``; ``stream_options.include_usage`` adds a
  usage chunk). Header ``X-Sagellm-Metrics: 1`` adds a non-standard ``metrics`` object.
* ``POST /v1/sagellm/generate``: a protocol ``Request`` in, a protocol ``Response`` out, or with
  ``"stream": true`` SSE frames of protocol ``StreamEvent`` JSON (the ``end`` event closes it).
* llama-stack 0.2.x's ``/v1/inference/*`` routes (see :mod:`sagellm_obs.server.llama_stack_routes`).
* ``GET /v1/sagellm/run``: which replica this is and where it records (the run folder told to a
  client on this machine only; see :mod:`sagellm_obs.server.run_info`).
* ``GET /v1/models`` (entries carry OpenAI's and llama-stack's fields), ``GET /health`` (no API
  key), ``GET /metrics`` (Prometheus text: vLLM's
  ``vllm:*`` metrics and, when the telemetry exports to Prometheus, the GenAI ones; this is the
  registry of ``Telemetry.prometheus_registry``, else ``prometheus_client``'s global one).

Every request gets a SERVER span that joins the caller's W3C trace and parents the engine's
request span (see :mod:`sagellm_obs.server.tracing`); responses carry ``X-Trace-Id`` and
``traceparent`` headers. Errors are OpenAI-shaped (see :mod:`sagellm_obs.server.errors`).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from sagellm_obs import semconv as sc
from sagellm_obs.engine.core import InstrumentedEngine
from sagellm_obs.protocol import (
    TRACEPARENT_KEY,
    TRACESTATE_KEY,
    ErrorCode,
    ProtocolValidationError,
    Request,
    StreamEvent,
    StreamEventDelta,
    StreamEventEnd,
    validate,
)
from sagellm_obs.protocol import Response as ProtocolResponse
from sagellm_obs.protocol.toolcalls import ForcedToolStream
from sagellm_obs.server import openai_compat as oc
from sagellm_obs.server.errors import (
    APIError,
    from_protocol_error,
    from_validation,
    invalid_argument,
    unavailable,
)
from sagellm_obs.server.llama_stack_compat import model_entry
from sagellm_obs.server.middleware import HTTP_SPAN_STATE, ServerMiddleware
from sagellm_obs.server.run_info import run_info
from sagellm_obs.server.sse import DONE, EventStreamResponse, frame
from sagellm_obs.server.tracing import HttpSpan

_M = TypeVar("_M", bound=BaseModel)

COMPLETIONS = "/v1/completions"
CHAT_COMPLETIONS = "/v1/chat/completions"
NATIVE_GENERATE = "/v1/sagellm/generate"
MODELS = "/v1/models"
HEALTH = "/health"
METRICS = "/metrics"
RUN_INFO = sc.RUN_INFO_ROUTE
ROUTES = (COMPLETIONS, CHAT_COMPLETIONS, NATIVE_GENERATE, MODELS, HEALTH, METRICS, RUN_INFO)

REQUEST_ID_HEADER = "X-Request-Id"
METRICS_HEADER = "x-sagellm-metrics"
_TRUE = {"1", "true", "yes", "on"}
_PROMPT_PARAMS = frozenset({"prompt", "input_text", "input_tokens"})
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,256}")


def create_app(
    engine: InstrumentedEngine,
    *,
    api_key: str | None = None,
    max_body_bytes: int = 1_000_000,
    served_model_names: list[str] | None = None,
    per_request_metrics: bool = False,
) -> FastAPI:
    """An OpenAI-compatible FastAPI app serving ``engine``.

    Args:
        engine: A started engine, on the event loop the app will run on.
        api_key: When set, required as ``Authorization: Bearer <key>`` on every route but
            ``/health``.
        max_body_bytes: Larger request bodies get a 413.
        served_model_names: Model names requests may name; default: the engine's model name.
        per_request_metrics: Every completion carries vLLM's per-request ``metrics`` object
            (``vllm serve --enable-per-request-metrics``; streamed: on the usage chunk).

    Returns:
        The app (``app.state.engine`` is the engine).
    """
    from sagellm_obs.server import llama_stack_routes  # imports this module

    server = _Server(engine, served_model_names or [engine.model_name], per_request_metrics)
    app = FastAPI(title="sagellm-obs", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.add_middleware(
        ServerMiddleware,
        telemetry=lambda: engine.telemetry,
        api_key=api_key,
        max_body_bytes=max_body_bytes,
        routes=(*ROUTES, *llama_stack_routes.ROUTES),
    )

    async def on_api_error(request: HttpRequest, exc: Exception) -> Response:
        err = exc if isinstance(exc, APIError) else APIError(500, "internal server error")
        return JSONResponse(err.body(), status_code=err.status)

    async def on_http_error(request: HttpRequest, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else "error"
        err = APIError(status, str(detail), code=_http_code(status))
        return JSONResponse(err.body(), status_code=status, headers=getattr(exc, "headers", None))

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_api_route(COMPLETIONS, server.completions, methods=["POST"])
    app.add_api_route(CHAT_COMPLETIONS, server.chat_completions, methods=["POST"])
    app.add_api_route(NATIVE_GENERATE, server.native_generate, methods=["POST"])
    app.add_api_route(MODELS, server.models, methods=["GET"])
    app.add_api_route(HEALTH, server.health, methods=["GET"])
    app.add_api_route(METRICS, server.metrics, methods=["GET"])
    app.add_api_route(RUN_INFO, server.run_info, methods=["GET"])
    llama_stack_routes.register(app, server)
    return app


def _http_code(status: int) -> str:
    if status == 501:
        return ErrorCode.NOT_IMPLEMENTED.value
    if status >= 500:
        return ErrorCode.UNAVAILABLE.value
    return ErrorCode.INVALID_ARGUMENT.value


class _Server:
    """The route handlers of one app."""

    def __init__(
        self, engine: InstrumentedEngine, names: list[str], per_request_metrics: bool = False
    ) -> None:
        self.engine = engine
        self.names = names
        self.per_request_metrics = per_request_metrics
        self.created = int(time.time())

    # --- OpenAI ----------------------------------------------------------------------------------
    async def completions(self, request: HttpRequest) -> Response:
        """``POST /v1/completions``."""
        body = _parse(oc.CompletionBody, await _json_body(request))
        return await self._openai(request, body, chat=False)

    async def chat_completions(self, request: HttpRequest) -> Response:
        """``POST /v1/chat/completions``."""
        body = _parse(oc.ChatBody, await _json_body(request))
        return await self._openai(request, body, chat=True)

    async def _openai(
        self, request: HttpRequest, body: oc.ChatBody | oc.CompletionBody, *, chat: bool
    ) -> Response:
        model = self._model(body.model)
        prefix = oc.CHAT_ID_PREFIX if chat else oc.COMPLETION_ID_PREFIX
        rid = _request_id(request, prefix)
        span = _http_span(request)
        span.start(trace_id_hint=body.trace_id or rid)
        default_max = self.engine.config.max_model_len if chat else oc.DEFAULT_COMPLETION_MAX_TOKENS
        forced = body.forced_tool() if isinstance(body, oc.ChatBody) else None
        if forced is not None and not oc.structured_output_supported():
            raise APIError(
                501,
                "tool_choice that forces a call needs structured output, which this engine lacks",
                param="tool_choice",
                code=ErrorCode.NOT_IMPLEMENTED.value,
            )
        try:
            req = oc.to_request(
                body, request_id=rid, metadata=span.metadata(), default_max_tokens=default_max
            )
        except ProtocolValidationError as exc:
            raise from_validation(exc) from None
        with_metrics = request.headers.get(METRICS_HEADER, "").strip().lower() in _TRUE
        headers = {REQUEST_ID_HEADER: rid}
        if not body.stream:
            resp = await self._generate(req, chat=chat)
            created = int(time.time())
            if chat:
                out = oc.chat_response(
                    resp,
                    response_id=rid,
                    model=model,
                    created=created,
                    with_metrics=with_metrics,
                    forced=forced,
                    per_request_metrics=self.per_request_metrics,
                )
            else:
                out = oc.completion_response(
                    resp,
                    response_id=rid,
                    model=model,
                    created=created,
                    with_metrics=with_metrics,
                    per_request_metrics=self.per_request_metrics,
                )
            return JSONResponse(out, headers=headers)
        stream, primed = await self._prime(req, chat=chat)
        chunks = oc.ChunkBuilder(
            chat=chat, response_id=rid, model=model, include_usage=body.include_usage
        )
        tools = ForcedToolStream(forced) if forced is not None else None
        frames = _openai_frames(
            stream, primed, chunks, with_metrics, tools, vllm_metrics=self.per_request_metrics
        )
        return EventStreamResponse(frames, headers=headers, also_close=[stream])

    # --- native ----------------------------------------------------------------------------------
    async def native_generate(self, request: HttpRequest) -> Response:
        """``POST /v1/sagellm/generate``: protocol ``Request`` -> ``Response`` or SSE events."""
        req = _parse(Request, await _json_body(request))
        if req.model:
            self._model(req.model)
        meta = dict(req.metadata or {})
        tp, ts = meta.get(TRACEPARENT_KEY), meta.get(TRACESTATE_KEY)
        span = _http_span(request)
        span.start(
            trace_id_hint=req.trace_id,
            fallback_traceparent=tp if isinstance(tp, str) else None,
            fallback_tracestate=ts if isinstance(ts, str) else None,
        )
        meta.pop(TRACESTATE_KEY, None)
        meta.update(span.metadata())
        req = req.model_copy(update={"metadata": meta})
        headers = {REQUEST_ID_HEADER: req.request_id}
        if not req.stream:
            self._check_alive()
            try:
                resp = await self.engine.generate(req)
            except ProtocolValidationError as exc:
                raise _engine_rejection(exc, chat=False) from None
            status = 200 if resp.finish_reason != "error" else self._failure_status()
            return Response(
                resp.model_dump_json(),
                status_code=status,
                media_type="application/json",
                headers=headers,
            )
        stream, primed = await self._prime(req, chat=False)
        return EventStreamResponse(
            _native_frames(stream, primed), headers=headers, also_close=[stream]
        )

    # --- misc ------------------------------------------------------------------------------------
    async def models(self, request: HttpRequest) -> Response:
        """``GET /v1/models``: OpenAI's entries with llama-stack's ``Model`` fields beside them."""
        data = [model_entry(name, self.created) for name in self.names]
        return JSONResponse({"object": "list", "data": data})

    async def health(self, request: HttpRequest) -> Response:
        """``GET /health``: 200 while the engine runs, else 503."""
        if self._alive():
            return JSONResponse({"status": "ok", "model": self.names[0]})
        return JSONResponse({"status": "unavailable"}, status_code=503)

    async def metrics(self, request: HttpRequest) -> Response:
        """``GET /metrics``: vLLM's metrics and ours, in the Prometheus text format, or in
        OpenMetrics (with exemplars: the trace ids of requests in each latency bucket) when the
        ``Accept`` header asks for it, as Prometheus does.

        Serves the telemetry's ``prometheus_registry`` when it exports to Prometheus, else the
        process-wide registry (vLLM's metrics only).
        """
        from prometheus_client import REGISTRY
        from prometheus_client.exposition import choose_encoder

        registry = getattr(self.engine.telemetry, "prometheus_registry", None) or REGISTRY
        encoder, content_type = choose_encoder(request.headers.get("accept") or "")
        return Response(encoder(registry), media_type=content_type)

    async def run_info(self, request: HttpRequest) -> Response:
        """``GET /v1/sagellm/run``: see :mod:`sagellm_obs.server.run_info`."""
        return JSONResponse(run_info(self.engine, self.names[0], request))

    # --- helpers ---------------------------------------------------------------------------------
    def _model(self, requested: str | None) -> str:
        """The served name a request refers to; 404 for an unknown one."""
        if not requested:
            return self.names[0]
        if requested not in self.names:
            shown = requested if len(requested) <= 100 else requested[:100] + "..."
            raise APIError(404, f"The model `{shown}` does not exist.", param="model")
        return requested

    def _alive(self) -> bool:
        llm = self.engine.llm
        return llm is not None and not bool(getattr(llm, "errored", False))

    def _check_alive(self) -> None:
        if not self._alive():
            raise unavailable()

    def _failure_status(self) -> int:
        return 500 if self._alive() else 503

    async def _generate(self, req: Request, *, chat: bool) -> ProtocolResponse:
        self._check_alive()
        try:
            resp = await self.engine.generate(req)
        except ProtocolValidationError as exc:
            raise _engine_rejection(exc, chat=chat) from None
        if resp.finish_reason == "error":
            raise from_protocol_error(resp.error, self._failure_status())
        return resp

    async def _prime(
        self, req: Request, *, chat: bool
    ) -> tuple[AsyncIterator[StreamEvent], list[StreamEvent]]:
        """Start a stream and read it up to its first output.

        So a request the engine rejects (bad parameters, a prompt longer than the context) still
        gets a 4xx instead of a stream that fails; the first output is held, not lost.
        """
        self._check_alive()
        stream = self.engine.stream(req)
        primed: list[StreamEvent] = []
        try:
            async for event in stream:
                primed.append(event)
                if isinstance(event, (StreamEventDelta, StreamEventEnd)):
                    break
        except ProtocolValidationError as exc:
            raise _engine_rejection(exc, chat=chat) from None
        except BaseException:
            with contextlib.suppress(Exception):
                await _aclose(stream)
            raise
        end = primed[-1] if primed else None
        if isinstance(end, StreamEventEnd) and end.finish_reason == "error":
            await _aclose(stream)
            raise from_protocol_error(end.error, self._failure_status())
        return stream, primed


def _engine_rejection(exc: ProtocolValidationError, *, chat: bool) -> APIError:
    """A 400 for a request the engine refused; vLLM's names for the prompt become ours."""
    err = from_validation(exc)
    if err.param in _PROMPT_PARAMS:
        err.param = "messages" if chat else "prompt"  # chat: the rendered prompt
    return err


async def _aclose(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _events(
    stream: AsyncIterator[StreamEvent], primed: list[StreamEvent]
) -> AsyncIterator[StreamEvent]:
    for event in primed:
        yield event
    if primed and isinstance(primed[-1], StreamEventEnd):
        return
    async for event in stream:
        yield event


async def _openai_frames(
    stream: AsyncIterator[StreamEvent],
    primed: list[StreamEvent],
    chunks: oc.ChunkBuilder,
    with_metrics: bool,
    tools: ForcedToolStream | None = None,
    *,
    vllm_metrics: bool = False,
) -> AsyncIterator[bytes]:
    """OpenAI SSE frames of an engine stream; closing this closes (aborts) the engine stream.

    With ``tools`` (a forced call) the generated text is sent as ``delta.tool_calls`` fragments.
    """
    try:
        first = chunks.first()
        if first is not None:
            yield frame(first)
        async for event in _events(stream, primed):
            if isinstance(event, StreamEventDelta):
                if tools is not None:
                    entries = tools.feed(event.content)
                    if entries:
                        yield frame(chunks.tool_calls(entries))
                elif event.content:
                    yield frame(chunks.delta(event.content))
            elif isinstance(event, StreamEventEnd):
                if event.finish_reason == "error":
                    yield frame(from_protocol_error(event.error).body())
                    break
                reason = None
                if tools is not None:
                    entries = tools.finish()
                    if entries:
                        yield frame(chunks.tool_calls(entries))
                    if tools.announced:
                        reason = oc.tool_finish_reason(event.finish_reason)
                last = chunks.finish(event.finish_reason, reason)
                if chunks.include_usage:
                    yield frame(last)
                    last = chunks.usage(
                        event.prompt_tokens or 0, len(event.output_tokens), event.metrics
                    )
                # vLLM's per-request metrics ride on the usage chunk only, as in vLLM.
                extra = oc.response_metrics(
                    event.metrics,
                    len(event.output_tokens),
                    ours=with_metrics,
                    vllm=vllm_metrics and chunks.include_usage,
                )
                if extra is not None:
                    last["metrics"] = extra
                yield frame(last)
        yield DONE
    finally:
        await _aclose(stream)


async def _native_frames(
    stream: AsyncIterator[StreamEvent], primed: list[StreamEvent]
) -> AsyncIterator[bytes]:
    """Protocol ``StreamEvent`` frames; the ``end`` event is the last one."""
    try:
        async for event in _events(stream, primed):
            yield frame(event.model_dump_json())
    finally:
        await _aclose(stream)


def _http_span(request: HttpRequest) -> HttpSpan:
    span = getattr(request.state, HTTP_SPAN_STATE, None)
    if not isinstance(span, HttpSpan):
        raise RuntimeError("the app must run behind ServerMiddleware")
    return span


def _request_id(request: HttpRequest, prefix: str) -> str:
    """``X-Request-Id`` when it is a sane token, else a new ``prefix`` + random hex."""
    given = request.headers.get(REQUEST_ID_HEADER, "").strip()
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return f"{prefix}{uuid.uuid4().hex}"


async def _json_body(request: HttpRequest) -> dict[str, Any]:
    """The body as a JSON object, or a 4xx (415 for a non-JSON content type)."""
    ctype = request.headers.get("content-type")
    if ctype:
        media = ctype.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise invalid_argument("Content-Type must be application/json", status=415)
    raw = await request.body()
    if not raw.strip():
        raise invalid_argument("the request body is empty")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise invalid_argument(f"the body is not valid JSON ({exc.msg} at {exc.pos})") from None
    except (UnicodeDecodeError, RecursionError):
        raise invalid_argument("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid_argument("the request body must be a JSON object")
    return data


def _parse(model: type[_M], data: dict[str, Any]) -> _M:
    try:
        return validate(model, data)
    except ProtocolValidationError as exc:
        raise from_validation(exc) from None
