"""llama-stack 0.2.x Inference routes on the server (``llama-stack-client`` 0.2.x works unchanged).

Routes (``model_id`` names a served model; the unversioned paths are the seeds' spellings,
the underscored ones from llama-stack's draft spec):

* ``POST /v1/inference/completion`` (also ``/inference/completion``): ``CompletionResponse``, or
  with ``"stream": true`` SSE frames of ``CompletionResponseStreamChunk`` (the last one carries
  ``stop_reason`` and ``metrics``);
* ``POST /v1/inference/chat-completion`` (also ``/inference/chat-completion`` and
  ``/inference/chat_completion``): ``ChatCompletionResponse``, or SSE frames of
  ``ChatCompletionResponseStreamChunk``: ``start``, ``progress``..., ``complete``;
* ``POST /v1/inference/batch-completion`` and ``/v1/inference/batch-chat-completion`` (also
  ``/inference/batch_completion`` and ``/inference/batch_chat_completion``): ``{"batch": [...]}``
  in request order; the items run concurrently, so the engine batches them;
* ``POST /v1/inference/embeddings``: a 400 (``not_implemented``): no embedding model is served;
* ``GET /v1/models/{model_id}``: the model's ``/v1/models`` entry (both clients' ``retrieve``).

Bodies may carry our ``ignore_eos`` and ``seed`` extensions (``extra_body``), as on the OpenAI
routes: fixed-length outputs for benchmarks, and reproducible sampling (llama-stack's
``SamplingParams`` has no seed).
SSE frames are ``data: {...}`` lines with no ``[DONE]`` (llama-stack sends none); a failure
mid-stream is an ``{"error": {...}}`` frame, as llama-stack sends it.

Tracing is the OpenAI routes': the middleware's HTTP SERVER span (``POST <route>``) parents the
engine's request span; for a batch it parents one engine span per item (request ids
``<X-Request-Id>-<index>``). Errors are the server's OpenAI-shaped bodies with a protocol
``ErrorCode`` (see :mod:`sagellm_obs.server.errors`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from sagellm_obs.protocol import Request, StreamEvent, StreamEventDelta, StreamEventEnd
from sagellm_obs.protocol import Response as ProtocolResponse
from sagellm_obs.protocol import llama_stack as ls
from sagellm_obs.protocol.toolcalls import ForcedTool
from sagellm_obs.server import app as app_module
from sagellm_obs.server import llama_stack_compat as lc
from sagellm_obs.server import openai_compat as oc
from sagellm_obs.server.errors import APIError, from_protocol_error
from sagellm_obs.server.sse import EventStreamResponse, frame

if TYPE_CHECKING:
    from sagellm_obs.server.app import _Server

COMPLETION = "/v1/inference/completion"
CHAT_COMPLETION = "/v1/inference/chat-completion"
BATCH_COMPLETION = "/v1/inference/batch-completion"
BATCH_CHAT_COMPLETION = "/v1/inference/batch-chat-completion"
EMBEDDINGS = "/v1/inference/embeddings"
MODEL = "/v1/models/{model_id:path}"
"""One model (``client.models.retrieve`` of both clients): the ``/v1/models`` entry."""
ALIASES: dict[str, tuple[str, ...]] = {
    COMPLETION: ("/inference/completion",),
    CHAT_COMPLETION: ("/inference/chat-completion", "/inference/chat_completion"),
    BATCH_COMPLETION: ("/inference/batch_completion",),
    BATCH_CHAT_COMPLETION: ("/inference/batch_chat_completion",),
    EMBEDDINGS: (),
}
ROUTES = tuple(p for main, more in ALIASES.items() for p in (main, *more))
"""Every llama-stack path (the middleware names spans after them)."""


def register(app: FastAPI, server: _Server) -> None:
    """Add the llama-stack routes to ``app`` (built by :func:`~sagellm_obs.server.create_app`)."""
    routes = LlamaStackRoutes(server)
    handlers: dict[str, Callable[[HttpRequest], Any]] = {
        COMPLETION: routes.completion,
        CHAT_COMPLETION: routes.chat_completion,
        BATCH_COMPLETION: routes.batch_completion,
        BATCH_CHAT_COMPLETION: routes.batch_chat_completion,
        EMBEDDINGS: routes.embeddings,
    }
    for main, handler in handlers.items():
        for path in (main, *ALIASES[main]):
            app.add_api_route(path, handler, methods=["POST"])
    app.add_api_route(MODEL, routes.model, methods=["GET"])


class LlamaStackRoutes:
    """The handlers, over the OpenAI server's engine, model names and engine calls."""

    def __init__(self, server: _Server) -> None:
        self.server = server

    # --- single requests -------------------------------------------------------------------------
    async def completion(self, request: HttpRequest) -> Response:
        """``POST /v1/inference/completion``."""
        body, ext = await _body(ls.CompletionRequest, request)
        self.server._model(body.model)
        lc.check_unsupported(body.response_format, body.logprobs)
        prompt = lc.text(body.content, "content")
        self._check_structured(body.response_format, None)
        rid = app_module._request_id(request, lc.ID_PREFIX)
        req = lc.to_request(
            seed=ext.seed,
            request_id=rid,
            metadata=self._start_span(request, rid, ext.ignore_eos),
            default_max_tokens=self.server.engine.config.max_model_len,
            params=body.sampling_params,
            prompt=prompt,
            response_format=body.response_format,
            stream=bool(body.stream),
        )
        headers = {app_module.REQUEST_ID_HEADER: rid}
        if not body.stream:
            resp = await self.server._generate(req, chat=False)
            return _json(lc.completion_response(resp), headers)
        stream, primed = await self.server._prime(req, chat=False)
        frames = _completion_frames(stream, primed)
        return EventStreamResponse(frames, headers=headers, also_close=[stream])

    async def chat_completion(self, request: HttpRequest) -> Response:
        """``POST /v1/inference/chat-completion``."""
        body, ext = await _body(ls.ChatCompletionRequest, request)
        self.server._model(body.model)
        lc.check_unsupported(body.response_format, body.logprobs)
        messages = lc.chat_messages(body.messages)
        forced = lc.forced_tool(body.tools, body.tool_config)
        self._check_structured(body.response_format, forced)
        if forced is not None:
            messages = lc.with_tool_prompt(messages, forced, body.tool_config)
        rid = app_module._request_id(request, lc.ID_PREFIX)
        req = lc.to_request(
            seed=ext.seed,
            request_id=rid,
            metadata=self._start_span(request, rid, ext.ignore_eos),
            default_max_tokens=self.server.engine.config.max_model_len,
            params=body.sampling_params,
            messages=messages,
            response_format=body.response_format,
            forced=forced,
            stream=bool(body.stream),
        )
        headers = {app_module.REQUEST_ID_HEADER: rid}
        if not body.stream:
            resp = await self.server._generate(req, chat=True)
            return _json(lc.chat_response(resp, forced), headers)
        stream, primed = await self.server._prime(req, chat=True)
        frames = _chat_frames(stream, primed, lc.ChatChunks(forced))
        return EventStreamResponse(frames, headers=headers, also_close=[stream])

    # --- batches ---------------------------------------------------------------------------------
    async def batch_completion(self, request: HttpRequest) -> Response:
        """``POST /v1/inference/batch-completion``."""
        body, ext = await _body(ls.BatchCompletionRequest, request)
        self.server._model(body.model)
        lc.check_unsupported(body.response_format, body.logprobs)
        prompts = [lc.text(c, f"content_batch.{i}") for i, c in enumerate(body.content_batch)]
        self._check_structured(body.response_format, None)
        rid = app_module._request_id(request, lc.ID_PREFIX)
        meta = self._start_span(request, rid, ext.ignore_eos)
        reqs = [
            lc.to_request(
                seed=ext.seed,
                request_id=f"{rid}-{i}",
                metadata=meta,
                default_max_tokens=self.server.engine.config.max_model_len,
                params=body.sampling_params,
                prompt=p,
                response_format=body.response_format,
            )
            for i, p in enumerate(prompts)
        ]
        resps = await self._generate_all(reqs, chat=False)
        out = ls.BatchCompletionResponse(batch=[lc.completion_response(r) for r in resps])
        return _json(out, {app_module.REQUEST_ID_HEADER: rid})

    async def batch_chat_completion(self, request: HttpRequest) -> Response:
        """``POST /v1/inference/batch-chat-completion``."""
        body, ext = await _body(ls.BatchChatCompletionRequest, request)
        self.server._model(body.model)
        lc.check_unsupported(body.response_format, body.logprobs)
        conversations = [
            lc.chat_messages(m, f"messages_batch.{i}") for i, m in enumerate(body.messages_batch)
        ]
        forced = lc.forced_tool(body.tools, body.tool_config)
        self._check_structured(body.response_format, forced)
        if forced is not None:
            conversations = [
                lc.with_tool_prompt(m, forced, body.tool_config) for m in conversations
            ]
        rid = app_module._request_id(request, lc.ID_PREFIX)
        meta = self._start_span(request, rid, ext.ignore_eos)
        reqs = [
            lc.to_request(
                seed=ext.seed,
                request_id=f"{rid}-{i}",
                metadata=meta,
                default_max_tokens=self.server.engine.config.max_model_len,
                params=body.sampling_params,
                messages=m,
                response_format=body.response_format,
                forced=forced,
            )
            for i, m in enumerate(conversations)
        ]
        resps = await self._generate_all(reqs, chat=True)
        out = ls.BatchChatCompletionResponse(batch=[lc.chat_response(r, forced) for r in resps])
        return _json(out, {app_module.REQUEST_ID_HEADER: rid})

    # --- embeddings ------------------------------------------------------------------------------
    async def embeddings(self, request: HttpRequest) -> Response:
        """``POST /v1/inference/embeddings``: validated, then refused (no embedding model)."""
        body, _ = await _body(ls.EmbeddingsRequest, request)
        name = self.server._model(body.model)
        raise lc.not_implemented(
            f"no embedding model is served: `{name}` is an llm (model_type llm); "
            "sagellm-obs serve runs one generative engine and no pooling model",
            "model_id",
        )

    async def model(self, request: HttpRequest) -> Response:
        """``GET /v1/models/{model_id}``: a served model, else a 404."""
        name = self.server._model(str(request.path_params.get("model_id", "")) or "?")
        return JSONResponse(lc.model_entry(name, self.server.created))

    # --- helpers ---------------------------------------------------------------------------------
    def _start_span(self, request: HttpRequest, rid: str, ignore_eos: bool) -> dict[str, Any]:
        """Start the HTTP span (its trace id from the request id); the engine's metadata."""
        span = app_module._http_span(request)
        span.start(trace_id_hint=rid)
        meta = span.metadata()
        if ignore_eos:
            meta["ignore_eos"] = True
        return meta

    def _check_structured(
        self, response_format: ls.ResponseFormat | None, forced: ForcedTool | None
    ) -> None:
        if forced is not None and isinstance(response_format, ls.JsonSchemaResponseFormat):
            raise APIError(
                400, "a forced tool call and a response_format cannot be combined", param="tools"
            )
        if (forced is not None or response_format is not None) and not (
            oc.structured_output_supported()
        ):
            raise lc.not_implemented(
                "forced tool calls and response formats need structured output, "
                "which this engine lacks",
                "tool_config" if forced is not None else "response_format",
            )

    async def _generate_all(self, reqs: list[Request], *, chat: bool) -> list[ProtocolResponse]:
        """Run the requests concurrently; the first failure cancels the rest and is raised."""
        tasks = [asyncio.ensure_future(self.server._generate(r, chat=chat)) for r in reqs]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # retrieve every outcome


@dataclass(frozen=True)
class _Extensions:
    """Our fields beyond llama-stack's (sent as the client's ``extra_body``)."""

    ignore_eos: bool = False
    seed: int | None = None


async def _body(
    model: type[app_module._M], request: HttpRequest
) -> tuple[app_module._M, _Extensions]:
    """The parsed body, and our extensions."""
    raw = await app_module._json_body(request)
    body = app_module._parse(model, raw)
    seed = raw.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise APIError(400, "seed must be an integer", param="seed")
    return body, _Extensions(ignore_eos=raw.get("ignore_eos") is True, seed=seed)


def _json(payload: BaseModel, headers: dict[str, str]) -> Response:
    return Response(payload.model_dump_json(), media_type="application/json", headers=headers)


def _error_frame(end: StreamEventEnd) -> bytes:
    return frame(from_protocol_error(end.error).body())


async def _completion_frames(
    stream: AsyncIterator[StreamEvent], primed: list[StreamEvent]
) -> AsyncIterator[bytes]:
    """``CompletionResponseStreamChunk`` frames: one per output, then the stop reason."""
    try:
        async for event in app_module._events(stream, primed):
            if isinstance(event, StreamEventDelta) and event.content:
                yield frame(ls.CompletionResponseStreamChunk(delta=event.content).model_dump_json())
            elif isinstance(event, StreamEventEnd):
                if event.finish_reason == "error":
                    yield _error_frame(event)
                    break
                last = ls.CompletionResponseStreamChunk(
                    delta="",
                    stop_reason=lc.stop_reason(event.finish_reason),
                    metrics=lc.metrics(
                        event.prompt_tokens, len(event.output_tokens), event.metrics
                    ),
                )
                yield frame(last.model_dump_json())
    finally:
        await app_module._aclose(stream)


async def _chat_frames(
    stream: AsyncIterator[StreamEvent], primed: list[StreamEvent], chunks: lc.ChatChunks
) -> AsyncIterator[bytes]:
    """``ChatCompletionResponseStreamChunk`` frames: start, progress..., complete."""
    try:
        for chunk in chunks.start():
            yield frame(chunk.model_dump_json())
        async for event in app_module._events(stream, primed):
            if isinstance(event, StreamEventDelta):
                for chunk in chunks.progress(event.content):
                    yield frame(chunk.model_dump_json())
            elif isinstance(event, StreamEventEnd):
                if event.finish_reason == "error":
                    yield _error_frame(event)
                    break
                m = lc.metrics(event.prompt_tokens, len(event.output_tokens), event.metrics)
                for chunk in chunks.complete(event.finish_reason, m):
                    yield frame(chunk.model_dump_json())
    finally:
        await app_module._aclose(stream)
