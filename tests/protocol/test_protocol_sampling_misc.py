"""SamplingParams rules and presets, KV, capability and version helpers."""

from __future__ import annotations

import dataclasses

import pytest

import sagellm_obs.protocol as p

S = p.DecodingStrategy


@pytest.mark.parametrize(
    ("kwargs", "strategy"),
    [
        ({}, S.SAMPLING),
        ({"temperature": 0.0}, S.GREEDY),
        ({"temperature": 9e-6}, S.GREEDY),
        ({"temperature": 1e-5}, S.SAMPLING),
        ({"temperature": 0.7}, S.SAMPLING),
        ({"temperature": 0.0, "strategy": "sampling"}, S.SAMPLING),
        ({"temperature": 1.5, "strategy": "greedy"}, S.GREEDY),
        ({"strategy": "beam_search"}, S.BEAM_SEARCH),
        ({"strategy": "speculative", "temperature": 0.0}, S.SPECULATIVE),
    ],
)
def test_auto_derived_strategy(kwargs: dict[str, object], strategy: p.DecodingStrategy) -> None:
    assert p.SamplingParams(**kwargs).strategy is strategy
    assert p.validate(p.SamplingParams, kwargs).strategy is strategy


def test_explicit_strategy_survives_json_round_trip() -> None:
    params = p.SamplingParams(temperature=0.0, strategy="sampling")
    assert p.SamplingParams.model_validate_json(params.model_dump_json()) == params


def test_sampling_defaults() -> None:
    params = p.SamplingParams()
    assert params.model_dump(exclude={"strategy"}) == {
        "temperature": 1.0, "top_p": 1.0, "top_k": 0, "beam_size": 4, "length_penalty": 1.0,
        "early_stopping": True, "alpha": 0.6, "penalty_alpha": 0.6, "repetition_penalty": 1.0,
        "presence_penalty": 0.0, "frequency_penalty": 0.0, "max_tokens": None,
        "stop_sequences": None, "n_speculative_tokens": 5, "seed": None,
        "skip_special_tokens": True,
    }  # fmt: skip
    assert next(iter(p.SamplingParams.model_fields)) == "strategy"


def test_default_sampling_params() -> None:
    d = p.DEFAULT_SAMPLING_PARAMS
    assert d.strategy is S.GREEDY
    assert d.temperature == 1.0
    assert d.model_dump(exclude={"strategy"}) == p.SamplingParams().model_dump(exclude={"strategy"})


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("deterministic", {"strategy": S.GREEDY, "temperature": 0.0}),
        ("balanced", {"strategy": S.SAMPLING, "temperature": 0.7, "top_p": 0.9}),
        ("creative", {"strategy": S.SAMPLING, "temperature": 1.2, "top_p": 0.95}),
        ("precise", {"strategy": S.BEAM_SEARCH, "length_penalty": 1.2}),
    ],
)
def test_presets(preset: str, expected: dict[str, object]) -> None:
    params = p.get_params(p.SamplingPreset(preset))
    want = {**p.SamplingParams().model_dump(), **expected}
    assert params.model_dump() == want
    assert p.get_params(preset) == params
    assert p.get_params(preset) is not p.get_params(preset)


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="wild"):
        p.get_params("wild")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "sampling", "temperature": 0.0}, "temperature"),
        ({"strategy": "beam_search", "beam_size": 1}, "beam_size"),
    ],
)
def test_validate_strategy_params_rejects(kwargs: dict[str, object], message: str) -> None:
    params = p.SamplingParams(**kwargs)  # constructs fine...
    with pytest.raises(ValueError, match=message):  # ...the explicit check fails.
        params.validate_strategy_params()


def test_validate_strategy_params_checks_constructed_values() -> None:
    # Range checks that field constraints normally prevent still hold on model_construct.
    bad_alpha = p.SamplingParams.model_construct(strategy=S.CONTRASTIVE, alpha=1.5)
    with pytest.raises(ValueError, match="alpha"):
        bad_alpha.validate_strategy_params()
    bad_penalty = p.SamplingParams.model_construct(strategy=S.CONTRASTIVE, penalty_alpha=-1.0)
    with pytest.raises(ValueError, match="penalty_alpha"):
        bad_penalty.validate_strategy_params()
    bad_spec = p.SamplingParams.model_construct(strategy=S.SPECULATIVE, n_speculative_tokens=0)
    with pytest.raises(ValueError, match="n_speculative_tokens"):
        bad_spec.validate_strategy_params()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"temperature": 0.0},
        {"strategy": "beam_search", "beam_size": 2},
        {"strategy": "contrastive", "alpha": 1.0, "penalty_alpha": 0.0},
        {"strategy": "speculative", "n_speculative_tokens": 1},
    ],
)
def test_validate_strategy_params_accepts(kwargs: dict[str, object]) -> None:
    p.SamplingParams(**kwargs).validate_strategy_params()


def test_request_sampling_params_nested() -> None:
    req = p.validate(
        p.Request,
        {"request_id": "r", "trace_id": "t", "max_tokens": 1, "sampling_params": {"top_k": 5}},
    )
    assert req.sampling_params is not None
    assert req.sampling_params.strategy is S.SAMPLING
    assert req.sampling_params.top_k == 5


# --- KV ------------------------------------------------------------------------------------------


def test_kv_enums_and_defaults() -> None:
    assert [d.value for d in p.KVDType] == ["fp16", "bf16", "fp8", "int8"]
    assert [d.value for d in p.KVLayout] == ["bshd", "bhsd"]
    a = p.KVAllocateParams(
        request_id="r", num_tokens=1, kv_dtype=p.KVDType.BF16, layout="bshd", block_size=16
    )
    b = p.KVAllocateParams(
        request_id="r", num_tokens=1, kv_dtype="bf16", layout="bshd", block_size=16
    )
    assert a == b
    assert (a.trace_id, a.priority, a.qos_labels, a.metadata) == (None, 0, {}, {})
    a.metadata["x"] = 1
    assert b.metadata == {}  # independent default factories
    assert p.KVHandle.model_json_schema()["required"] == [
        "handle_id",
        "request_id",
        "num_tokens",
        "device",
    ]


# --- capability ----------------------------------------------------------------------------------


def test_capability_descriptor() -> None:
    assert [d.value for d in p.DType] == ["fp32", "fp16", "bf16", "fp8", "int8", "int4"]
    assert [k.value for k in p.KernelKind] == [
        "matmul",
        "attention",
        "fusion",
        "layernorm",
        "softmax",
    ]
    cap = p.CapabilityDescriptor(
        device_type="cuda",
        supported_dtypes=[p.DType.FP16],
        supported_kernels=[p.KernelKind.ATTENTION],
        supported_collectives=["allreduce"],
    )
    assert dataclasses.is_dataclass(cap)
    assert cap.supports_dtype(p.DType.FP16)
    assert cap.supports_dtype("fp16")
    assert not cap.supports_dtype(p.DType.INT4)
    assert cap.supports_kernel("attention")
    assert not cap.supports_kernel(p.KernelKind.MATMUL)
    assert cap.supports_collective("allreduce")
    cap.require_dtype("fp16")
    cap.require_collective("allreduce")
    with pytest.raises(NotImplementedError, match="int4"):
        cap.require_dtype(p.DType.INT4)
    with pytest.raises(NotImplementedError, match="allgather"):
        cap.require_collective("allgather")
    with pytest.raises(NotImplementedError, match="graph"):
        cap.require_graph_exec()
    cap.has_graph_exec = True  # mutable, as upstream
    cap.require_graph_exec()
    default = p.CapabilityDescriptor()
    assert default.device_type == "unknown"
    assert default.supported_dtypes == []
    assert default.supported_dtypes is not p.CapabilityDescriptor().supported_dtypes


@pytest.mark.parametrize(
    ("text", "parsed"), [("cuda:1", ("cuda", 1)), ("cuda", ("cuda", None)), ("npu:0", ("npu", 0))]
)
def test_device_strings(text: str, parsed: tuple[str, int | None]) -> None:
    assert p.parse_device_str(text) == parsed
    assert p.format_device_str(*parsed) == text


@pytest.mark.parametrize("text", ["", ":1", "cuda:", "cuda:x", "cuda:-1"])
def test_bad_device_strings(text: str) -> None:
    with pytest.raises(ValueError, match="device"):
        p.parse_device_str(text)


# --- version -------------------------------------------------------------------------------------


def test_version_constants() -> None:
    assert p.PROTOCOL_VERSION == "0.1"
    assert p.ProtocolVersion(0, 1) == p.CURRENT_VERSION
    assert str(p.CURRENT_VERSION) == "0.1"
    assert (p.PROTOCOL_MAJOR, p.PROTOCOL_MINOR) == (0, 1)


def test_protocol_version_parse_order_and_frozen() -> None:
    v = p.ProtocolVersion.parse("1.10")
    assert v == p.ProtocolVersion(1, 10)
    assert p.ProtocolVersion(1, 2) < v < p.ProtocolVersion(2, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.major = 3  # type: ignore[misc]
    assert hash(v) == hash(p.ProtocolVersion(1, 10))


@pytest.mark.parametrize("text", ["", "1", "1.2.3", "a.b", "1.x", " 0.1", "-1.0", "0.1\n"])
def test_protocol_version_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="version"):
        p.ProtocolVersion.parse(text)


def test_is_compatible_with() -> None:
    v01, v02, v10 = p.ProtocolVersion(0, 1), p.ProtocolVersion(0, 2), p.ProtocolVersion(1, 0)
    assert v02.is_compatible_with(v01)
    assert not v01.is_compatible_with(v02)
    assert v01.is_compatible_with(v01)
    assert not v10.is_compatible_with(v01)


def test_negotiate_version() -> None:
    assert p.negotiate_version("0.1") is p.CURRENT_VERSION
    assert p.negotiate_version("0.0") is p.CURRENT_VERSION
    with pytest.raises(ValueError, match=r"^Protocol version mismatch: server supports 0\.1"):
        p.negotiate_version("0.2")
    with pytest.raises(ValueError, match=r"client requires 1\.0"):
        p.negotiate_version("1.0")
    with pytest.raises(ValueError, match="invalid protocol version"):
        p.negotiate_version("v1")
