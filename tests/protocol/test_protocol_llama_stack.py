"""Our llama-stack types against the real ``llama-stack`` 0.2.12 and ``llama-stack-client`` 0.2.12.

Every payload here is made by the real packages: their pydantic types dump it (responses, stream
chunks, messages...) or their client sends it (request bodies, captured by a mock transport).
Ours must parse it and write back the same JSON, which theirs must parse again.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, TypeAdapter

from sagellm_obs.protocol import ProtocolValidationError, validate
from sagellm_obs.protocol import llama_stack as ours

with warnings.catch_warnings():  # llama-stack's own pydantic warnings on import
    warnings.simplefilter("ignore")
    import llama_stack.apis.inference as theirs
    from llama_stack.apis.common import content_types as their_content
    from llama_stack.apis.models import Model as TheirModel
    from llama_stack.apis.telemetry.telemetry import MetricInResponse as TheirMetric
    from llama_stack.models.llama import datatypes as their_dt
from llama_stack_client import LlamaStackClient


def _tool_call() -> Any:
    return their_dt.ToolCall(
        call_id="call-1",
        tool_name="get_weather",
        arguments={"city": "Paris", "days": 3, "units": ["c"], "opts": {"a": True}},
        arguments_json='{"city": "Paris"}',
    )


def _metrics() -> list[Any]:
    return [
        TheirMetric(metric="prompt_tokens", value=12),
        TheirMetric(metric="completion_tokens", value=5, unit="tokens"),
        TheirMetric(metric="time_to_first_token", value=3.25, unit="ms"),
    ]


def _messages() -> list[Any]:
    return [
        theirs.SystemMessage(content="be terse"),
        theirs.UserMessage(
            content=[
                their_content.TextContentItem(text="look: "),
                their_content.ImageContentItem(image={"url": {"uri": "https://x/y.png"}}),
            ],
            context="some context",
        ),
        theirs.CompletionMessage(
            content="", stop_reason=their_dt.StopReason.end_of_message, tool_calls=[_tool_call()]
        ),
        theirs.ToolResponseMessage(call_id="call-1", content="sunny"),
        theirs.UserMessage(content=their_content.TextContentItem(text="thanks")),
    ]


def _sampling() -> list[Any]:
    return [
        theirs.SamplingParams(),
        theirs.SamplingParams(
            strategy=theirs.TopPSamplingStrategy(temperature=0.7, top_p=0.9),
            max_tokens=32,
            repetition_penalty=1.1,
            stop=["\n\n"],
        ),
        theirs.SamplingParams(strategy=theirs.TopKSamplingStrategy(top_k=5)),
    ]


def _tools() -> list[Any]:
    return [
        their_dt.ToolDefinition(
            tool_name="get_weather",
            description="Weather for a city",
            parameters={
                "city": their_dt.ToolParamDefinition(param_type="string", description="name"),
                "days": their_dt.ToolParamDefinition(param_type="int", required=False, default=1),
            },
        ),
        their_dt.ToolDefinition(tool_name="brave_search"),  # a builtin tool
    ]


# (our class, their class, their instances)
CASES: list[tuple[type[BaseModel], type[BaseModel], list[Any]]] = [
    (ours.SamplingParams, theirs.SamplingParams, _sampling()),
    (ours.LogProbConfig, theirs.LogProbConfig, [theirs.LogProbConfig(top_k=3)]),
    (ours.TokenLogProbs, theirs.TokenLogProbs, [theirs.TokenLogProbs(logprobs_by_token={"a": -1})]),
    (ours.ToolCall, their_dt.ToolCall, [_tool_call()]),
    (ours.ToolDefinition, their_dt.ToolDefinition, _tools()),
    (
        ours.ToolConfig,
        theirs.ToolConfig,
        [
            theirs.ToolConfig(),
            theirs.ToolConfig(tool_choice="required", tool_prompt_format="json"),
            theirs.ToolConfig(tool_choice="get_weather", system_message_behavior="replace"),
        ],
    ),
    (
        ours.CompletionRequest,
        theirs.CompletionRequest,
        [
            theirs.CompletionRequest(model="m", content="def f():"),
            theirs.CompletionRequest(
                model="m",
                content=[their_content.TextContentItem(text="x")],
                sampling_params=_sampling()[1],
                response_format=theirs.JsonSchemaResponseFormat(json_schema={"type": "object"}),
                stream=True,
                logprobs=theirs.LogProbConfig(top_k=1),
            ),
        ],
    ),
    (
        ours.ChatCompletionRequest,
        theirs.ChatCompletionRequest,
        [
            theirs.ChatCompletionRequest(model="m", messages=_messages()),
            theirs.ChatCompletionRequest(
                model="m",
                messages=_messages()[:2],
                sampling_params=_sampling()[2],
                tools=_tools(),
                tool_config=theirs.ToolConfig(tool_choice="get_weather"),
                response_format=theirs.GrammarResponseFormat(bnf={"root": "x"}),
                stream=True,
            ),
        ],
    ),
    (
        ours.CompletionResponse,
        theirs.CompletionResponse,
        [
            theirs.CompletionResponse(content="hi", stop_reason="out_of_tokens"),
            theirs.CompletionResponse(
                content="hi",
                stop_reason="end_of_turn",
                logprobs=[theirs.TokenLogProbs(logprobs_by_token={"hi": -0.5})],
                metrics=_metrics(),
            ),
        ],
    ),
    (
        ours.CompletionResponseStreamChunk,
        theirs.CompletionResponseStreamChunk,
        [
            theirs.CompletionResponseStreamChunk(delta="h"),
            theirs.CompletionResponseStreamChunk(
                delta="", stop_reason="end_of_turn", metrics=_metrics()
            ),
        ],
    ),
    (
        ours.ChatCompletionResponse,
        theirs.ChatCompletionResponse,
        [
            theirs.ChatCompletionResponse(
                completion_message=theirs.CompletionMessage(
                    content="hello", stop_reason="end_of_turn"
                ),
                metrics=_metrics(),
            ),
            theirs.ChatCompletionResponse(
                completion_message=_messages()[2],
                logprobs=[theirs.TokenLogProbs(logprobs_by_token={"x": -2.0})],
            ),
        ],
    ),
    (
        ours.ChatCompletionResponseStreamChunk,
        theirs.ChatCompletionResponseStreamChunk,
        [
            theirs.ChatCompletionResponseStreamChunk(
                event=theirs.ChatCompletionResponseEvent(
                    event_type="start", delta=their_content.TextDelta(text="")
                )
            ),
            theirs.ChatCompletionResponseStreamChunk(
                event=theirs.ChatCompletionResponseEvent(
                    event_type="progress",
                    delta=their_content.ToolCallDelta(tool_call='{"na', parse_status="in_progress"),
                )
            ),
            theirs.ChatCompletionResponseStreamChunk(
                event=theirs.ChatCompletionResponseEvent(
                    event_type="progress",
                    delta=their_content.ToolCallDelta(
                        tool_call=_tool_call(), parse_status="succeeded"
                    ),
                    stop_reason="end_of_message",
                )
            ),
            theirs.ChatCompletionResponseStreamChunk(
                event=theirs.ChatCompletionResponseEvent(
                    event_type="complete",
                    delta=their_content.TextDelta(text=""),
                    stop_reason="end_of_turn",
                    logprobs=[theirs.TokenLogProbs(logprobs_by_token={"x": -2.0})],
                ),
                metrics=_metrics(),
            ),
        ],
    ),
    (
        ours.BatchCompletionResponse,
        theirs.BatchCompletionResponse,
        [
            theirs.BatchCompletionResponse(
                batch=[theirs.CompletionResponse(content="a", stop_reason="end_of_turn")] * 2
            )
        ],
    ),
    (
        ours.BatchChatCompletionResponse,
        theirs.BatchChatCompletionResponse,
        [
            theirs.BatchChatCompletionResponse(
                batch=[
                    theirs.ChatCompletionResponse(
                        completion_message=theirs.CompletionMessage(
                            content="a", stop_reason="end_of_turn"
                        ),
                        metrics=_metrics(),
                    )
                ]
            )
        ],
    ),
    (
        ours.EmbeddingsResponse,
        theirs.EmbeddingsResponse,
        [theirs.EmbeddingsResponse(embeddings=[[0.5, -1.0]])],
    ),
    (
        ours.Model,
        TheirModel,
        [
            TheirModel(identifier="tiny", provider_id="sagellm-obs", provider_resource_id="tiny"),
            TheirModel(identifier="e", provider_id="p", model_type="embedding", metadata={"d": 8}),
        ],
    ),
]


@pytest.mark.parametrize(
    ("our_cls", "their_cls", "theirs_obj"),
    [(o, t, i) for o, t, items in CASES for i in items],
    ids=[f"{o.__name__}-{n}" for o, _, items in CASES for n in range(len(items))],
)
def test_round_trip_with_llama_stack(
    our_cls: type[BaseModel], their_cls: type[BaseModel], theirs_obj: BaseModel
) -> None:
    wire = json.loads(theirs_obj.model_dump_json())
    mine = our_cls.model_validate_json(theirs_obj.model_dump_json())
    assert json.loads(mine.model_dump_json()) == wire
    back = their_cls.model_validate_json(mine.model_dump_json())
    assert json.loads(back.model_dump_json()) == wire


def test_messages_and_deltas_discriminate_like_theirs() -> None:
    their_msgs = TypeAdapter(list[theirs.Message])
    our_msgs = TypeAdapter(list[ours.Message])
    wire = their_msgs.dump_json(_messages())
    parsed = our_msgs.validate_json(wire)
    assert [type(m).__name__ for m in parsed] == [
        "SystemMessage",
        "UserMessage",
        "CompletionMessage",
        "ToolResponseMessage",
        "UserMessage",
    ]
    assert json.loads(our_msgs.dump_json(parsed)) == json.loads(wire)
    deltas = [
        their_content.TextDelta(text="a"),
        their_content.ImageDelta(image=b"png"),
        their_content.ToolCallDelta(tool_call="", parse_status="started"),
        their_content.ToolCallDelta(tool_call="{}", parse_status="failed"),
    ]
    theirs_adapter = TypeAdapter(list[theirs.ContentDelta])
    ours_adapter = TypeAdapter(list[ours.ContentDelta])
    wire = theirs_adapter.dump_json(deltas)
    assert json.loads(ours_adapter.dump_json(ours_adapter.validate_json(wire))) == json.loads(wire)


def test_content_text() -> None:
    assert ours.content_text("x") == "x"
    assert ours.content_text(ours.TextContentItem(text="a")) == "a"
    assert ours.content_text([ours.TextContentItem(text="a"), ours.TextContentItem(text="b")]) == (
        "ab"
    )
    image = ours.ImageContentItem.model_validate({"image": {"url": {"uri": "https://x"}}})
    assert ours.content_text([ours.TextContentItem(text="a"), image]) is None


def test_metric_lookup() -> None:
    resp = ours.CompletionResponse.model_validate(
        theirs.CompletionResponse(
            content="", stop_reason="end_of_turn", metrics=_metrics()
        ).model_dump()
    )
    assert resp.metric("prompt_tokens") == 12
    assert resp.metric("nope") is None


# --- bodies the real client sends ----------------------------------------------------------------
@pytest.fixture
def sent() -> tuple[LlamaStackClient, list[tuple[str, dict[str, Any]]]]:
    bodies: list[tuple[str, dict[str, Any]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append((request.url.path, json.loads(request.content)))
        return httpx.Response(500, json={"error": "captured"})

    client = LlamaStackClient(
        base_url="http://capture.invalid",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )
    return client, bodies


def _send(call: Any) -> None:
    with pytest.raises(Exception, match=r"500|captured"):
        call()


def test_client_bodies_parse(
    sent: tuple[LlamaStackClient, list[tuple[str, dict[str, Any]]]],
) -> None:
    client, bodies = sent
    tool = {
        "tool_name": "get_weather",
        "description": "Weather",
        "parameters": {"city": {"param_type": "string", "required": True}},
    }
    msgs: list[Any] = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]
    sampling: Any = {
        "strategy": {"type": "top_p", "temperature": 0.5, "top_p": 0.9},
        "max_tokens": 4,
    }
    _send(lambda: client.inference.completion(model_id="m", content="x", sampling_params=sampling))
    _send(
        lambda: client.inference.chat_completion(
            model_id="m",
            messages=msgs,
            tools=[tool],
            tool_choice="required",
            tool_prompt_format="json",
            response_format={"type": "json_schema", "json_schema": {"type": "object"}},
            logprobs={"top_k": 0},
        )
    )
    _send(
        lambda: client.inference.batch_completion(
            model_id="m", content_batch=["a", "b"], sampling_params={"max_tokens": 2}
        )
    )
    _send(
        lambda: client.inference.batch_chat_completion(
            model_id="m",
            messages_batch=[msgs, msgs[1:]],
            tools=[tool],
            tool_config={"tool_choice": "get_weather"},
        )
    )
    _send(lambda: client.inference.embeddings(model_id="m", contents=["a"]))
    paths = [p for p, _ in bodies]
    assert paths == [
        "/v1/inference/completion",
        "/v1/inference/chat-completion",
        "/v1/inference/batch-completion",
        "/v1/inference/batch-chat-completion",
        "/v1/inference/embeddings",
    ]
    comp = ours.CompletionRequest.model_validate(bodies[0][1])
    assert comp.model == "m"
    assert comp.sampling_params is not None
    assert isinstance(comp.sampling_params.strategy, ours.TopPSamplingStrategy)
    chat = ours.ChatCompletionRequest.model_validate(bodies[1][1])
    assert chat.tool_config is not None
    assert chat.tool_config.tool_choice == ours.ToolChoice.required
    assert chat.tool_config.tool_prompt_format == ours.ToolPromptFormat.json
    assert chat.tools is not None and chat.tools[0].parameters is not None
    assert chat.tools[0].parameters["city"].param_type == "string"
    assert isinstance(chat.response_format, ours.JsonSchemaResponseFormat)
    # Ours, dumped, is what llama-stack's own request class reads.
    theirs.ChatCompletionRequest.model_validate_json(chat.model_dump_json())
    theirs.CompletionRequest.model_validate_json(comp.model_dump_json())
    batch = ours.BatchCompletionRequest.model_validate(bodies[2][1])
    assert batch.content_batch == ["a", "b"]
    chats = ours.BatchChatCompletionRequest.model_validate(bodies[3][1])
    assert chats.tool_config is not None and chats.tool_config.tool_choice == "get_weather"
    assert len(chats.messages_batch) == 2
    emb = ours.EmbeddingsRequest.model_validate(bodies[4][1])
    assert emb.contents == ["a"]


def test_draft_spec_spelling_and_tool_choice_rules() -> None:
    # The draft spec's body: "model" and "available_tools".
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "available_tools": [{"tool_name": "f"}],
        "tool_choice": "required",
    }
    req = ours.ChatCompletionRequest.model_validate(body)
    assert req.tools is not None and req.tools[0].tool_name == "f"
    assert req.tool_config is not None and req.tool_config.tool_choice == ours.ToolChoice.required
    clash = {**body, "tool_config": {"tool_choice": "none"}}
    with pytest.raises(ProtocolValidationError, match="must match"):
        validate(ours.ChatCompletionRequest, clash)
    same = {**body, "tool_config": {"tool_choice": "required"}}
    validate(ours.ChatCompletionRequest, same)


_BASE = {"model_id": "m", "content": "x"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {**_BASE, "sampling_params": {"strategy": {"type": "beam"}}},
            "sampling_params.strategy.type",
        ),
        (
            {**_BASE, "sampling_params": {"strategy": {"type": "top_k", "top_k": 0}}},
            "sampling_params.strategy.top_k.top_k",
        ),
        ({"content": "x"}, "model"),
        ({**_BASE, "response_format": {"type": "regex"}}, "response_format.type"),
    ],
)
def test_bad_bodies_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolValidationError) as err:
        validate(ours.CompletionRequest, body)
    assert err.value.field == field
