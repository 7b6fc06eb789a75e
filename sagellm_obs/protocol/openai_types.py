"""OpenAI-compatible request/response types used by the sageLLM gateway.

Same fields and defaults as sageLLM's ``openai_types``. Unknown fields (``tools``, ``logprobs``,
``stream_options``...) are silently ignored, as with every protocol model. ``trace_id`` and
``session_id`` are sageLLM extensions. ``created`` fields default to the current Unix time in whole
seconds (wall clock).
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "ChatCompletionChoice",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatCompletionStreamChoice",
    "ChatCompletionStreamDelta",
    "ChatCompletionStreamResponse",
    "ChatCompletionUsage",
    "ChatMessage",
    "CompletionChoice",
    "CompletionRequest",
    "CompletionResponse",
    "CompletionUsage",
    "EmbeddingData",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "EmbeddingUsage",
    "ModelInfo",
    "ModelListResponse",
    "OpenAIError",
    "OpenAIErrorResponse",
]

ChatFinishReason = Literal["stop", "length", "content_filter", "tool_calls"]
CompletionFinishReason = Literal["stop", "length", "content_filter"]


def _now_s() -> int:
    """Current Unix time, whole seconds (wall clock)."""
    return int(time.time())


class ChatMessage(BaseModel):
    """One chat message; ``content`` is a plain string (no content parts, never null)."""

    role: Literal["system", "user", "assistant", "function", "tool"]
    content: str
    name: str | None = None


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions`` body (the subset sageLLM understands)."""

    model: str
    messages: list[ChatMessage]
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    max_tokens: int | None = None
    stream: bool = False
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = 1
    stop: str | list[str] | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    user: str | None = None
    session_id: str | None = None
    trace_id: str | None = None


class ChatCompletionChoice(BaseModel):
    """One choice of a chat completion; ``finish_reason`` must be present but may be null."""

    index: int
    message: ChatMessage
    finish_reason: ChatFinishReason | None


class ChatCompletionUsage(BaseModel):
    """Token counts of a chat completion."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionResponse(BaseModel):
    """Non-streamed chat completion; ``trace_id`` is a sageLLM extension."""

    id: str
    object: str = "chat.completion"
    created: int = Field(default_factory=_now_s)
    model: str
    choices: list[ChatCompletionChoice]
    usage: ChatCompletionUsage
    trace_id: str | None = None


class ChatCompletionStreamDelta(BaseModel):
    """Incremental message content of a streamed chunk."""

    role: str | None = None
    content: str | None = None


class ChatCompletionStreamChoice(BaseModel):
    """One choice of a streamed chunk."""

    index: int
    delta: ChatCompletionStreamDelta
    finish_reason: ChatFinishReason | None = None


class ChatCompletionStreamResponse(BaseModel):
    """One SSE chunk of a streamed chat completion (no ``usage`` and no ``trace_id``)."""

    id: str
    object: str = "chat.completion.chunk"
    created: int = Field(default_factory=_now_s)
    model: str
    choices: list[ChatCompletionStreamChoice]


class CompletionRequest(BaseModel):
    """``POST /v1/completions`` body; ``prompt`` is a single string."""

    model: str
    prompt: str
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    max_tokens: int | None = None
    stream: bool = False
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = 1
    stop: str | list[str] | None = None
    user: str | None = None
    trace_id: str | None = None


class CompletionChoice(BaseModel):
    """One choice of a text completion."""

    index: int
    text: str
    finish_reason: CompletionFinishReason | None


class CompletionUsage(BaseModel):
    """Token counts of a text completion."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionResponse(BaseModel):
    """Text completion response; ``trace_id`` is a sageLLM extension."""

    id: str
    object: str = "text_completion"
    created: int = Field(default_factory=_now_s)
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage
    trace_id: str | None = None


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings`` body."""

    input: str | list[str]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class EmbeddingData(BaseModel):
    """One embedding vector."""

    object: str = "embedding"
    embedding: list[float]
    index: int


class EmbeddingUsage(BaseModel):
    """Token counts of an embedding request."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    """Embedding response."""

    object: str = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class ModelInfo(BaseModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: str = "model"
    created: int = Field(default_factory=_now_s)
    owned_by: str = "sagellm"


class ModelListResponse(BaseModel):
    """``GET /v1/models`` response."""

    object: str = "list"
    data: list[ModelInfo]


class OpenAIError(BaseModel):
    """OpenAI-style error body."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    """OpenAI-style error envelope: ``{"error": {...}}``."""

    error: OpenAIError
