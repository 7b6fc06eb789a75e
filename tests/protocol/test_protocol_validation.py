"""Numeric constraints, ProtocolValidationError, ErrorCode and Error.from_exception."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import sagellm_obs.protocol as p

REQUEST = {"request_id": "r", "trace_id": "t", "max_tokens": 4}
METRICS = {"ttft_ms": 0.0, "throughput_tps": 0.0, "peak_mem_mb": 0, "error_rate": 0.0}
KV_ALLOC = {
    "request_id": "r",
    "num_tokens": 1,
    "kv_dtype": "fp16",
    "layout": "bshd",
    "block_size": 1,
}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
COMPLETION = {"model": "m", "prompt": "x"}

_NON_NEGATIVE_METRICS = [
    "ttft_ms", "tbt_ms", "tpot_ms", "throughput_tps", "peak_mem_mb", "kv_used_tokens",
    "kv_used_bytes", "evict_count", "evict_ms", "prefill_ms", "decode_ms", "kv_transfer_count",
    "kv_transfer_bytes", "kv_transfer_ms", "comm_overhead_ms", "allreduce_count",
    "allgather_count",
]  # fmt: skip
_RATES = ["error_rate", "prefix_hit_rate", "spec_accept_rate"]

# (model, valid base payload, field, rejected value, accepted boundary value)
CASES: list[tuple[type[BaseModel], dict[str, Any], str, Any, Any]] = [
    *[(p.Metrics, METRICS, f, -1, 0) for f in _NON_NEGATIVE_METRICS],
    *[(p.Metrics, METRICS, f, -0.01, 0.0) for f in _RATES],
    *[(p.Metrics, METRICS, f, 1.01, 1.0) for f in _RATES],
    (p.Request, REQUEST, "max_tokens", 0, 1),
    (p.Request, REQUEST, "temperature", -0.1, 0.0),
    (p.Request, REQUEST, "temperature", 2.1, 2.0),
    (p.Request, REQUEST, "top_p", 0.0, 1e-9),
    (p.Request, REQUEST, "top_p", 1.1, 1.0),
    (p.Request, REQUEST, "kv_budget_tokens", 0, 1),
    (p.Request, REQUEST, "rank", -1, 0),
    (p.Request, REQUEST, "world_size", 0, 1),
    (p.Request, REQUEST, "tp_rank", -1, 0),
    (p.Request, REQUEST, "pp_rank", -1, 0),
    (p.Request, REQUEST, "tp_size", 0, 1),
    (p.Request, REQUEST, "pp_size", 0, 1),
    (p.SamplingParams, {}, "temperature", -0.5, 0.0),
    (p.SamplingParams, {}, "temperature", 2.5, 2.0),
    (p.SamplingParams, {}, "top_p", 0.0, 0.01),
    (p.SamplingParams, {}, "top_p", 1.5, 1.0),
    (p.SamplingParams, {}, "top_k", -2, -1),
    (p.SamplingParams, {}, "beam_size", 0, 1),
    (p.SamplingParams, {}, "alpha", -0.1, 0.0),
    (p.SamplingParams, {}, "alpha", 1.1, 1.0),
    (p.SamplingParams, {}, "penalty_alpha", -0.1, 0.0),
    (p.SamplingParams, {}, "repetition_penalty", 0.99, 1.0),
    (p.SamplingParams, {}, "presence_penalty", -2.1, -2.0),
    (p.SamplingParams, {}, "presence_penalty", 2.1, 2.0),
    (p.SamplingParams, {}, "frequency_penalty", -2.1, -2.0),
    (p.SamplingParams, {}, "frequency_penalty", 2.1, 2.0),
    (p.SamplingParams, {}, "max_tokens", 0, 1),
    (p.SamplingParams, {}, "n_speculative_tokens", 0, 1),
    (p.KVAllocateParams, KV_ALLOC, "num_tokens", 0, 1),
    (p.KVAllocateParams, KV_ALLOC, "block_size", 0, 1),
    (p.ChatCompletionRequest, CHAT, "temperature", 2.01, 2.0),
    (p.ChatCompletionRequest, CHAT, "top_p", 0.0, 1.0),
    (p.ChatCompletionRequest, CHAT, "presence_penalty", -3, -2),
    (p.ChatCompletionRequest, CHAT, "frequency_penalty", 3, 2),
    (p.CompletionRequest, COMPLETION, "temperature", -1, 0),
    (p.CompletionRequest, COMPLETION, "top_p", 2, 1),
]


@pytest.mark.parametrize(
    ("model", "base", "field", "bad", "good"),
    CASES,
    ids=[f"{c[0].__name__}.{c[2]}={c[3]}" for c in CASES],
)
def test_constraint_rejected_with_field_name(
    model: type[BaseModel], base: dict[str, Any], field: str, bad: Any, good: Any
) -> None:
    assert getattr(p.validate(model, {**base, field: good}), field) == good
    with pytest.raises(p.ProtocolValidationError) as info:
        p.validate(model, {**base, field: bad})
    err = info.value
    assert isinstance(err, ValueError)
    assert err.code is p.ErrorCode.INVALID_ARGUMENT
    assert err.field == field
    assert err.errors[0]["field"] == field
    assert f": {field}: " in str(err)
    assert isinstance(err.__cause__, ValidationError)


def test_message_format_and_all_fields_listed() -> None:
    with pytest.raises(p.ProtocolValidationError) as info:
        p.validate(p.Request, {**REQUEST, "max_tokens": 0, "rank": -1})
    assert str(info.value) == (
        "invalid request: max_tokens: Input should be greater than 0; "
        "rank: Input should be greater than or equal to 0"
    )
    assert [e["field"] for e in info.value.errors] == ["max_tokens", "rank"]


def test_nested_field_path_is_dotted() -> None:
    bad = {**REQUEST, "messages": [{"role": "user", "content": "ok"}, {"role": "robot"}]}
    with pytest.raises(p.ProtocolValidationError) as info:
        p.validate(p.Request, bad)
    assert [e["field"] for e in info.value.errors] == ["messages.1.role", "messages.1.content"]
    assert info.value.field == "messages.1.role"


def test_missing_required_fields_are_named() -> None:
    with pytest.raises(p.ProtocolValidationError) as info:
        p.validate(p.Request, {"prompt": "x"})
    assert [e["field"] for e in info.value.errors] == ["request_id", "trace_id", "max_tokens"]


@pytest.mark.parametrize("data", ["{not json", b"[1, 2]", "null", 42, ["a"], bytearray(b"{")])
def test_whole_payload_errors_have_empty_field(data: Any) -> None:
    with pytest.raises(p.ProtocolValidationError) as info:
        p.validate(p.Request, data)
    assert info.value.field == ""
    assert str(info.value).startswith("invalid request: ")


def test_message_does_not_leak_input_values() -> None:
    secret = "my social security number is 123-45-6789"
    with pytest.raises(p.ProtocolValidationError) as info:
        p.validate(p.Request, {**REQUEST, "prompt": secret, "messages": secret, "max_tokens": -1})
    assert secret not in str(info.value)
    error = p.Error.from_exception(info.value)
    assert secret not in error.message
    assert error.code is p.ErrorCode.INVALID_ARGUMENT


def test_protocol_validation_error_pickles() -> None:
    with pytest.raises(p.ProtocolValidationError) as info:
        p.validate(p.Request, {**REQUEST, "max_tokens": 0})
    again = pickle.loads(pickle.dumps(info.value))
    assert (str(again), again.field, again.errors, again.code) == (
        str(info.value),
        "max_tokens",
        info.value.errors,
        p.ErrorCode.INVALID_ARGUMENT,
    )


def test_validate_uses_snake_case_model_name() -> None:
    with pytest.raises(p.ProtocolValidationError, match=r"^invalid chat_completion_request: "):
        p.validate(p.ChatCompletionRequest, {"model": "m"})


EXPECTED_CODES = [
    "invalid_argument", "resource_exhausted", "unavailable", "deadline_exceeded",
    "not_implemented", "kv_transfer_failed", "comm_timeout", "comm_group_invalid",
    "distributed_runtime_error", "operator_not_found", "invalid_operator_mapping",
    "operator_registration_failed", "comm_backend_not_supported", "comm_rank_mismatch",
    "comm_group_not_found", "comm_collective_failed", "comm_p2p_failed", "kv_prefetch_failed",
    "kv_qos_constraint_violated", "kv_priority_queue_full", "compression_not_supported",
    "quantization_calibration_failed", "speculative_decoding_failed",
]  # fmt: skip


def test_error_code_has_exactly_the_23_values_in_order() -> None:
    assert [c.value for c in p.ErrorCode] == EXPECTED_CODES
    assert len(p.ErrorCode) == 23
    assert all(c.name == c.value.upper() for c in p.ErrorCode)
    assert p.ErrorCode("comm_timeout") == "comm_timeout"


def test_error_model() -> None:
    err = p.Error(code="unavailable", message="down")
    assert err.code is p.ErrorCode.UNAVAILABLE
    assert err.retryable is None
    assert err.model_dump_json() == '{"code":"unavailable","message":"down","retryable":null}'
    with pytest.raises(p.ProtocolValidationError) as info:
        p.validate(p.Error, {"code": "nope", "message": "x"})
    assert info.value.field == "code"


class _MyValueError(ValueError):
    pass


@pytest.mark.parametrize(
    ("exc", "code", "retryable"),
    [
        (ValueError("bad"), p.ErrorCode.INVALID_ARGUMENT, False),
        (_MyValueError("bad"), p.ErrorCode.INVALID_ARGUMENT, False),
        (p.ProtocolValidationError("Request", []), p.ErrorCode.INVALID_ARGUMENT, False),
        (TimeoutError("slow"), p.ErrorCode.DEADLINE_EXCEEDED, True),
        (MemoryError(), p.ErrorCode.RESOURCE_EXHAUSTED, True),
        (NotImplementedError("nope"), p.ErrorCode.NOT_IMPLEMENTED, False),
        (ConnectionError("refused"), p.ErrorCode.UNAVAILABLE, True),
        (ConnectionResetError("reset"), p.ErrorCode.UNAVAILABLE, True),
        (RuntimeError("weird"), p.ErrorCode.UNAVAILABLE, True),
        (KeyError("k"), p.ErrorCode.UNAVAILABLE, True),
    ],
)
def test_error_from_exception_mapping(
    exc: BaseException, code: p.ErrorCode, retryable: bool
) -> None:
    error = p.Error.from_exception(exc)
    assert error.code is code
    assert error.retryable is retryable
    assert error.message.startswith(type(exc).__name__)
    if str(exc):
        assert error.message == f"{type(exc).__name__}: {exc}"


def test_error_from_raw_pydantic_error_drops_input() -> None:
    secret = "top secret prompt"
    with pytest.raises(ValidationError) as info:
        p.Request.model_validate({**REQUEST, "prompt": secret, "messages": secret})
    assert secret in str(info.value)  # pydantic itself echoes the input...
    error = p.Error.from_exception(info.value)
    assert secret not in error.message  # ...we do not.
    assert error.code is p.ErrorCode.INVALID_ARGUMENT
    assert "messages" in error.message


def test_error_message_is_truncated() -> None:
    error = p.Error.from_exception(RuntimeError("x" * 5000))
    assert len(error.message) == 1024
    assert error.message.endswith("...")
