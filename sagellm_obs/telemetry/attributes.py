"""The request span's attributes, built from a :class:`RequestRecord`, in the SDK's clean form."""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from typing import Any, Final

from opentelemetry.attributes import _clean_attribute_value

from sagellm_obs import semconv as sc
from sagellm_obs.store.otlp_text import AttributesTemplate, attributes_text
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


# The attributes every request span has, in the order it lists them, with their values' usual
# types (see _always_values for where each comes from).
ALWAYS: Final[tuple[tuple[str, type], ...]] = (
    (sc.GEN_AI_OPERATION_NAME, str),
    (sc.GEN_AI_PROVIDER_NAME, str),
    (sc.GEN_AI_REQUEST_MODEL, str),
    (sc.GEN_AI_RESPONSE_MODEL, str),
    (sc.GEN_AI_RESPONSE_ID, str),
    (sc.GEN_AI_RESPONSE_FINISH_REASONS, tuple),
    (sc.GEN_AI_REQUEST_STREAM, bool),
    (sc.GEN_AI_USAGE_INPUT_TOKENS, int),
    (sc.GEN_AI_USAGE_OUTPUT_TOKENS, int),
    (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, int),
    (sc.GEN_AI_REQUEST_ID, str),
    (sc.GEN_AI_LATENCY_TIME_IN_QUEUE, float),
    (sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN, float),
    (sc.GEN_AI_LATENCY_E2E, float),
    (sc.GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL, float),
    (sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE, float),
    (sc.GEN_AI_LATENCY_TIME_IN_MODEL_INFERENCE, float),
    (sc.SAGELLM_TPOT, float),
    (sc.SAGELLM_REQUEST_ID, str),
    (sc.SAGELLM_TRACE_ID, str),
    (sc.SAGELLM_ENGINE_ID, str),
    (sc.SAGELLM_CACHED_PROMPT_TOKENS, int),
    (sc.SAGELLM_COMPUTED_PROMPT_TOKENS, int),
    (sc.SAGELLM_PREEMPTIONS, int),
    (sc.SAGELLM_ARRIVAL_UNIX_NANO, int),
    (sc.SAGELLM_KV_TOKENS, int),
    (sc.SAGELLM_KV_BYTES, int),
)
_ALWAYS_KEYS = tuple(key for key, _ in ALWAYS)
# The usual types of the optional attributes (see _optional).
_OPTIONAL_TYPES: Final[dict[str, type]] = {
    sc.SAGELLM_ENGINE_IDX: int,
    sc.GEN_AI_REQUEST_MAX_TOKENS: int,
    sc.GEN_AI_REQUEST_TEMPERATURE: float,
    sc.GEN_AI_REQUEST_TOP_P: float,
    sc.GEN_AI_REQUEST_TOP_K: int,
    sc.GEN_AI_REQUEST_SEED: int,
    sc.ERROR_TYPE: str,
    sc.SAGELLM_ERROR_CODE: str,
    sc.GEN_AI_INPUT_MESSAGES: str,
    sc.GEN_AI_OUTPUT_MESSAGES: str,
    sc.SAGELLM_CANCELLED: bool,
    sc.SAGELLM_CLOCK_ISSUES: tuple,
    sc.SAGELLM_PREFIX_HASH: tuple,
}
# One template per set of optional attributes present (a handful in practice; bounded anyway).
_TEMPLATES: dict[tuple[str, ...], AttributesTemplate] = {}
_MAX_TEMPLATES = 256


def _always_values(r: RequestRecord) -> tuple[Any, ...]:
    """The values of :data:`ALWAYS`, in its order."""
    model, request_id, cached = r.model, r.request_id, r.cached_tokens
    return (
        r.operation,
        sc.PROVIDER_NAME,
        model,
        model,
        request_id,
        (r.finish_reason,),
        r.stream,
        r.prompt_tokens,
        r.output_tokens,
        cached,
        request_id,
        r.queue,
        r.ttft,
        r.e2e,
        r.prefill,
        r.decode,
        r.inference,
        r.tpot,
        request_id,
        r.trace_id,
        r.engine_id,
        cached,
        r.prompt_tokens - cached,
        r.preemptions,
        int(r.arrival_time * 1e9),
        r.kv_tokens,
        r.kv_bytes,
    )


def _optional(r: RequestRecord) -> dict[str, Any]:
    """The attributes a request span has only when the record has them, in the span's order."""
    a: dict[str, Any] = {}
    # Tested one by one: a loop over (key, value) pairs costs twice as much.
    if r.engine_idx is not None:
        a[sc.SAGELLM_ENGINE_IDX] = r.engine_idx
    if r.max_tokens is not None:
        a[sc.GEN_AI_REQUEST_MAX_TOKENS] = r.max_tokens
    if r.temperature is not None:
        a[sc.GEN_AI_REQUEST_TEMPERATURE] = r.temperature
    if r.top_p is not None:
        a[sc.GEN_AI_REQUEST_TOP_P] = r.top_p
    if r.top_k is not None:
        a[sc.GEN_AI_REQUEST_TOP_K] = r.top_k
    if r.seed is not None:
        a[sc.GEN_AI_REQUEST_SEED] = r.seed
    if r.error_type is not None:
        a[sc.ERROR_TYPE] = r.error_type
    if r.error_code is not None:
        a[sc.SAGELLM_ERROR_CODE] = r.error_code
    if r.input_messages is not None:
        a[sc.GEN_AI_INPUT_MESSAGES] = r.input_messages
    if r.output_messages is not None:
        a[sc.GEN_AI_OUTPUT_MESSAGES] = r.output_messages
    if r.cancelled:
        a[sc.SAGELLM_CANCELLED] = True
    if r.clock_issues:
        a[sc.SAGELLM_CLOCK_ISSUES] = tuple(r.clock_issues)
    if r.prompt_token_ids:
        hashes = prefix_block_hashes(r.prompt_token_ids)
        if hashes:
            a[sc.SAGELLM_PREFIX_HASH] = tuple(hashes)
    return a


def request_attributes(r: RequestRecord) -> dict[str, Any]:
    """The SERVER span's attributes: :data:`ALWAYS`, then the optional ones the record has.

    Sequences are tuples and every value a plain ``str``/``int``/``float``/``bool`` (or a tuple
    of them), which is what the SDK's attribute cleaning would leave; anything else a record may
    carry is passed through that cleaning (see :func:`clean`).
    """
    a = dict(zip(_ALWAYS_KEYS, _always_values(r), strict=True))
    a.update(_optional(r))
    return clean(a)


def request_attributes_text(r: RequestRecord) -> tuple[str, int]:
    """The OTLP/JSON text of :func:`request_attributes` (``attributes_text`` of it) and how many
    attributes it holds, without building the dict where the values are the usual ones.

    The store's lines need only the text: the values are filled into a template of the keys
    present (:class:`~sagellm_obs.store.otlp_text.AttributesTemplate`) a type at a time. A
    value of another type or a NaN formats the dict instead.
    """
    extra = _optional(r)
    present = tuple(extra)
    template = _TEMPLATES.get(present)
    if template is None and len(_TEMPLATES) < _MAX_TEMPLATES:
        layout = ALWAYS + tuple((key, _OPTIONAL_TYPES[key]) for key in present)
        template = _TEMPLATES[present] = AttributesTemplate(layout)
    if template is not None:
        text = template.fill(_always_values(r) + tuple(extra.values()))
        if text is not None:
            return text, len(ALWAYS) + len(extra)
    attrs = request_attributes(r)
    return attributes_text(attrs), len(attrs)


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
