"""llama-stack Inference API types, wire-compatible with ``llama-stack`` 0.2.12.

Our own pydantic v2 copies of the field set (names, types, defaults) of llama-stack 0.2.x, the last
release line that serves ``/v1/inference/*`` (later ones serve OpenAI-compatible routes only), so
JSON written by either side parses on the other. Sources, in ``meta-llama/llama-stack`` v0.2.12:

* ``llama_stack/apis/inference/inference.py``: sampling, messages, tool config, response formats,
  log probs, requests, responses, stream chunks and events, and the routes' parameter lists
  (``BatchCompletionRequest``/``BatchChatCompletionRequest``/``EmbeddingsRequest`` are those
  parameter lists as models: 0.2.x has no classes for them);
* ``llama_stack/apis/common/content_types.py``: interleaved content and stream deltas;
* ``llama_stack/models/llama/datatypes.py``: ``ToolCall``, ``ToolDefinition``, ``StopReason``...;
* ``llama_stack/apis/telemetry/telemetry.py``: ``MetricInResponse``/``MetricResponseMixin``;
* ``llama_stack/apis/models/models.py`` and ``apis/resource.py``: ``Model``.

Differences, all JSON-neutral: request ``model`` also accepts the routes' ``model_id`` (and
``tools`` the draft spec's ``available_tools``); a chat request folds the deprecated top-level
``tool_choice``/``tool_prompt_format`` into ``tool_config`` as llama-stack's router does;
``tool_name`` is a plain string (llama-stack turns builtin names into its ``BuiltinTool`` enum).
Standard library and pydantic only.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator

from sagellm_obs.protocol.llama_stack_common import (
    URL,
    ContentDelta,
    ImageContentItem,
    ImageDelta,
    InterleavedContent,
    InterleavedContentItem,
    MetricInResponse,
    MetricResponseMixin,
    Primitive,
    RecursiveType,
    StopReason,
    TextContentItem,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallParseStatus,
    ToolDefinition,
    ToolParamDefinition,
    ToolPromptFormat,
    content_text,
)

__all__ = [
    "LLAMA_STACK_VERSION",
    "METRIC_CACHED_TOKENS",
    "METRIC_COMPLETION_TOKENS",
    "METRIC_DECODE_TIME",
    "METRIC_PREFILL_TIME",
    "METRIC_PROMPT_TOKENS",
    "METRIC_QUEUE_TIME",
    "METRIC_REQUEST_DURATION",
    "METRIC_TIME_PER_OUTPUT_TOKEN",
    "METRIC_TIME_TO_FIRST_TOKEN",
    "METRIC_TOTAL_TOKENS",
    "URL",
    "BatchChatCompletionRequest",
    "BatchChatCompletionResponse",
    "BatchCompletionRequest",
    "BatchCompletionResponse",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatCompletionResponseEvent",
    "ChatCompletionResponseEventType",
    "ChatCompletionResponseStreamChunk",
    "CompletionMessage",
    "CompletionRequest",
    "CompletionResponse",
    "CompletionResponseStreamChunk",
    "ContentDelta",
    "EmbeddingTaskType",
    "EmbeddingsRequest",
    "EmbeddingsResponse",
    "GrammarResponseFormat",
    "GreedySamplingStrategy",
    "ImageContentItem",
    "ImageDelta",
    "InterleavedContent",
    "InterleavedContentItem",
    "JsonSchemaResponseFormat",
    "LogProbConfig",
    "Message",
    "MetricInResponse",
    "MetricResponseMixin",
    "Model",
    "ModelType",
    "Primitive",
    "RecursiveType",
    "ResponseFormat",
    "SamplingParams",
    "SamplingStrategy",
    "StopReason",
    "SystemMessage",
    "SystemMessageBehavior",
    "TextContentItem",
    "TextDelta",
    "TextTruncation",
    "TokenLogProbs",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallParseStatus",
    "ToolChoice",
    "ToolConfig",
    "ToolDefinition",
    "ToolParamDefinition",
    "ToolPromptFormat",
    "ToolResponseMessage",
    "TopKSamplingStrategy",
    "TopPSamplingStrategy",
    "UserMessage",
    "content_text",
]

LLAMA_STACK_VERSION = "0.2.12"
"""The llama-stack release whose wire format these types follow."""

# --- metric names in MetricResponseMixin.metrics --------------------------------------------------
METRIC_PROMPT_TOKENS = "prompt_tokens"
"""llama-stack's own name (its router emits the three token counts)."""
METRIC_COMPLETION_TOKENS = "completion_tokens"
METRIC_TOTAL_TOKENS = "total_tokens"
METRIC_CACHED_TOKENS = "cached_tokens"
"""Ours: prompt tokens served from the prefix cache (unit ``tokens``)."""
METRIC_TIME_TO_FIRST_TOKEN = "time_to_first_token"
"""Ours, unit ``ms``: arrival to first token (the protocol ``Metrics.ttft_ms``)."""
METRIC_QUEUE_TIME = "queue_time"
"""Ours, unit ``ms``: arrival to first scheduling (protocol ``scheduled_at - queued_at``; the
engine's ``queue`` span is EngineCore's share of it, after the frontend's tokenisation)."""
METRIC_PREFILL_TIME = "prefill_time"
"""Ours, unit ``ms``: first scheduling to first token."""
METRIC_DECODE_TIME = "decode_time"
"""Ours, unit ``ms``: first to last token."""
METRIC_TIME_PER_OUTPUT_TOKEN = "time_per_output_token"
"""Ours, unit ``ms``: decode time / (output tokens - 1)."""
METRIC_REQUEST_DURATION = "request_duration"
"""Ours, unit ``ms``: arrival to completion (E2E)."""


# --- apis/inference/inference.py ------------------------------------------------------------------
class GreedySamplingStrategy(BaseModel):
    """Always the most likely token."""

    type: Literal["greedy"] = "greedy"


class TopPSamplingStrategy(BaseModel):
    """Nucleus sampling (``temperature`` is required, > 0)."""

    type: Literal["top_p"] = "top_p"
    temperature: float | None = Field(..., gt=0.0)
    top_p: float | None = 0.95


class TopKSamplingStrategy(BaseModel):
    """Sampling among the ``top_k`` most likely tokens."""

    type: Literal["top_k"] = "top_k"
    top_k: int = Field(..., ge=1)


SamplingStrategy = Annotated[
    GreedySamplingStrategy | TopPSamplingStrategy | TopKSamplingStrategy,
    Field(discriminator="type"),
]


class SamplingParams(BaseModel):
    """Sampling parameters; ``max_tokens`` 0 (the default) means no limit but the context."""

    strategy: SamplingStrategy = Field(default_factory=GreedySamplingStrategy)
    max_tokens: int | None = 0
    repetition_penalty: float | None = 1.0
    stop: list[str] | None = None


class LogProbConfig(BaseModel):
    """How many tokens per position to return log probabilities for."""

    top_k: int | None = 0


class UserMessage(BaseModel):
    """A user message (``context`` is llama-stack's RAG context)."""

    role: Literal["user"] = "user"
    content: InterleavedContent
    context: InterleavedContent | None = None


class SystemMessage(BaseModel):
    """A system message."""

    role: Literal["system"] = "system"
    content: InterleavedContent


class ToolResponseMessage(BaseModel):
    """The result of a tool call (``call_id`` names the call)."""

    role: Literal["tool"] = "tool"
    call_id: str
    content: InterleavedContent


class CompletionMessage(BaseModel):
    """The assistant's message."""

    role: Literal["assistant"] = "assistant"
    content: InterleavedContent
    stop_reason: StopReason
    tool_calls: list[ToolCall] | None = Field(default_factory=list)


Message = Annotated[
    UserMessage | SystemMessage | ToolResponseMessage | CompletionMessage,
    Field(discriminator="role"),
]


class ToolChoice(str, Enum):
    """Whether the model must (``required``), may (``auto``) or must not (``none``) call tools."""

    auto = "auto"
    required = "required"
    none = "none"


class TokenLogProbs(BaseModel):
    """Log probabilities of the top tokens at one position."""

    logprobs_by_token: dict[str, float]


class ChatCompletionResponseEventType(str, Enum):
    """``start``, then ``progress`` events, then ``complete``."""

    start = "start"
    complete = "complete"
    progress = "progress"


class ChatCompletionResponseEvent(BaseModel):
    """One event of a streamed chat completion."""

    event_type: ChatCompletionResponseEventType
    delta: ContentDelta
    logprobs: list[TokenLogProbs] | None = None
    stop_reason: StopReason | None = None


class JsonSchemaResponseFormat(BaseModel):
    """Constrain the output to a JSON schema."""

    type: Literal["json_schema"] = "json_schema"
    json_schema: dict[str, Any]


class GrammarResponseFormat(BaseModel):
    """Constrain the output to a BNF grammar."""

    type: Literal["grammar"] = "grammar"
    bnf: dict[str, Any]


ResponseFormat = Annotated[
    JsonSchemaResponseFormat | GrammarResponseFormat, Field(discriminator="type")
]


class SystemMessageBehavior(Enum):
    """Whether the system message is appended to or replaces the default tool prompt.

    A plain ``Enum`` (``replace`` would shadow ``str.replace``).
    """

    append = "append"
    replace = "replace"


class ToolConfig(BaseModel):
    """Tool use: ``tool_choice`` is a :class:`ToolChoice` or the name of a tool to call."""

    tool_choice: ToolChoice | str | None = Field(default=ToolChoice.auto)
    tool_prompt_format: ToolPromptFormat | None = Field(default=None)
    system_message_behavior: SystemMessageBehavior | None = Field(
        default=SystemMessageBehavior.append
    )

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _choice(cls, value: Any) -> Any:
        # llama-stack maps member names to the enum and keeps other strings as tool names
        if isinstance(value, str) and value in ToolChoice.__members__:
            return ToolChoice[value]
        return value


def _model_field() -> Any:
    """``model``, also read from the routes' ``model_id``."""
    return Field(validation_alias=AliasChoices("model", "model_id"))


class CompletionRequest(BaseModel):
    """``POST /v1/inference/completion`` (the route sends ``model_id``, the class ``model``)."""

    model: str = _model_field()
    content: InterleavedContent
    sampling_params: SamplingParams | None = Field(default_factory=SamplingParams)
    response_format: ResponseFormat | None = None
    stream: bool | None = False
    logprobs: LogProbConfig | None = None


class CompletionResponse(MetricResponseMixin):
    """A completion."""

    content: str
    stop_reason: StopReason
    logprobs: list[TokenLogProbs] | None = None


class CompletionResponseStreamChunk(MetricResponseMixin):
    """One chunk of a streamed completion; the last has ``stop_reason`` (and the metrics)."""

    delta: str
    stop_reason: StopReason | None = None
    logprobs: list[TokenLogProbs] | None = None


class ChatCompletionRequest(BaseModel):
    """``POST /v1/inference/chat-completion``.

    The route's deprecated top-level ``tool_choice``/``tool_prompt_format`` are folded into
    ``tool_config``; given in both places they must agree (llama-stack's router rule).
    """

    model: str = _model_field()
    messages: list[Message]
    sampling_params: SamplingParams | None = Field(default_factory=SamplingParams)
    tools: list[ToolDefinition] | None = Field(
        default_factory=list, validation_alias=AliasChoices("tools", "available_tools")
    )
    tool_config: ToolConfig | None = Field(default_factory=ToolConfig)
    response_format: ResponseFormat | None = None
    stream: bool | None = False
    logprobs: LogProbConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _fold_tool_params(cls, data: Any) -> Any:
        return _fold_tool_params(data)


class ChatCompletionResponseStreamChunk(MetricResponseMixin):
    """One chunk of a streamed chat completion."""

    event: ChatCompletionResponseEvent


class ChatCompletionResponse(MetricResponseMixin):
    """A chat completion."""

    completion_message: CompletionMessage
    logprobs: list[TokenLogProbs] | None = None


class BatchCompletionRequest(BaseModel):
    """``POST /v1/inference/batch-completion`` (the parameters of ``batch_completion``)."""

    model: str = _model_field()
    content_batch: list[InterleavedContent] = Field(min_length=1)
    sampling_params: SamplingParams | None = None
    response_format: ResponseFormat | None = None
    logprobs: LogProbConfig | None = None


class BatchChatCompletionRequest(BaseModel):
    """``POST /v1/inference/batch-chat-completion`` (``batch_chat_completion``'s parameters)."""

    model: str = _model_field()
    messages_batch: list[list[Message]] = Field(min_length=1)
    sampling_params: SamplingParams | None = None
    tools: list[ToolDefinition] | None = Field(
        default=None, validation_alias=AliasChoices("tools", "available_tools")
    )
    tool_config: ToolConfig | None = None
    response_format: ResponseFormat | None = None
    logprobs: LogProbConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _fold_tool_params(cls, data: Any) -> Any:
        return _fold_tool_params(data)


class BatchCompletionResponse(BaseModel):
    """The completions of a batch, in request order."""

    batch: list[CompletionResponse]


class BatchChatCompletionResponse(BaseModel):
    """The chat completions of a batch, in request order."""

    batch: list[ChatCompletionResponse]


class TextTruncation(str, Enum):
    """How over-long embedding inputs are cut."""

    none = "none"
    start = "start"
    end = "end"


class EmbeddingTaskType(str, Enum):
    """What an embedding is for (asymmetric models)."""

    query = "query"
    document = "document"


class EmbeddingsRequest(BaseModel):
    """``POST /v1/inference/embeddings`` (the parameters of ``embeddings``)."""

    model: str = _model_field()
    contents: list[str] | list[InterleavedContentItem]
    text_truncation: TextTruncation | None = TextTruncation.none
    output_dimension: int | None = None
    task_type: EmbeddingTaskType | None = None


class EmbeddingsResponse(BaseModel):
    """One embedding per input."""

    embeddings: list[list[float]]


# --- apis/models/models.py, apis/resource.py ------------------------------------------------------
class ModelType(str, Enum):
    """What a model serves."""

    llm = "llm"
    embedding = "embedding"


class Model(BaseModel):
    """A ``GET /v1/models`` entry as llama-stack lists it."""

    identifier: str
    provider_resource_id: str | None = None
    provider_id: str
    type: Literal["model"] = "model"
    metadata: dict[str, Any] = Field(default_factory=dict)
    model_type: ModelType = ModelType.llm


def _fold_tool_params(data: Any) -> Any:
    """Top-level ``tool_choice``/``tool_prompt_format`` into ``tool_config``.

    Raises:
        ValueError: They disagree with ``tool_config``.
    """
    if not isinstance(data, dict) or not ({"tool_choice", "tool_prompt_format"} & data.keys()):
        return data
    data = dict(data)
    given = {k: data.pop(k) for k in ("tool_choice", "tool_prompt_format") if k in data}
    given = {k: v for k, v in given.items() if v is not None}
    config = data.get("tool_config")
    if config is None:
        if given:
            data["tool_config"] = given
        return data
    if isinstance(config, BaseModel):
        config = config.model_dump(mode="json")
    if isinstance(config, dict):
        for key, value in given.items():
            have = config.get(key, ToolChoice.auto.value if key == "tool_choice" else None)
            have = have.value if isinstance(have, Enum) else have
            value = value.value if isinstance(value, Enum) else value
            if have != value:
                raise ValueError(f"{key} and tool_config.{key} must match")
    return data
