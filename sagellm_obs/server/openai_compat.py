"""OpenAI request bodies in, protocol ``Request``s out; protocol results back to OpenAI JSON.

The request models accept what OpenAI clients send (``max_completion_tokens``, content parts,
``stream_options``, ``seed``, ``user``...) and ignore fields they do not know, as
OpenAI-compatible servers do. Two extensions ride along in the body (``extra_body`` of the
``openai`` client): ``trace_id`` (the protocol trace id) and ``ignore_eos`` (fixed-length outputs
for benchmarks).

Tool calls: chat bodies take ``tools`` and ``tool_choice``. A forced call (a named function, or
``"required"``) is generated under a JSON-schema constraint carried as
``Request.metadata["structured_output"]`` (see :mod:`sagellm_obs.protocol.toolcalls`) and
returned as
``message.tool_calls`` (streamed: ``delta.tool_calls`` fragments) with finish reason
``tool_calls``; ``"auto"``/``"none"`` answer with text (free-text calls are not parsed).

Responses are plain dicts in OpenAI's shape, with ``usage.prompt_tokens_details.cached_tokens``
from the engine's prefix-cache hits and, when asked for, a ``metrics`` object: vLLM's
per-request timings (:func:`vllm_request_metrics`, the server's ``per_request_metrics`` option as
``vllm serve --enable-per-request-metrics``) and, with the ``X-Sagellm-Metrics`` header, ours.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from sagellm_obs.protocol import (
    ChatMessage,
    FinishReason,
    Metrics,
    Request,
    Response,
    SamplingParams,
    default_trace_id,
    validate,
)
from sagellm_obs.protocol.toolcalls import ForcedTool, ToolSpec, forced_tool

CHAT_ID_PREFIX = "chatcmpl-"
COMPLETION_ID_PREFIX = "cmpl-"
DEFAULT_COMPLETION_MAX_TOKENS = 16
"""OpenAI's default ``max_tokens`` of ``/v1/completions``."""
STRUCTURED_OUTPUT_KEY = "structured_output"
"""``Request.metadata`` key of a vLLM structured-output constraint (``{"json": schema}``)."""


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a final chunk with the token usage."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class _Common(BaseModel):
    """Fields shared by completions and chat completions."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1)
    n: int = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    trace_id: str | None = Field(default=None, min_length=1)
    ignore_eos: bool = False

    @field_validator("n")
    @classmethod
    def _only_one(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported")
        return value

    @property
    def include_usage(self) -> bool:
        """Whether a streamed response ends with a usage chunk."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class OpenAIChatMessage(BaseModel):
    """A chat message; ``content`` may be a string, a list of text parts, or null."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str = ""
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            texts: list[str] = []
            for part in value:
                if not isinstance(part, dict) or part.get("type") != "text":
                    raise ValueError("only text content parts are supported")
                text = part.get("text")
                if not isinstance(text, str):
                    raise ValueError("a text content part needs a string 'text'")
                texts.append(text)
            return "".join(texts)
        raise ValueError("content must be a string or a list of text parts")

    def to_protocol(self) -> ChatMessage:
        """The protocol message (``developer`` is a ``system`` message there)."""
        role = "system" if self.role == "developer" else self.role
        content = self.content
        if not content and self.tool_calls:  # an assistant turn that called tools, as text
            fns = [c.get("function") or {} for c in self.tool_calls]
            calls = [{"name": f.get("name"), "arguments": f.get("arguments")} for f in fns]
            content = json.dumps(calls)
        return ChatMessage(role=role, content=content, name=self.name)


class ChatBody(_Common):
    """``POST /v1/chat/completions``."""

    messages: list[OpenAIChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("tools")
    @classmethod
    def _function_tools(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for tool in value or ():
            ToolSpec.from_openai(tool)  # ValueError names the problem
        return value

    @field_validator("tool_choice")
    @classmethod
    def _known_choice(cls, value: Any, info: ValidationInfo) -> Any:
        forced_tool(info.data.get("tools"), value)  # ValueError names the problem
        return value

    def forced_tool(self) -> ForcedTool | None:
        """The tool call this body forces (a named function, or ``"required"``), if any."""
        return forced_tool(self.tools, self.tool_choice)


class CompletionBody(_Common):
    """``POST /v1/completions``; ``prompt`` is one string (or a list holding one string)."""

    prompt: str

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, value: Any) -> Any:
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("exactly one prompt per request is supported")
            value = value[0]
        if not isinstance(value, str):
            raise ValueError("prompt must be a string (token-id prompts are not supported)")
        return value


def to_request(
    body: ChatBody | CompletionBody,
    *,
    request_id: str,
    metadata: dict[str, Any],
    default_max_tokens: int,
) -> Request:
    """The protocol request for an OpenAI body.

    The protocol trace id is the body's ``trace_id``; without one, the W3C trace id of the
    request's trace (``metadata``'s traceparent: the ``X-Trace-Id`` header), else the request
    id. ``metadata`` (trace context) is extended with ``ignore_eos``.

    Raises:
        ProtocolValidationError: The mapped request is invalid.
    """
    fields: dict[str, Any] = {
        "request_id": request_id,
        "trace_id": body.trace_id or default_trace_id(metadata, request_id),
        "model": body.model or "",
        "stream": body.stream,
    }
    meta = dict(metadata)
    if isinstance(body, ChatBody):
        messages = [m.to_protocol() for m in body.messages]
        forced = body.forced_tool()
        if forced is not None:
            messages = _with_tool_instructions(messages, forced)
            meta[STRUCTURED_OUTPUT_KEY] = {"json": forced.schema}
        fields["messages"] = messages
        max_tokens = body.max_completion_tokens or body.max_tokens
    else:
        fields["prompt"] = body.prompt
        max_tokens = body.max_tokens
    fields["max_tokens"] = max_tokens or default_max_tokens
    if body.ignore_eos:
        meta["ignore_eos"] = True
    fields["metadata"] = meta
    sampling = _sampling_params(body)
    if sampling is not None:
        fields["sampling_params"] = sampling
    else:
        fields["temperature"] = body.temperature
        fields["top_p"] = body.top_p
    req: Request = validate(Request, fields)
    return req


def _with_tool_instructions(messages: list[ChatMessage], forced: ForcedTool) -> list[ChatMessage]:
    """The messages with the forced functions described in the (first) system message."""
    text = forced.system_prompt()
    if messages and messages[0].role == "system":
        first = messages[0]
        merged = f"{first.content}\n\n{text}" if first.content else text
        return [first.model_copy(update={"content": merged}), *messages[1:]]
    return [ChatMessage(role="system", content=text), *messages]


def structured_output_supported() -> bool:
    """Whether the engine maps ``metadata["structured_output"]`` onto vLLM (a feature check)."""
    from sagellm_obs.engine import convert

    probe = Request(
        request_id="probe",
        trace_id="probe",
        prompt="x",
        max_tokens=1,
        metadata={STRUCTURED_OUTPUT_KEY: {"json": {"type": "object"}}},
    )
    try:
        return "structured_outputs" in convert.sampling_kwargs(probe)
    except Exception:
        return False


def _sampling_params(body: _Common) -> SamplingParams | None:
    """Full protocol sampling parameters when the plain temperature/top_p fields do not suffice."""
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    extra = (body.seed, body.top_k, body.presence_penalty, body.frequency_penalty)
    if not stop and all(v is None for v in extra):
        return None
    kw: dict[str, Any] = {}
    if body.temperature is not None:
        kw["temperature"] = body.temperature
    if body.top_p is not None:
        kw["top_p"] = body.top_p
    if body.top_k is not None:
        kw["top_k"] = body.top_k
    if body.seed is not None:
        kw["seed"] = body.seed
    if body.presence_penalty is not None:
        kw["presence_penalty"] = body.presence_penalty
    if body.frequency_penalty is not None:
        kw["frequency_penalty"] = body.frequency_penalty
    if stop:
        kw["stop_sequences"] = stop
    return SamplingParams(**kw)


# --- responses ---------------------------------------------------------------------------------
def usage(prompt_tokens: int, completion_tokens: int, metrics: Metrics | None) -> dict[str, Any]:
    """OpenAI ``usage`` with ``prompt_tokens_details.cached_tokens`` (prefix-cache hits)."""
    cached = round(metrics.prefix_hit_rate * prompt_tokens) if metrics is not None else 0
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def metrics_extension(metrics: Metrics) -> dict[str, Any]:
    """The non-standard ``metrics`` object: the protocol ``Metrics`` plus ``queue_ms``/``e2e_ms``.

    ``queue_ms`` is arrival to first scheduling and ``e2e_ms`` arrival to completion, both from the
    protocol ``Timestamps``.
    """
    out = metrics.model_dump(mode="json")
    ts = metrics.timestamps
    if ts is not None:
        out["queue_ms"] = max(ts.scheduled_at - ts.queued_at, 0.0) * 1000.0
        out["e2e_ms"] = max(ts.completed_at - ts.queued_at, 0.0) * 1000.0
    return out


def vllm_request_metrics(metrics: Metrics, completion_tokens: int) -> dict[str, float]:
    """vLLM's per-request ``metrics`` object (``vllm serve --enable-per-request-metrics``).

    The five fields and their definitions of vLLM 0.32's ``build_per_request_timing_metrics``,
    so clients written for vLLM read ours unchanged: ``time_to_first_token_ms`` is scheduling
    to first token (queue excluded: our ``prefill_ms``), ``generation_time_ms`` first to last
    token, ``queue_time_ms`` arrival to first scheduling, ``mean_itl_ms`` decode time per token
    after the first, ``tokens_per_second`` output tokens over scheduling to last token. A field
    vLLM would leave out (no second token, no timestamps) is left out. One difference:
    vLLM's ``queue_time_ms`` starts when EngineCore queues the request, ours at the frontend's
    arrival (the protocol ``Timestamps``), so ours also holds tokenization and the hand-over to
    EngineCore (a few milliseconds on a CPU); docs/vllm-tracing.md lists every such difference.
    """
    out: dict[str, float] = {}
    ts = metrics.timestamps
    if metrics.prefill_ms or metrics.decode_ms or completion_tokens:
        out["time_to_first_token_ms"] = metrics.prefill_ms
        out["generation_time_ms"] = metrics.decode_ms
    if ts is not None:
        out["queue_time_ms"] = max(ts.scheduled_at - ts.queued_at, 0.0) * 1000.0
    if completion_tokens > 1:
        out["mean_itl_ms"] = metrics.decode_ms / (completion_tokens - 1)
    inference_ms = metrics.prefill_ms + metrics.decode_ms
    if inference_ms > 0:
        out["tokens_per_second"] = completion_tokens / inference_ms * 1000.0
    return out


def response_metrics(
    metrics: Metrics, completion_tokens: int, *, ours: bool, vllm: bool
) -> dict[str, Any] | None:
    """The response's ``metrics`` object: vLLM's fields (``vllm``, or asked for ``ours``) and,
    with ``ours`` (the ``X-Sagellm-Metrics`` header), the protocol ``Metrics`` beside them."""
    if not (ours or vllm):
        return None
    out: dict[str, Any] = dict(vllm_request_metrics(metrics, completion_tokens))
    if ours:
        out.update(metrics_extension(metrics))
    return out


def finish_reason(reason: FinishReason) -> str:
    """OpenAI finish reason of a protocol one (``stop`` or ``length``)."""
    return "length" if reason == "length" else "stop"


def tool_finish_reason(reason: FinishReason) -> str:
    """OpenAI finish reason of a forced tool call (``tool_calls`` unless cut by ``length``)."""
    return "length" if reason == "length" else "tool_calls"


def chat_response(
    resp: Response,
    *,
    response_id: str,
    model: str,
    created: int,
    with_metrics: bool,
    forced: ForcedTool | None = None,
    per_request_metrics: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion`` object (with ``message.tool_calls`` for a ``forced`` call)."""
    message: dict[str, Any] = {"role": "assistant", "content": resp.output_text}
    reason = finish_reason(resp.finish_reason)
    call = forced.parse(resp.output_text) if forced is not None else None
    if call is not None:
        message = {"role": "assistant", "content": None, "tool_calls": [call.to_openai()]}
        reason = tool_finish_reason(resp.finish_reason)
    out: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": reason,
                "logprobs": None,
            }
        ],
        "usage": usage(resp.prompt_tokens or 0, len(resp.output_tokens), resp.metrics),
        "trace_id": resp.trace_id,
    }
    extra = response_metrics(
        resp.metrics, len(resp.output_tokens), ours=with_metrics, vllm=per_request_metrics
    )
    if extra is not None:
        out["metrics"] = extra
    return out


def completion_response(
    resp: Response,
    *,
    response_id: str,
    model: str,
    created: int,
    with_metrics: bool,
    per_request_metrics: bool = False,
) -> dict[str, Any]:
    """A ``text_completion`` object."""
    out: dict[str, Any] = {
        "id": response_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": resp.output_text,
                "finish_reason": finish_reason(resp.finish_reason),
                "logprobs": None,
            }
        ],
        "usage": usage(resp.prompt_tokens or 0, len(resp.output_tokens), resp.metrics),
        "trace_id": resp.trace_id,
    }
    extra = response_metrics(
        resp.metrics, len(resp.output_tokens), ours=with_metrics, vllm=per_request_metrics
    )
    if extra is not None:
        out["metrics"] = extra
    return out


class ChunkBuilder:
    """Builds the SSE chunks of one streamed (chat) completion.

    Args:
        chat: Chat chunks (``chat.completion.chunk``) or text ones (``text_completion``).
        response_id: The ``id`` every chunk carries.
        model: The served model name.
        include_usage: Every chunk carries ``usage: null`` and a last chunk the usage.
    """

    def __init__(self, *, chat: bool, response_id: str, model: str, include_usage: bool) -> None:
        self.chat = chat
        self.response_id = response_id
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time())

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.response_id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            out["usage"] = None
        return out

    def _choice(self, text: str | None, reason: str | None, role: bool = False) -> dict[str, Any]:
        if not self.chat:
            return {"index": 0, "text": text or "", "finish_reason": reason, "logprobs": None}
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        return {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}

    def first(self) -> dict[str, Any] | None:
        """The opening chunk (chat: the assistant role with empty content)."""
        return self._chunk([self._choice("", None, role=True)]) if self.chat else None

    def delta(self, text: str) -> dict[str, Any]:
        """A chunk with new text."""
        return self._chunk([self._choice(text, None)])

    def finish(self, reason: FinishReason, openai_reason: str | None = None) -> dict[str, Any]:
        """The chunk carrying the finish reason (no text); ``openai_reason`` overrides it."""
        shown = openai_reason or finish_reason(reason)
        return self._chunk([self._choice(None if self.chat else "", shown)])

    def tool_calls(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """A chat chunk with ``delta.tool_calls`` entries."""
        delta = {"tool_calls": entries}
        return self._chunk([{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}])

    def usage(
        self, prompt_tokens: int, completion_tokens: int, metrics: Metrics | None
    ) -> dict[str, Any]:
        """The final usage chunk (no choices)."""
        out = self._chunk([])
        out["usage"] = usage(prompt_tokens, completion_tokens, metrics)
        return out
