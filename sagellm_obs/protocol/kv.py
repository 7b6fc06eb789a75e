"""KV-cache hook types of the sageLLM protocol (``kv_hooks``; the top-level ``KVHandle``).

Only the simple handle is modelled here: ``handle_id``, ``request_id``, ``num_tokens`` and
``device``, all required and unconstrained. The 25-field lifecycle handle of sageLLM's ``kv``
subpackage (UUID ids, block state, memory tier...) is a different type, not wire-compatible with
this one.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["KVAllocateParams", "KVDType", "KVHandle", "KVLayout"]


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
