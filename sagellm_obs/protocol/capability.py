"""Backend capability description (sageLLM protocol ``backend_types``).

``CapabilityDescriptor`` is a plain, mutable ``@dataclass`` (not a pydantic model), as upstream.
Device strings are ``"<type>"`` or ``"<type>:<index>"`` (``"cuda:1"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "DEVICE_TYPE_ASCEND",
    "DEVICE_TYPE_CPU",
    "DEVICE_TYPE_CUDA",
    "DEVICE_TYPE_NPU",
    "DEVICE_TYPE_ROCM",
    "DEVICE_TYPE_XPU",
    "CapabilityDescriptor",
    "DType",
    "DeviceStr",
    "KernelKind",
    "format_device_str",
    "parse_device_str",
]

DeviceStr = str
"""A device string such as ``"cuda:0"`` or ``"cpu"``."""

DEVICE_TYPE_CPU = "cpu"
DEVICE_TYPE_CUDA = "cuda"
DEVICE_TYPE_NPU = "npu"
DEVICE_TYPE_ASCEND = "ascend"
DEVICE_TYPE_ROCM = "rocm"
DEVICE_TYPE_XPU = "xpu"


class DType(str, Enum):
    """Numeric data types a backend may support."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"


class KernelKind(str, Enum):
    """Kernel families a backend may provide."""

    MATMUL = "matmul"
    ATTENTION = "attention"
    FUSION = "fusion"
    LAYERNORM = "layernorm"
    SOFTMAX = "softmax"


@dataclass
class CapabilityDescriptor:
    """What a backend device can do.

    Attributes:
        device_name: Marketing name, e.g. ``"NVIDIA A100"``.
        device_type: Device type (``"cuda"``, ``"cpu"``...).
        compute_capability: Vendor compute capability, e.g. ``"8.0"``.
        total_memory_bytes: Total device memory, bytes.
        available_memory_bytes: Free device memory, bytes.
        supported_dtypes: Data types the device supports.
        supported_kernels: Kernel families available.
        has_stream: Supports asynchronous streams.
        has_event: Supports events.
        has_collective: Supports collective communication.
        has_graph_exec: Supports graph capture/execution.
        supported_collectives: Collective operations available (``"allreduce"``...).
        has_kv_block_copy: Supports copying KV blocks.
        has_kv_block_migrate: Supports migrating KV blocks between devices.
        max_memory_mb: Memory limit, MB.
        max_batch_size: Batch-size limit.
        max_sequence_length: Sequence-length limit.
    """

    device_name: str | None = None
    device_type: str = "unknown"
    compute_capability: str | None = None
    total_memory_bytes: int | None = None
    available_memory_bytes: int | None = None
    supported_dtypes: list[DType] = field(default_factory=list)
    supported_kernels: list[KernelKind] = field(default_factory=list)
    has_stream: bool = False
    has_event: bool = False
    has_collective: bool = False
    has_graph_exec: bool = False
    supported_collectives: list[str] = field(default_factory=list)
    has_kv_block_copy: bool = False
    has_kv_block_migrate: bool = False
    max_memory_mb: int | None = None
    max_batch_size: int | None = None
    max_sequence_length: int | None = None

    def supports_dtype(self, dtype: DType | str) -> bool:
        """Whether ``dtype`` (enum or its string value) is supported."""
        return dtype in self.supported_dtypes

    def supports_kernel(self, kernel: KernelKind | str) -> bool:
        """Whether ``kernel`` (enum or its string value) is available."""
        return kernel in self.supported_kernels

    def supports_collective(self, op: str) -> bool:
        """Whether the collective ``op`` is available."""
        return op in self.supported_collectives

    def require_dtype(self, dtype: DType | str) -> None:
        """Raises ``NotImplementedError`` unless ``dtype`` is supported."""
        if not self.supports_dtype(dtype):
            value = dtype.value if isinstance(dtype, DType) else dtype
            raise NotImplementedError(
                f"dtype {value!r} is not supported on device {self.device_type!r}"
            )

    def require_collective(self, op: str) -> None:
        """Raises ``NotImplementedError`` unless the collective ``op`` is available."""
        if not self.supports_collective(op):
            raise NotImplementedError(
                f"collective {op!r} is not supported on device {self.device_type!r}"
            )

    def require_graph_exec(self) -> None:
        """Raises ``NotImplementedError`` unless graph execution is supported."""
        if not self.has_graph_exec:
            raise NotImplementedError(
                f"graph execution is not supported on device {self.device_type!r}"
            )


def parse_device_str(device: DeviceStr) -> tuple[str, int | None]:
    """Splits a device string: ``"cuda:1"`` -> ``("cuda", 1)``, ``"cuda"`` -> ``("cuda", None)``.

    Raises:
        ValueError: Empty type or a non-integer / negative index.
    """
    kind, sep, index = device.partition(":")
    if not kind or (sep and not (index.isascii() and index.isdecimal())):
        raise ValueError(f"invalid device string {device!r}, expected 'type' or 'type:index'")
    return kind, int(index) if sep else None


def format_device_str(device_type: str, device_id: int | None = None) -> DeviceStr:
    """Builds a device string: ``("cuda", 1)`` -> ``"cuda:1"``, ``("cpu", None)`` -> ``"cpu"``."""
    return device_type if device_id is None else f"{device_type}:{device_id}"
