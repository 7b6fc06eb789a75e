"""The engine's vLLM ``SamplingParams``: copied from checked templates, never shared (no engine)."""

from __future__ import annotations

import pytest

from sagellm_obs.engine.vllm_calls import _new_params, _template, sampling_params
from sagellm_obs.protocol import ErrorCode, ProtocolValidationError

PLAIN = {"max_tokens": 16, "ignore_eos": True, "temperature": 0.7, "top_p": 0.9, "stop": "###"}


@pytest.mark.parametrize("final_only", [False, True])
def test_copied_parameters_are_what_vllm_makes(final_only: bool) -> None:
    a = sampling_params(PLAIN, final_only=final_only)
    b = sampling_params(PLAIN, final_only=final_only)
    made = _new_params(PLAIN, final_only)  # vLLM's constructor and checks, every time
    assert a == made and b == made
    assert a.stop == ["###"] and a.skip_clone
    assert a is not b
    for name in ("stop", "stop_token_ids", "_all_stop_token_ids"):
        assert getattr(a, name) is not getattr(b, name)


def test_what_vllm_fills_in_one_request_does_not_reach_the_next() -> None:
    template, _ = _template(False, tuple((k, type(v), v) for k, v in PLAIN.items()))
    first = sampling_params(PLAIN)
    # What vLLM's input processor does to a request's parameters: stop ids filled in place.
    first.update_from_generation_config({"eos_token_id": [7, 8]}, eos_token_id=2)
    assert first._all_stop_token_ids == {2, 7, 8}
    second = sampling_params(PLAIN)
    assert second._all_stop_token_ids == set() == template._all_stop_token_ids
    assert second == _new_params(PLAIN, False)


def test_parameters_of_other_values_are_made_afresh() -> None:
    kw = {"max_tokens": 4, "stop": ["a", "b"], "logit_bias": {3: 1.0}}
    a, b = sampling_params(kw), sampling_params(kw)
    assert a == b == _new_params(kw, False)
    assert a is not b
    before = _template.cache_info().currsize
    for seed in range(3):  # seeds are most often per request: no template for each
        assert sampling_params({"max_tokens": 4, "seed": seed}).seed == seed
    assert _template.cache_info().currsize == before


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"max_tokens": 4, "temperature": -1.0}, "sampling_params"),
        ({"max_tokens": 2**63}, "max_tokens"),
        ({"max_tokens": 4, "seed": -(2**63) - 1}, "sampling_params.seed"),
    ],
)
def test_bad_values_are_refused_every_time(kw: dict[str, object], field: str) -> None:
    for _ in range(2):  # a refusal is not remembered as a template
        with pytest.raises(ProtocolValidationError) as info:
            sampling_params(kw)
        assert info.value.code == ErrorCode.INVALID_ARGUMENT
        assert info.value.field == field


def test_equal_values_of_other_types_get_their_own_parameters() -> None:
    as_int = sampling_params({"max_tokens": 4, "temperature": 1})
    as_float = sampling_params({"max_tokens": 4, "temperature": 1.0})
    assert type(as_int.temperature) is int and type(as_float.temperature) is float
    assert sampling_params({"max_tokens": 4, "top_k": 1}).top_k == 1
    with pytest.raises(ProtocolValidationError, match="top_k"):  # vLLM's check, not a template's
        sampling_params({"max_tokens": 4, "top_k": 1.0})
