"""KV-cache error codes of the sageLLM protocol (its ``kv`` subpackage, ``kv.errors``).

Distinct from :class:`~sagellm_obs.protocol.errors.ErrorCode`: these 37 codes are UPPERCASE on the
wire (``"KV_BUDGET_EXCEEDED"``) and belong to a KV component, not to the request-level ``Error``.
The Python member names drop the ``KV_`` prefix, as sageLLM's do (``KVErrorCode.BUDGET_EXCEEDED``),
and a few values differ from their names
(``ALLOCATION_FAILED`` is ``"KV_CACHE_ALLOCATION_FAILED"``).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["KV_ERROR_CATEGORIES", "RETRYABLE_KV_ERRORS", "KVErrorCode", "is_retryable"]


class KVErrorCode(str, Enum):
    """KV-cache error codes, in the published order (grouped as :data:`KV_ERROR_CATEGORIES`)."""

    BUDGET_EXCEEDED = "KV_BUDGET_EXCEEDED"
    MEMORY_EXHAUSTED = "KV_MEMORY_EXHAUSTED"
    POOL_FULL = "KV_POOL_FULL"
    ALLOCATION_FAILED = "KV_CACHE_ALLOCATION_FAILED"
    NOT_FOUND = "KV_CACHE_NOT_FOUND"
    INVALID_HANDLE = "KV_INVALID_HANDLE"
    DOUBLE_FREE = "KV_DOUBLE_FREE"
    HANDLE_PINNED = "KV_HANDLE_PINNED"
    HANDLE_NOT_FOUND = "KV_HANDLE_NOT_FOUND"
    REF_COUNT_UNDERFLOW = "KV_REF_COUNT_UNDERFLOW"
    CACHE_MISS = "KV_CACHE_MISS"
    PREFIX_TOO_LONG = "KV_PREFIX_TOO_LONG"
    INVALID_PREFIX = "KV_INVALID_PREFIX"
    INDEX_CORRUPTED = "KV_INDEX_CORRUPTED"
    NO_VICTIM = "KV_NO_VICTIM"
    EVICTION_FAILED = "KV_EVICTION_FAILED"
    ALL_PINNED = "KV_ALL_PINNED"
    EVICTION_TIMEOUT = "KV_EVICTION_TIMEOUT"
    TRANSFER_FAILED = "KV_TRANSFER_FAILED"
    TRANSFER_TIMEOUT = "KV_TRANSFER_TIMEOUT"
    SHARD_MISSING = "KV_SHARD_MISSING"
    SHARD_DUPLICATE = "KV_SHARD_DUPLICATE"
    CHECKSUM_MISMATCH = "KV_CHECKSUM_MISMATCH"
    METADATA_MISMATCH = "KV_METADATA_MISMATCH"
    COMPRESSION_FAILED = "KV_COMPRESSION_FAILED"
    DECOMPRESSION_FAILED = "KV_DECOMPRESSION_FAILED"
    BACKEND_UNAVAILABLE = "KV_BACKEND_UNAVAILABLE"
    ADMISSION_DENIED = "KV_ADMISSION_DENIED"
    QUEUE_FULL = "KV_QUEUE_FULL"
    DISPATCH_FAILED = "KV_DISPATCH_FAILED"
    PLAN_INVALID = "KV_PLAN_INVALID"
    PREDICTOR_NOT_READY = "KV_PREDICTOR_NOT_READY"
    PREDICTION_FAILED = "KV_PREDICTION_FAILED"
    FEATURE_MISSING = "KV_FEATURE_MISSING"
    CONFIG_MISSING = "KV_CONFIG_MISSING"
    CONFIG_INVALID = "KV_CONFIG_INVALID"
    NOT_IMPLEMENTED = "KV_NOT_IMPLEMENTED"


_E = KVErrorCode

# Lists, not sets, in sageLLM's order, so the mapping dumps to the same JSON as theirs. Note that
# NOT_FOUND ("KV_CACHE_NOT_FOUND") is filed under "handle", last, not under "cache".
KV_ERROR_CATEGORIES: dict[str, list[KVErrorCode]] = {
    "budget": [_E.BUDGET_EXCEEDED, _E.MEMORY_EXHAUSTED, _E.POOL_FULL, _E.ALLOCATION_FAILED],
    "handle": [
        _E.INVALID_HANDLE,
        _E.DOUBLE_FREE,
        _E.HANDLE_PINNED,
        _E.HANDLE_NOT_FOUND,
        _E.REF_COUNT_UNDERFLOW,
        _E.NOT_FOUND,
    ],
    "cache": [_E.CACHE_MISS, _E.PREFIX_TOO_LONG, _E.INVALID_PREFIX, _E.INDEX_CORRUPTED],
    "evict": [_E.NO_VICTIM, _E.EVICTION_FAILED, _E.ALL_PINNED, _E.EVICTION_TIMEOUT],
    "transfer": [
        _E.TRANSFER_FAILED,
        _E.TRANSFER_TIMEOUT,
        _E.SHARD_MISSING,
        _E.SHARD_DUPLICATE,
        _E.CHECKSUM_MISMATCH,
        _E.METADATA_MISMATCH,
        _E.COMPRESSION_FAILED,
        _E.DECOMPRESSION_FAILED,
        _E.BACKEND_UNAVAILABLE,
    ],
    "scheduler": [_E.ADMISSION_DENIED, _E.QUEUE_FULL, _E.DISPATCH_FAILED, _E.PLAN_INVALID],
    "predictor": [_E.PREDICTOR_NOT_READY, _E.PREDICTION_FAILED, _E.FEATURE_MISSING],
    "config": [_E.CONFIG_MISSING, _E.CONFIG_INVALID, _E.NOT_IMPLEMENTED],
}
"""Error codes by category; every code is in exactly one category."""

RETRYABLE_KV_ERRORS: frozenset[KVErrorCode] = frozenset(
    {_E.BACKEND_UNAVAILABLE, _E.PREDICTOR_NOT_READY, _E.EVICTION_TIMEOUT, _E.TRANSFER_TIMEOUT}
)
"""Transient conditions worth retrying: an unavailable backend, a cold predictor, timeouts."""


def is_retryable(code: KVErrorCode | str) -> bool:
    """Whether an operation that failed with ``code`` may succeed if retried.

    Args:
        code: A :class:`KVErrorCode` or its wire value (``"KV_TRANSFER_TIMEOUT"``); unknown strings
            are not retryable.

    Returns:
        ``True`` for the codes in :data:`RETRYABLE_KV_ERRORS`.
    """
    return code in RETRYABLE_KV_ERRORS
