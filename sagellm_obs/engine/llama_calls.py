"""The llama-stack style calls of :class:`~sagellm_obs.engine.InstrumentedEngine`: completion and
chat completion, single or batched, as thin builders of protocol ``Request`` s over its
``generate``, ``stream`` and ``generate_batch``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from sagellm_obs.protocol import ChatMessage, Request, Response, StreamEvent, validate


class _Engine(Protocol):
    async def generate(self, request: Request | dict[str, Any]) -> Response: ...

    def stream(self, request: Request | dict[str, Any]) -> AsyncIterator[StreamEvent]: ...

    async def generate_batch(
        self, requests: Sequence[Request | dict[str, Any]]
    ) -> list[Response]: ...


class LlamaStackCalls:
    """Mixed into the engine: each call builds its ``Request`` (a fresh id unless given)."""

    async def completion(
        self: _Engine, content: str, *, max_tokens: int = 64, stream: bool = False, **params: Any
    ) -> Response | AsyncIterator[StreamEvent]:
        """Text completion of ``content``; ``params`` are further ``Request`` fields."""
        req = _new_request(prompt=content, max_tokens=max_tokens, stream=stream, **params)
        return self.stream(req) if stream else await self.generate(req)

    async def chat_completion(
        self: _Engine,
        messages: Sequence[ChatMessage | dict[str, Any]],
        *,
        max_tokens: int = 64,
        stream: bool = False,
        **params: Any,
    ) -> Response | AsyncIterator[StreamEvent]:
        """Chat completion over ``messages`` (the model's chat template is applied)."""
        req = _new_request(messages=list(messages), max_tokens=max_tokens, stream=stream, **params)
        return self.stream(req) if stream else await self.generate(req)

    async def batch_completion(
        self: _Engine, contents: Sequence[str], *, max_tokens: int = 64, **params: Any
    ) -> list[Response]:
        """Completions of several prompts, run concurrently."""
        reqs = [_new_request(prompt=c, max_tokens=max_tokens, **params) for c in contents]
        return await self.generate_batch(reqs)

    async def batch_chat_completion(
        self: _Engine,
        conversations: Sequence[Sequence[ChatMessage | dict[str, Any]]],
        *,
        max_tokens: int = 64,
        **params: Any,
    ) -> list[Response]:
        """Chat completions of several conversations, run concurrently."""
        reqs = [
            _new_request(messages=list(m), max_tokens=max_tokens, **params) for m in conversations
        ]
        return await self.generate_batch(reqs)


def _new_request(**fields: Any) -> Request:
    rid = fields.pop("request_id", None) or f"req-{uuid.uuid4().hex[:12]}"
    fields.setdefault("trace_id", rid)
    return validate(Request, {"request_id": rid, **fields})
