"""Light, import-free inspection of built models: sizes, parameter counts, KV-cache bytes.

Nothing here imports torch, transformers or safetensors: parameter counts come from the
safetensors JSON header, so describing a model is instant even for the larger presets.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

from sagellm_obs.models.spec import TinyModelSpec

#: Marker written last, after the model directory is in place; holds the spec key.
COMPLETE_MARKER = ".complete"

#: Build metadata written by the builder (spec, key, versions, parameter count).
BUILD_INFO = "build_info.json"

_KV_DTYPE_BYTES: dict[str, int] = {
    "float32": 4,
    "float": 4,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}

_MAX_SAFETENSORS_HEADER = 100 * 2**20


def _dtype_bytes(dtype: str) -> int:
    try:
        return _KV_DTYPE_BYTES[dtype.removeprefix("torch.")]
    except KeyError:
        raise ValueError(
            f"unknown dtype {dtype!r}; known: {', '.join(sorted(_KV_DTYPE_BYTES))}"
        ) from None


def _read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{p} does not hold a JSON object")
    return data


def kv_bytes_per_token(
    config_dir_or_spec: TinyModelSpec | str | os.PathLike[str],
    *,
    dtype: str | None = None,
) -> int:
    """Return the KV-cache bytes one token occupies across all layers.

    ``2 (K and V) x layers x kv_heads x head_dim x dtype bytes``.

    Args:
        config_dir_or_spec: A :class:`TinyModelSpec`, a model directory holding ``config.json``,
            or the path of a ``config.json``.
        dtype: KV-cache dtype (``"float32"``, ``"bfloat16"``, ``"fp8"``...). Defaults to the
            model's weight dtype, which is what vLLM's ``kv_cache_dtype="auto"`` uses.

    Returns:
        Bytes per token.

    Raises:
        ValueError: If the dtype is unknown.
    """
    if isinstance(config_dir_or_spec, TinyModelSpec):
        spec = config_dir_or_spec
        layers, kv_heads, head_dim = (
            spec.num_hidden_layers,
            spec.num_key_value_heads,
            spec.head_dim,
        )
        model_dtype = spec.dtype
    else:
        cfg = _read_config(config_dir_or_spec)
        layers = int(cfg["num_hidden_layers"])
        heads = int(cfg["num_attention_heads"])
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
        model_dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32")
    return 2 * layers * kv_heads * head_dim * _dtype_bytes(dtype or model_dtype)


def safetensors_num_parameters(path: str | os.PathLike[str]) -> int:
    """Count the scalars stored in a ``.safetensors`` file by reading only its header.

    Args:
        path: The file.

    Returns:
        Sum over tensors of the product of their shape.

    Raises:
        ValueError: If the header is malformed.
    """
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (too short)")
        (size,) = struct.unpack("<Q", raw)
        if size > _MAX_SAFETENSORS_HEADER:
            raise ValueError(f"{path}: implausible safetensors header size {size}")
        header = json.loads(fh.read(size))
    return sum(
        math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__"
    )


def _count_parameters(weights: list[Path]) -> int | None:
    try:
        return sum(safetensors_num_parameters(p) for p in weights)
    except (OSError, ValueError):  # e.g. a half-written file in an incomplete directory
        return None


def is_complete(path: str | os.PathLike[str], key: str | None = None) -> bool:
    """Tell whether ``path`` is a fully built model (its ``.complete`` marker exists).

    Args:
        path: Model directory.
        key: If given, the marker must also record this spec key.

    Returns:
        True for a complete model (matching ``key`` when given).
    """
    marker = Path(path) / COMPLETE_MARKER
    try:
        content = marker.read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return key is None or content == key


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summarise a built model directory for printing.

    Args:
        path: Model directory (as returned by :func:`sagellm_obs.models.build_model`).

    Returns:
        A JSON-serialisable dict: ``path``, ``complete``, ``key``, ``architecture``,
        ``num_parameters`` (None if a weight file is unreadable), shape fields
        (``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
        ``num_key_value_heads``, ``head_dim``, ``intermediate_size``, ``vocab_size``,
        ``max_position_embeddings``), ``dtype``, ``kv_bytes_per_token``,
        ``weights_bytes``, ``total_bytes``, ``files`` (``[{"name", "bytes"}]``) and ``spec``
        (the build spec, or None for a directory this package did not build).

    Raises:
        FileNotFoundError: If ``path`` has no ``config.json``.
    """
    root = Path(path)
    cfg = _read_config(root)
    files = sorted((p for p in root.iterdir() if p.is_file()), key=lambda p: p.name)
    weights = [p for p in files if p.suffix == ".safetensors"]
    info: dict[str, Any] = {}
    if (root / BUILD_INFO).is_file():
        info = json.loads((root / BUILD_INFO).read_text(encoding="utf-8"))
    marker = root / COMPLETE_MARKER
    heads = int(cfg["num_attention_heads"])
    architectures = cfg.get("architectures") or [cfg.get("model_type", "unknown")]
    return {
        "path": str(root),
        "complete": marker.is_file(),
        "key": marker.read_text(encoding="utf-8").strip() if marker.is_file() else None,
        "architecture": architectures[0],
        "num_parameters": _count_parameters(weights),
        "hidden_size": cfg["hidden_size"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": cfg.get("num_key_value_heads") or heads,
        "head_dim": cfg.get("head_dim") or int(cfg["hidden_size"]) // heads,
        "intermediate_size": cfg.get("intermediate_size"),
        "vocab_size": cfg["vocab_size"],
        "max_position_embeddings": cfg.get("max_position_embeddings"),
        "dtype": cfg.get("torch_dtype") or cfg.get("dtype"),
        "kv_bytes_per_token": kv_bytes_per_token(root),
        "weights_bytes": sum(p.stat().st_size for p in weights),
        "total_bytes": sum(p.stat().st_size for p in files),
        "files": [{"name": p.name, "bytes": p.stat().st_size} for p in files],
        "spec": info.get("spec"),
    }
