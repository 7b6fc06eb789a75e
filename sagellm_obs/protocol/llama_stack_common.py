"""llama-stack 0.2.12 types shared by its APIs: tool calls and definitions, interleaved content,
stream deltas and the metrics a response carries. Re-exported by
:mod:`sagellm_obs.protocol.llama_stack`, whose docstring names the sources and the differences.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator


# --- models/llama/datatypes.py --------------------------------------------------------------------
class StopReason(str, Enum):
    """Why generation stopped (``end_of_message``: a tool call the caller should run)."""

    end_of_turn = "end_of_turn"
    end_of_message = "end_of_message"
    out_of_tokens = "out_of_tokens"


class ToolPromptFormat(str, Enum):
    """How tool calls are written in the prompt: ``json``, ``function_tag`` or ``python_list``."""

    json = "json"
    function_tag = "function_tag"
    python_list = "python_list"


Primitive = str | int | float | bool | None
RecursiveType = Primitive | list[Primitive] | dict[str, Primitive]


class ToolCall(BaseModel):
    """A tool call: ``arguments`` as a dict (or a string), ``arguments_json`` as JSON text."""

    call_id: str
    tool_name: str
    arguments: str | dict[str, RecursiveType]
    arguments_json: str | None = None


class ToolParamDefinition(BaseModel):
    """One parameter of a custom tool (``param_type`` is a type name such as ``string``)."""

    param_type: str
    description: str | None = None
    required: bool | None = True
    default: Any | None = None


class ToolDefinition(BaseModel):
    """A tool the model may call; ``parameters`` maps parameter names to their definitions."""

    tool_name: str
    description: str | None = None
    parameters: dict[str, ToolParamDefinition] | None = None


# --- apis/common/content_types.py -----------------------------------------------------------------
class URL(BaseModel):
    """A URL."""

    uri: str


class _URLOrData(BaseModel):
    """A URL or base64 data (a bare value means a URL, as in llama-stack)."""

    url: URL | None = None
    data: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_url(cls, values: Any) -> Any:
        return values if isinstance(values, dict) else {"url": values}


class ImageContentItem(BaseModel):
    """An image content item."""

    type: Literal["image"] = "image"
    image: _URLOrData


class TextContentItem(BaseModel):
    """A text content item."""

    type: Literal["text"] = "text"
    text: str


InterleavedContentItem = Annotated[ImageContentItem | TextContentItem, Field(discriminator="type")]
InterleavedContent = str | InterleavedContentItem | list[InterleavedContentItem]


def content_text(content: InterleavedContent) -> str | None:
    """The text of ``content``; None when it holds an image (text-only engines cannot take it)."""
    if isinstance(content, str):
        return content
    items = content if isinstance(content, list) else [content]
    texts: list[str] = []
    for item in items:
        if not isinstance(item, TextContentItem):
            return None
        texts.append(item.text)
    return "".join(texts)


class TextDelta(BaseModel):
    """Text generated since the previous event."""

    type: Literal["text"] = "text"
    text: str


class ImageDelta(BaseModel):
    """An image generated since the previous event."""

    type: Literal["image"] = "image"
    image: bytes


class ToolCallParseStatus(str, Enum):
    """Where a streamed tool call stands."""

    started = "started"
    in_progress = "in_progress"
    failed = "failed"
    succeeded = "succeeded"


class ToolCallDelta(BaseModel):
    """A tool call fragment (a string) while it streams, the parsed call once it succeeded."""

    type: Literal["tool_call"] = "tool_call"
    tool_call: str | ToolCall
    parse_status: ToolCallParseStatus


ContentDelta = Annotated[TextDelta | ImageDelta | ToolCallDelta, Field(discriminator="type")]


# --- apis/telemetry/telemetry.py ------------------------------------------------------------------
class MetricInResponse(BaseModel):
    """One entry of a response's ``metrics`` list."""

    metric: str
    value: int | float
    unit: str | None = None


class MetricResponseMixin(BaseModel):
    """Responses that carry ``metrics`` (llama-stack's router adds the token counts)."""

    metrics: list[MetricInResponse] | None = None

    def metric(self, name: str) -> int | float | None:
        """The value of metric ``name``, if present."""
        return next((m.value for m in self.metrics or () if m.metric == name), None)
