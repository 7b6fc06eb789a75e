"""The request span's attributes, built from a :class:`RequestRecord`, in the SDK's clean form."""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from typing import Any

from opentelemetry.attributes import _clean_attribute_value

from sagellm_obs import semconv as sc
from sagellm_obs.telemetry.records import RequestRecord

PREFIX_BLOCK_TOKENS = 128  # vLLM's CPU block size; hashes are for studying reuse, not for vLLM


def chain_block_hash(parent: bytes, tokens: Sequence[int]) -> bytes:
    """Our hash of one block: its tokens chained on the previous block's hash (``b""`` first)."""
    h = hashlib.blake2b(parent, digest_size=8)
    h.update(array("q", tokens).tobytes())
    return h.digest()


def prefix_block_hashes(token_ids: Sequence[int], block: int = PREFIX_BLOCK_TOKENS) -> list[str]:
    """Chained hashes of the full prompt blocks, as a prefix cache keys them (no text exported)."""
    out: list[str] = []
    parent = b""
    for start in range(0, len(token_ids) - block + 1, block):
        parent = chain_block_hash(parent, token_ids[start : start + block])
        out.append(parent.hex())
    return out


def request_attributes(r: RequestRecord) -> dict[str, Any]:
    """The SERVER span's attributes.

    Sequences are tuples and every value a plain ``str``/``int``/``float``/``bool`` (or a tuple
    of them), which is what the SDK's attribute cleaning would leave; anything else a record may
    carry is passed through that cleaning (see :func:`clean`).
    """
    a: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: r.operation,
        sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_NAME,
        sc.GEN_AI_REQUEST_MODEL: r.model,
        sc.GEN_AI_RESPONSE_MODEL: r.model,
        sc.GEN_AI_RESPONSE_ID: r.request_id,
        sc.GEN_AI_RESPONSE_FINISH_REASONS: (r.finish_reason,),
        sc.GEN_AI_REQUEST_STREAM: r.stream,
        sc.GEN_AI_USAGE_INPUT_TOKENS: r.prompt_tokens,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: r.output_tokens,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: r.cached_tokens,
        sc.GEN_AI_REQUEST_ID: r.request_id,
        sc.GEN_AI_LATENCY_TIME_IN_QUEUE: r.queue,
        sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN: r.ttft,
        sc.GEN_AI_LATENCY_E2E: r.e2e,
        sc.GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL: r.prefill,
        sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE: r.decode,
        sc.GEN_AI_LATENCY_TIME_IN_MODEL_INFERENCE: r.inference,
        sc.SAGELLM_TPOT: r.tpot,
        sc.SAGELLM_REQUEST_ID: r.request_id,
        sc.SAGELLM_TRACE_ID: r.trace_id,
        sc.SAGELLM_ENGINE_ID: r.engine_id,
        sc.SAGELLM_CACHED_PROMPT_TOKENS: r.cached_tokens,
        sc.SAGELLM_COMPUTED_PROMPT_TOKENS: r.prompt_tokens - r.cached_tokens,
        sc.SAGELLM_PREEMPTIONS: r.preemptions,
        sc.SAGELLM_ARRIVAL_UNIX_NANO: int(r.arrival_time * 1e9),
        sc.SAGELLM_KV_TOKENS: r.kv_tokens,
        sc.SAGELLM_KV_BYTES: r.kv_bytes,
    }
    for key, value in (
        (sc.SAGELLM_ENGINE_IDX, r.engine_idx),
        (sc.GEN_AI_REQUEST_MAX_TOKENS, r.max_tokens),
        (sc.GEN_AI_REQUEST_TEMPERATURE, r.temperature),
        (sc.GEN_AI_REQUEST_TOP_P, r.top_p),
        (sc.GEN_AI_REQUEST_TOP_K, r.top_k),
        (sc.GEN_AI_REQUEST_SEED, r.seed),
        (sc.ERROR_TYPE, r.error_type),
        (sc.SAGELLM_ERROR_CODE, r.error_code),
        (sc.GEN_AI_INPUT_MESSAGES, r.input_messages),
        (sc.GEN_AI_OUTPUT_MESSAGES, r.output_messages),
    ):
        if value is not None:
            a[key] = value
    if r.cancelled:
        a[sc.SAGELLM_CANCELLED] = True
    if r.clock_issues:
        a[sc.SAGELLM_CLOCK_ISSUES] = tuple(r.clock_issues)
    if r.prompt_token_ids:
        hashes = prefix_block_hashes(r.prompt_token_ids)
        if hashes:
            a[sc.SAGELLM_PREFIX_HASH] = tuple(hashes)
    return clean(a)


def clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """``attributes`` as the SDK's ``BoundedAttributes`` would hold them (no limits applied).

    Plain values (the usual case) are checked, not copied; anything else (an enum, a numpy
    number, a list) goes through the SDK's own cleaning.
    """
    for value in attributes.values():
        t = type(value)
        if t is tuple:
            if all(type(v) is str for v in value):  # finish reasons, clock issues, hashes
                continue
        elif t is str or t is int or t is float or t is bool:
            continue
        cleaned: dict[str, Any] = dict(_clean_attribute_value(attributes, None))
        return cleaned
    return attributes
