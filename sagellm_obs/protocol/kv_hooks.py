"""KV-cache hook types of the sageLLM protocol (module ``kv_hooks``; the top-level ``KVHandle``).

The simple handle is modelled here: ``handle_id``, ``request_id``, ``num_tokens`` and ``device``,
all required and unconstrained. The 25-field lifecycle handle of sageLLM's ``kv`` subpackage (UUID
ids, block state, memory tier...) is a different type, not wire-compatible with this one.

The hook family (``KVHookEvent`` / ``KVHookPayload`` and the params of ``free``, ``evict``,
``migrate`` and ``prefetch``) is what a sageLLM KV component hands its registered hooks; we also
record vLLM's KV cache events in this shape (:mod:`sagellm_obs.engine.kv_events`). Like sageLLM's
models these use the default ``model_config`` (unknown fields ignored, enums kept as Enum objects
in Python and written as their values in JSON).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "KVAllocateParams",
    "KVDType",
    "KVEvictParams",
    "KVEvictReason",
    "KVFreeParams",
    "KVHandle",
    "KVHookEvent",
    "KVHookPayload",
    "KVLayout",
    "KVMigrateParams",
    "KVPrefetchParams",
    "KVPriority",
    "KVQoSPolicy",
]


class KVDType(str, Enum):
    """Element type of KV-cache blocks."""

    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"


class KVLayout(str, Enum):
    """Memory layout of KV-cache tensors (batch, sequence, heads, head dim)."""

    BSHD = "bshd"
    BHSD = "bhsd"


class KVEvictReason(str, Enum):
    """Why blocks were evicted."""

    MEMORY_PRESSURE = "memory_pressure"
    TTL_EXPIRED = "ttl_expired"
    EXPLICIT_FREE = "explicit_free"


class KVPriority(str, Enum):
    """Allocation and eviction priority, highest first (low priorities are evicted first)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    BACKGROUND = "background"


class KVHookEvent(str, Enum):
    """Points of the KV lifecycle at which hooks run: each operation has a before and an after."""

    ALLOCATE_BEFORE = "allocate_before"
    ALLOCATE_AFTER = "allocate_after"
    FREE_BEFORE = "free_before"
    FREE_AFTER = "free_after"
    EVICT_BEFORE = "evict_before"
    EVICT_AFTER = "evict_after"
    MIGRATE_BEFORE = "migrate_before"
    MIGRATE_AFTER = "migrate_after"
    PREFETCH_BEFORE = "prefetch_before"
    PREFETCH_AFTER = "prefetch_after"


class KVAllocateParams(BaseModel):
    """Parameters of a KV-cache allocation hook.

    Attributes:
        request_id: Request the blocks belong to.
        num_tokens: Tokens to allocate for (> 0).
        kv_dtype: Element type.
        layout: Tensor layout.
        block_size: Tokens per block (> 0).
        trace_id: Trace identifier, if any.
        priority: Scheduling priority.
        qos_labels: Free-form QoS labels.
        metadata: Pass-through bag.
    """

    request_id: str
    num_tokens: int = Field(gt=0)
    kv_dtype: KVDType
    layout: KVLayout
    block_size: int = Field(gt=0)
    trace_id: str | None = None
    priority: int = 0
    qos_labels: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class KVHandle(BaseModel):
    """Opaque handle to allocated KV-cache blocks (the simple, top-level form).

    Attributes:
        handle_id: Handle identifier.
        request_id: Request the blocks belong to.
        num_tokens: Tokens covered.
        device: Device string such as ``"cuda:0"``.
    """

    handle_id: str
    request_id: str
    num_tokens: int
    device: str


class KVMigrateParams(BaseModel):
    """Parameters of ``migrate()``: move a handle's blocks to another device.

    Attributes:
        kv_handle: Blocks to move.
        target_device: Destination device string.
        trace_id: Trace identifier, if any.
        priority: Scheduling priority.
        metadata: Pass-through bag.
    """

    kv_handle: KVHandle
    target_device: str
    trace_id: str | None = None
    priority: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)


class KVFreeParams(BaseModel):
    """Parameters of ``free()``: release a handle's blocks.

    Attributes:
        kv_handle: Blocks to release.
        force: Release even if pinned.
        trace_id: Trace identifier, if any.
        metadata: Pass-through bag.
    """

    kv_handle: KVHandle
    force: bool = False
    trace_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class KVEvictParams(BaseModel):
    """Parameters of ``evict()``: an explicit eviction (as opposed to the allocator's own).

    Attributes:
        kv_handle: Blocks to evict.
        reason: Why.
        target_device: Where the blocks go (offload), or ``None`` to drop them.
        trace_id: Trace identifier, if any.
        priority: Scheduling priority.
        metadata: Pass-through bag.
    """

    kv_handle: KVHandle
    reason: KVEvictReason
    target_device: str | None = None
    trace_id: str | None = None
    priority: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)


class KVPrefetchParams(BaseModel):
    """Parameters of ``prefetch()``: bring blocks to a device ahead of their use.

    Attributes:
        request_id: Request that will use the blocks.
        kv_handle: Blocks to bring.
        target_device: Destination device string.
        priority: Scheduling priority.
        trace_id: Trace identifier, if any.
        prefetch_window_tokens: Tokens ahead to prefetch (> 0), or ``None``.
        metadata: Pass-through bag.
    """

    request_id: str
    kv_handle: KVHandle
    target_device: str
    priority: int = 0
    trace_id: str | None = None
    prefetch_window_tokens: int | None = Field(default=None, gt=0)
    metadata: dict[str, Any] = Field(default_factory=dict)


class KVQoSPolicy(BaseModel):
    """Quality-of-service constraints of a KV allocation.

    Attributes:
        tier: Service tier name.
        slo_latency_ms: Latency objective in ms (> 0), or ``None``.
        max_wait_ms: Longest wait for blocks in ms (> 0), or ``None``.
        evict_protected: Never evict these blocks under memory pressure.
    """

    tier: str = "default"
    slo_latency_ms: float | None = Field(default=None, gt=0)
    max_wait_ms: float | None = Field(default=None, gt=0)
    evict_protected: bool = False


class KVHookPayload(BaseModel):
    """What a KV hook receives when a lifecycle event happens.

    Attributes:
        event: Lifecycle point.
        request_id: Request concerned (sageLLM requires it; records of blocks vLLM does not tie to
            one request carry ``""``).
        trace_id: Trace identifier, if any.
        kv_handle: Blocks concerned, if any.
        evict_reason: Why, for evictions.
        device: Device string, if any.
        elapsed_ms: Duration of the operation in ms (>= 0).
        success: Whether the operation succeeded.
        error_message: Failure description, if any.
        metadata: Pass-through bag.
    """

    event: KVHookEvent
    request_id: str
    trace_id: str | None = None
    kv_handle: KVHandle | None = None
    evict_reason: KVEvictReason | None = None
    device: str | None = None
    elapsed_ms: float = Field(default=0.0, ge=0)
    success: bool = True
    error_message: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
