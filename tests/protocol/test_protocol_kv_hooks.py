"""The KV hook family and KV error codes, against the published ``isagellm-protocol`` package.

Payloads built by sageLLM's own models (``sagellm_protocol.kv_hooks``, ``sagellm_protocol.kv``)
must parse in ours to the same JSON, and ours in theirs; every enum value and the error categories
must match. The package is a dev requirement (requirements/dev.txt).
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import sagellm_obs.protocol as p
from sagellm_obs.protocol import kv_errors, kv_hooks

theirs = pytest.importorskip("sagellm_protocol.kv_hooks")
their_errors = pytest.importorskip("sagellm_protocol.kv")

HOOK_MODELS = [
    "KVAllocateParams",
    "KVHandle",
    "KVMigrateParams",
    "KVFreeParams",
    "KVEvictParams",
    "KVPrefetchParams",
    "KVQoSPolicy",
    "KVHookPayload",
]
HOOK_ENUMS = ["KVDType", "KVLayout", "KVEvictReason", "KVPriority", "KVHookEvent"]


def _handle(mod: Any) -> Any:
    return mod.KVHandle(handle_id="blk-9", request_id="r1", num_tokens=32, device="cpu")


def _samples(mod: Any) -> dict[str, list[BaseModel]]:
    """Full and minimal instances of every hook model, built with ``mod``'s classes."""
    h = _handle(mod)
    return {
        "KVAllocateParams": [
            mod.KVAllocateParams(
                request_id="r1", num_tokens=64, kv_dtype="bf16", layout="bhsd", block_size=16,
                trace_id="t1", priority=-3, qos_labels={"tier": "gold"}, metadata={"n": [1, 2]},
            ),
            mod.KVAllocateParams(
                request_id="r", num_tokens=1, kv_dtype="int8", layout="bshd", block_size=1
            ),
        ],
        "KVHandle": [h],
        "KVMigrateParams": [
            mod.KVMigrateParams(
                kv_handle=h, target_device="cuda:1", trace_id="t", priority=4, metadata={"a": None}
            ),
            mod.KVMigrateParams(kv_handle=h, target_device="cpu"),
        ],
        "KVFreeParams": [
            mod.KVFreeParams(kv_handle=h, force=True, trace_id="t", metadata={"k": "v"}),
            mod.KVFreeParams(kv_handle=h),
        ],
        "KVEvictParams": [
            mod.KVEvictParams(
                kv_handle=h, reason="ttl_expired", target_device="nvme", trace_id="t",
                priority=1, metadata={"x": 1.5},
            ),
            mod.KVEvictParams(kv_handle=h, reason=mod.KVEvictReason.MEMORY_PRESSURE),
        ],
        "KVPrefetchParams": [
            mod.KVPrefetchParams(
                request_id="r1", kv_handle=h, target_device="cuda:0", priority=2, trace_id="t",
                prefetch_window_tokens=128, metadata={"why": "predicted"},
            ),
            mod.KVPrefetchParams(request_id="r1", kv_handle=h, target_device="cuda:0"),
        ],
        "KVQoSPolicy": [
            mod.KVQoSPolicy(
                tier="gold", slo_latency_ms=50.0, max_wait_ms=2.5, evict_protected=True
            ),
            mod.KVQoSPolicy(),
        ],
        "KVHookPayload": [
            mod.KVHookPayload(
                event="evict_after", request_id="r1", trace_id="t", kv_handle=h,
                evict_reason="explicit_free", device="cpu", elapsed_ms=0.25, success=False,
                error_message="boom", metadata={"block_hashes": [1, 2 ** 63]},
            ),
            mod.KVHookPayload(event=mod.KVHookEvent.ALLOCATE_BEFORE, request_id=""),
        ],
    }  # fmt: skip


@pytest.mark.parametrize("name", HOOK_ENUMS)
def test_enum_values_match(name: str) -> None:
    ours_enum: type[Enum] = getattr(kv_hooks, name)
    their_enum: type[Enum] = getattr(theirs, name)
    assert [(m.name, m.value) for m in ours_enum] == [(m.name, m.value) for m in their_enum]
    assert issubclass(ours_enum, str)


@pytest.mark.parametrize("name", HOOK_MODELS)
def test_field_names_order_and_required_match(name: str) -> None:
    ours_model: type[BaseModel] = getattr(kv_hooks, name)
    their_model: type[BaseModel] = getattr(theirs, name)
    assert list(ours_model.model_fields) == list(their_model.model_fields)
    assert ours_model.model_json_schema().get("required") == their_model.model_json_schema().get(
        "required"
    )


@pytest.mark.parametrize("name", HOOK_MODELS)
def test_theirs_parse_in_ours_and_back(name: str) -> None:
    for their_obj in _samples(theirs)[name]:
        text = their_obj.model_dump_json()
        ours_obj = getattr(kv_hooks, name).model_validate_json(text)
        assert json.loads(ours_obj.model_dump_json()) == json.loads(text)
        again = type(their_obj).model_validate_json(ours_obj.model_dump_json())
        assert again == their_obj


@pytest.mark.parametrize("name", HOOK_MODELS)
def test_ours_parse_in_theirs(name: str) -> None:
    for ours_obj in _samples(kv_hooks)[name]:
        text = ours_obj.model_dump_json()
        their_obj = getattr(theirs, name).model_validate_json(text)
        assert json.loads(their_obj.model_dump_json()) == json.loads(text)
        assert ours_obj.model_dump(mode="json") == their_obj.model_dump(mode="json")


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("KVQoSPolicy", {"slo_latency_ms": 0}),
        ("KVQoSPolicy", {"max_wait_ms": -1.0}),
        ("KVPrefetchParams", {"prefetch_window_tokens": 0}),
        ("KVHookPayload", {"elapsed_ms": -0.1}),
        ("KVHookPayload", {"event": "allocate"}),
        ("KVEvictParams", {"reason": "oom"}),
        ("KVAllocateParams", {"num_tokens": 0}),
    ],
)
def test_constraints_reject_alike(name: str, bad: dict[str, Any]) -> None:
    base = json.loads(_samples(theirs)[name][0].model_dump_json())
    payload = {**base, **bad}
    with pytest.raises(ValidationError):
        getattr(theirs, name).model_validate(payload)
    with pytest.raises(p.ProtocolValidationError):
        p.validate(getattr(kv_hooks, name), payload)


def test_extra_fields_ignored_and_enums_kept_like_theirs() -> None:
    raw = {"event": "free_after", "request_id": "r", "unknown": 1, "evict_reason": None}
    ours_obj = p.KVHookPayload.model_validate(raw)
    their_obj = theirs.KVHookPayload.model_validate(raw)
    assert ours_obj.model_dump(mode="json") == their_obj.model_dump(mode="json")
    assert ours_obj.event is p.KVHookEvent.FREE_AFTER
    assert "unknown" not in ours_obj.model_dump()


# --- KVErrorCode --------------------------------------------------------------------------------


def test_kv_error_codes_match() -> None:
    their_codes = their_errors.KVErrorCode
    assert len(p.KVErrorCode) == len(their_codes) == 37
    assert [(c.name, c.value) for c in p.KVErrorCode] == [(c.name, c.value) for c in their_codes]
    assert all(c.value.startswith("KV_") for c in p.KVErrorCode)


def test_kv_error_categories_match_and_partition() -> None:
    from sagellm_protocol.kv.errors import KV_ERROR_CATEGORIES, RETRYABLE_KV_ERRORS

    def as_json(mapping: dict[str, list[Any]]) -> str:
        return json.dumps({k: [c.value for c in v] for k, v in mapping.items()})

    assert as_json(p.KV_ERROR_CATEGORIES) == as_json(KV_ERROR_CATEGORIES)
    flat = [c for codes in p.KV_ERROR_CATEGORIES.values() for c in codes]
    assert sorted(flat) == sorted(p.KVErrorCode)  # each code in exactly one category
    assert {c.value for c in p.RETRYABLE_KV_ERRORS} == {c.value for c in RETRYABLE_KV_ERRORS}


@pytest.mark.parametrize("code", [c.value for c in p.KVErrorCode] + ["TRANSFER_TIMEOUT", "x", ""])
def test_is_retryable_agrees(code: str) -> None:
    from sagellm_protocol.kv.errors import is_retryable as their_is_retryable

    assert p.is_retryable(code) is their_is_retryable(code)
    if code in {c.value for c in p.KVErrorCode}:
        assert kv_errors.is_retryable(p.KVErrorCode(code)) is their_is_retryable(
            their_errors.KVErrorCode(code)
        )
