"""JSON Schemas of the public protocol types, for documentation and for non-Python peers."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from sagellm_obs.protocol import kv_hooks as kvh
from sagellm_obs.protocol import openai_types as oai
from sagellm_obs.protocol.errors import Error
from sagellm_obs.protocol.sampling import SamplingParams
from sagellm_obs.protocol.types import (
    STREAM_EVENT_ADAPTER,
    Metrics,
    Request,
    Response,
    StreamEventDelta,
    StreamEventEnd,
    StreamEventStart,
    Timestamps,
)

__all__ = ["SCHEMA_MODELS", "json_schemas", "schema_json"]

SCHEMA_MODELS: tuple[type[BaseModel], ...] = (
    Request,
    Response,
    Metrics,
    Timestamps,
    StreamEventStart,
    StreamEventDelta,
    StreamEventEnd,
    Error,
    SamplingParams,
    kvh.KVAllocateParams,
    kvh.KVHandle,
    kvh.KVMigrateParams,
    kvh.KVFreeParams,
    kvh.KVEvictParams,
    kvh.KVPrefetchParams,
    kvh.KVQoSPolicy,
    kvh.KVHookPayload,
    oai.ChatMessage,
    oai.ChatCompletionRequest,
    oai.ChatCompletionChoice,
    oai.ChatCompletionUsage,
    oai.ChatCompletionResponse,
    oai.ChatCompletionStreamDelta,
    oai.ChatCompletionStreamChoice,
    oai.ChatCompletionStreamResponse,
    oai.CompletionRequest,
    oai.CompletionChoice,
    oai.CompletionUsage,
    oai.CompletionResponse,
    oai.EmbeddingRequest,
    oai.EmbeddingData,
    oai.EmbeddingUsage,
    oai.EmbeddingResponse,
    oai.ModelInfo,
    oai.ModelListResponse,
    oai.OpenAIError,
    oai.OpenAIErrorResponse,
)
"""Models whose schemas :func:`json_schemas` returns (plus the ``StreamEvent`` union)."""


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas (draft 2020-12, validation mode) of every public protocol type.

    Returns:
        A fresh mapping from type name (``"Request"``, ``"StreamEvent"``...) to its schema.
        ``"StreamEvent"`` is the discriminated union of the three stream events.
    """
    schemas = {model.__name__: model.model_json_schema() for model in SCHEMA_MODELS}
    schemas["StreamEvent"] = STREAM_EVENT_ADAPTER.json_schema()
    return schemas


def schema_json(name: str | None = None, *, indent: int | None = 2) -> str:
    """One schema, or all of them keyed by name, as a JSON document.

    Args:
        name: Type name such as ``"Request"``; ``None`` for all schemas.
        indent: JSON indentation.

    Returns:
        The JSON text.

    Raises:
        KeyError: Unknown ``name``.
    """
    schemas = json_schemas()
    if name is None:
        return json.dumps(schemas, indent=indent)
    if name not in schemas:
        raise KeyError(f"unknown protocol type {name!r}; known: {', '.join(sorted(schemas))}")
    return json.dumps(schemas[name], indent=indent)
