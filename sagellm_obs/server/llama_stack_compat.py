"""llama-stack 0.2.x bodies in, protocol ``Request``s out; protocol results out as llama-stack JSON.

What the engine cannot do is refused with a 4xx naming the field and ``not_implemented``: images
in content, log probabilities (``logprobs.top_k > 0``), ``grammar`` response formats (llama-stack's
own vLLM provider refuses them too).

Tools follow the OpenAI routes (:mod:`sagellm_obs.protocol.toolcalls`): ``tool_choice``
``required`` or a tool's name forces a call, generated under a JSON-schema constraint and
returned as ``completion_message.tool_calls`` with stop reason ``end_of_message`` (as
llama-stack's vLLM provider maps ``tool_calls``); ``auto``/``none`` answer with text.

Every response carries ``metrics``: llama-stack's ``prompt_tokens``, ``completion_tokens`` and
``total_tokens``, and the engine's own timings and prefix-cache hits (see :func:`metrics`), all
from the protocol ``Response`` the engine returned, so they equal the request span's numbers.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError

from sagellm_obs.protocol import (
    ChatMessage,
    DecodingStrategy,
    ErrorCode,
    FinishReason,
    Metrics,
    ProtocolValidationError,
    Request,
    Response,
    SamplingParams,
    default_trace_id,
    validate,
)
from sagellm_obs.protocol import llama_stack as ls
from sagellm_obs.protocol.toolcalls import ForcedTool, ToolSpec
from sagellm_obs.server.errors import APIError, from_validation

PROVIDER_ID = "sagellm-obs"
"""``provider_id`` of the served models (llama-stack names the provider that serves a model)."""
ID_PREFIX = "ls-"
STRUCTURED_OUTPUT_KEY = "structured_output"
FUNCTION_DEFINITIONS = "{{function_definitions}}"
"""Where ``system_message_behavior: replace`` puts the tool descriptions (llama-stack's marker)."""

# llama-stack's ToolParamDefinition.param_type names -> JSON-schema types
_JSON_TYPES = {
    "str": "string",
    "string": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "list": "array",
    "array": "array",
    "dict": "object",
    "object": "object",
}
_ARGUMENTS: TypeAdapter[dict[str, ls.RecursiveType]] = TypeAdapter(dict[str, ls.RecursiveType])


def not_implemented(message: str, param: str) -> APIError:
    """A 400 with ``code="not_implemented"``: a valid request asks for what we cannot do."""
    return APIError(400, message, param=param, code=ErrorCode.NOT_IMPLEMENTED.value)


def model_entry(name: str, created: int) -> dict[str, Any]:
    """A ``/v1/models`` entry both clients read: OpenAI's fields and llama-stack's ``Model``."""
    model = ls.Model(identifier=name, provider_id=PROVIDER_ID, provider_resource_id=name)
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": PROVIDER_ID,
        **model.model_dump(mode="json"),
    }


# --- requests ------------------------------------------------------------------------------------
def text(content: ls.InterleavedContent, param: str) -> str:
    """The text of ``content``; a 400 when it holds images."""
    out = ls.content_text(content)
    if out is None:
        raise not_implemented("image content is not supported (text-only engine)", param)
    return out


def chat_messages(messages: list[ls.Message], param: str = "messages") -> list[ChatMessage]:
    """Protocol messages; an assistant turn that called tools becomes its calls as JSON text."""
    out: list[ChatMessage] = []
    for i, msg in enumerate(messages):
        where = f"{param}.{i}.content"
        body = text(msg.content, where)
        if isinstance(msg, ls.UserMessage) and msg.context is not None:
            body = f"{body}\n\n{text(msg.context, f'{param}.{i}.context')}"
        if isinstance(msg, ls.CompletionMessage) and not body and msg.tool_calls:
            calls = [{"name": c.tool_name, "arguments": c.arguments} for c in msg.tool_calls]
            body = json.dumps(calls)
        out.append(ChatMessage(role=msg.role, content=body))
    if not out:
        raise APIError(400, "messages must not be empty", param=param)
    return out


def tool_spec(tool: ls.ToolDefinition) -> ToolSpec:
    """The JSON-schema form of a llama-stack tool (parameters -> an object schema)."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for name, p in (tool.parameters or {}).items():
        prop: dict[str, Any] = {}
        kind = _JSON_TYPES.get(p.param_type.strip().lower())
        if kind is not None:
            prop["type"] = kind
        if p.description:
            prop["description"] = p.description
        if p.default is not None:
            prop["default"] = p.default
        props[name] = prop
        if p.required is not False:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return ToolSpec(name=tool.tool_name, description=tool.description, parameters=schema)


def forced_tool(
    tools: list[ls.ToolDefinition] | None, config: ls.ToolConfig | None
) -> ForcedTool | None:
    """The call ``tool_config.tool_choice`` forces, if any (llama-stack's router rules)."""
    choice = config.tool_choice if config is not None else ls.ToolChoice.auto
    if choice is None or choice in (ls.ToolChoice.auto, ls.ToolChoice.none):
        return None
    specs = tuple(tool_spec(t) for t in tools or ())
    if choice == ls.ToolChoice.required:
        if not specs:
            raise APIError(400, 'tool_choice "required" needs tools', param="tool_config")
        return ForcedTool(specs)
    for spec in specs:
        if spec.name == choice:
            return ForcedTool((spec,))
    names = [s.name for s in specs]
    raise APIError(
        400, f"Tool choice {str(choice)[:100]} is not one of the tools: {names}", param="tools"
    )


def with_tool_prompt(
    messages: list[ChatMessage], forced: ForcedTool, config: ls.ToolConfig | None
) -> list[ChatMessage]:
    """The messages with the forced functions described in the (first) system message."""
    described = forced.system_prompt()
    replace = (
        config is not None and config.system_message_behavior == ls.SystemMessageBehavior.replace
    )
    if messages and messages[0].role == "system":
        first = messages[0].content
        if replace:
            merged = first.replace(FUNCTION_DEFINITIONS, described)
            merged = merged if FUNCTION_DEFINITIONS in first else f"{first}\n\n{described}"
        else:
            merged = f"{first}\n\n{described}" if first else described
        return [messages[0].model_copy(update={"content": merged}), *messages[1:]]
    return [ChatMessage(role="system", content=described), *messages]


def sampling(params: ls.SamplingParams | None) -> tuple[SamplingParams, int | None]:
    """Protocol sampling parameters and the ``max_tokens`` asked for (None: up to the context)."""
    params = params or ls.SamplingParams()
    strategy = params.strategy
    kw: dict[str, Any] = {}
    if isinstance(strategy, ls.GreedySamplingStrategy):
        kw.update(strategy=DecodingStrategy.GREEDY, temperature=0.0)
    elif isinstance(strategy, ls.TopPSamplingStrategy):
        kw.update(strategy=DecodingStrategy.SAMPLING, temperature=strategy.temperature or 1.0)
        kw["top_p"] = strategy.top_p if strategy.top_p is not None else 1.0
    else:
        kw.update(strategy=DecodingStrategy.SAMPLING, temperature=1.0, top_k=strategy.top_k)
    if params.repetition_penalty is not None:
        kw["repetition_penalty"] = params.repetition_penalty
    if params.stop:
        kw["stop_sequences"] = list(params.stop)
    try:
        out = validate(SamplingParams, kw)
    except ProtocolValidationError as exc:
        err = from_validation(exc)
        err.param = f"sampling_params.{err.param}" if err.param else "sampling_params"
        raise err from None
    max_tokens = params.max_tokens
    if max_tokens is not None and max_tokens < 0:
        raise APIError(400, "max_tokens must be >= 0", param="sampling_params.max_tokens")
    return out, max_tokens or None


def check_unsupported(
    response_format: ls.ResponseFormat | None, logprobs: ls.LogProbConfig | None
) -> None:
    """A 400 for what the engine does not do."""
    if isinstance(response_format, ls.GrammarResponseFormat):
        raise not_implemented("grammar response formats are not supported", "response_format")
    if logprobs is not None and logprobs.top_k:
        raise not_implemented("log probabilities are not supported", "logprobs")


def to_request(
    *,
    request_id: str,
    metadata: dict[str, Any],
    default_max_tokens: int,
    params: ls.SamplingParams | None,
    prompt: str | None = None,
    messages: list[ChatMessage] | None = None,
    response_format: ls.ResponseFormat | None = None,
    forced: ForcedTool | None = None,
    stream: bool = False,
    seed: int | None = None,
) -> Request:
    """The protocol request; its ``trace_id`` is the W3C trace id of ``metadata``'s
    traceparent (else the request id), as on the OpenAI routes without a body ``trace_id``."""
    sp, max_tokens = sampling(params)
    if seed is not None:
        sp = sp.model_copy(update={"seed": seed})
    meta = dict(metadata)
    if forced is not None:
        meta[STRUCTURED_OUTPUT_KEY] = {"json": forced.schema}
    elif isinstance(response_format, ls.JsonSchemaResponseFormat):
        meta[STRUCTURED_OUTPUT_KEY] = {"json": response_format.json_schema}
    fields: dict[str, Any] = {
        "request_id": request_id,
        "trace_id": default_trace_id(metadata, request_id),
        "max_tokens": max_tokens or default_max_tokens,
        "stream": stream,
        "sampling_params": sp,
        "metadata": meta,
    }
    if messages is not None:
        fields["messages"] = messages
    else:
        fields["prompt"] = prompt or ""
    try:
        req: Request = validate(Request, fields)
    except ProtocolValidationError as exc:
        raise from_validation(exc) from None
    return req


# --- responses -----------------------------------------------------------------------------------
def stop_reason(finish: FinishReason, *, tool_call: bool = False) -> ls.StopReason:
    """``out_of_tokens`` when cut by ``max_tokens``; a tool call ends its message."""
    if finish == "length":
        return ls.StopReason.out_of_tokens
    return ls.StopReason.end_of_message if tool_call else ls.StopReason.end_of_turn


def metrics(
    prompt_tokens: int | None, output_tokens: int, m: Metrics | None
) -> list[ls.MetricInResponse]:
    """llama-stack's three token counts, then ours (units ``tokens`` and ``ms``).

    ``cached_tokens`` is the prompt tokens read from the prefix cache; ``queue_time`` and
    ``request_duration`` come from the protocol ``Timestamps`` (arrival to first scheduling, to
    completion); the other timings are the protocol ``Metrics`` fields.
    """
    prompt = prompt_tokens or 0

    def entry(name: str, value: float, unit: str) -> ls.MetricInResponse:
        return ls.MetricInResponse(metric=name, value=value, unit=unit)

    out = [
        entry(ls.METRIC_PROMPT_TOKENS, prompt, "tokens"),
        entry(ls.METRIC_COMPLETION_TOKENS, output_tokens, "tokens"),
        entry(ls.METRIC_TOTAL_TOKENS, prompt + output_tokens, "tokens"),
    ]
    if m is None:
        return out
    out += [
        entry(ls.METRIC_CACHED_TOKENS, round(m.prefix_hit_rate * prompt), "tokens"),
        entry(ls.METRIC_TIME_TO_FIRST_TOKEN, m.ttft_ms, "ms"),
        entry(ls.METRIC_PREFILL_TIME, m.prefill_ms, "ms"),
        entry(ls.METRIC_DECODE_TIME, m.decode_ms, "ms"),
        entry(ls.METRIC_TIME_PER_OUTPUT_TOKEN, m.tpot_ms, "ms"),
    ]
    ts = m.timestamps
    if ts is not None:
        out.insert(
            5, entry(ls.METRIC_QUEUE_TIME, max(ts.scheduled_at - ts.queued_at, 0.0) * 1e3, "ms")
        )
        out.append(
            entry(ls.METRIC_REQUEST_DURATION, max(ts.completed_at - ts.queued_at, 0.0) * 1e3, "ms")
        )
    return out


def completion_response(resp: Response) -> ls.CompletionResponse:
    """A ``CompletionResponse``."""
    return ls.CompletionResponse(
        content=resp.output_text,
        stop_reason=stop_reason(resp.finish_reason),
        metrics=metrics(resp.prompt_tokens, len(resp.output_tokens), resp.metrics),
    )


def tool_call(forced: ForcedTool, generated: str) -> ls.ToolCall | None:
    """The call in the generated text; None when it is no complete call (e.g. cut short)."""
    call = forced.parse(generated)
    if call is None:
        return None
    try:
        parsed = json.loads(call.arguments)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    arguments: str | dict[str, ls.RecursiveType]
    try:
        arguments = _ARGUMENTS.validate_python(parsed)
    except ValidationError:  # nested deeper than llama-stack's RecursiveType: keep the text
        arguments = call.arguments
    return ls.ToolCall(
        call_id=call.id, tool_name=call.name, arguments=arguments, arguments_json=call.arguments
    )


def chat_response(resp: Response, forced: ForcedTool | None) -> ls.ChatCompletionResponse:
    """A ``ChatCompletionResponse`` (a forced call in ``tool_calls``, no text)."""
    call = tool_call(forced, resp.output_text) if forced is not None else None
    message = ls.CompletionMessage(
        content="" if call is not None else resp.output_text,
        stop_reason=stop_reason(resp.finish_reason, tool_call=call is not None),
        tool_calls=[call] if call is not None else [],
    )
    return ls.ChatCompletionResponse(
        completion_message=message,
        metrics=metrics(resp.prompt_tokens, len(resp.output_tokens), resp.metrics),
    )


class ChatChunks:
    """The stream chunks of one chat completion, as llama-stack streams them.

    ``start`` (empty text), then one ``progress`` per engine output, then ``complete`` (empty
    text, the stop reason and the metrics). With a forced call the progress deltas are tool-call
    deltas: ``started``, ``in_progress`` with the generated text, then ``succeeded`` with the
    parsed call (or ``failed`` with the whole text).
    """

    def __init__(self, forced: ForcedTool | None) -> None:
        self.forced = forced
        self.buffer = ""
        self.call: ls.ToolCall | None = None

    @staticmethod
    def _chunk(
        kind: ls.ChatCompletionResponseEventType,
        delta: ls.TextDelta | ls.ToolCallDelta,
        stop: ls.StopReason | None = None,
        metrics: list[ls.MetricInResponse] | None = None,
    ) -> ls.ChatCompletionResponseStreamChunk:
        event = ls.ChatCompletionResponseEvent(event_type=kind, delta=delta, stop_reason=stop)
        return ls.ChatCompletionResponseStreamChunk(event=event, metrics=metrics)

    def start(self) -> list[ls.ChatCompletionResponseStreamChunk]:
        """The opening chunk."""
        return [self._chunk(ls.ChatCompletionResponseEventType.start, ls.TextDelta(text=""))]

    def progress(self, piece: str) -> list[ls.ChatCompletionResponseStreamChunk]:
        """Chunks for newly generated text."""
        progress = ls.ChatCompletionResponseEventType.progress
        if not piece:
            return []
        if self.forced is None:
            return [self._chunk(progress, ls.TextDelta(text=piece))]
        out = []
        if not self.buffer:
            started = ls.ToolCallDelta(tool_call="", parse_status=ls.ToolCallParseStatus.started)
            out.append(self._chunk(progress, started))
        self.buffer += piece
        status = ls.ToolCallParseStatus.in_progress
        out.append(self._chunk(progress, ls.ToolCallDelta(tool_call=piece, parse_status=status)))
        return out

    def complete(
        self, finish: FinishReason, metrics: list[ls.MetricInResponse]
    ) -> list[ls.ChatCompletionResponseStreamChunk]:
        """The closing chunks."""
        out = []
        stop = stop_reason(finish)
        if self.forced is not None:
            self.call = tool_call(self.forced, self.buffer)
            stop = stop_reason(finish, tool_call=self.call is not None)
            delta = (
                ls.ToolCallDelta(tool_call=self.call, parse_status=ls.ToolCallParseStatus.succeeded)
                if self.call is not None
                else ls.ToolCallDelta(
                    tool_call=self.buffer, parse_status=ls.ToolCallParseStatus.failed
                )
            )
            out.append(self._chunk(ls.ChatCompletionResponseEventType.progress, delta, stop))
        done = ls.ChatCompletionResponseEventType.complete
        out.append(self._chunk(done, ls.TextDelta(text=""), stop, metrics))
        return out
