"""Tiny random-weight Llama models, built offline for tests, demos and benchmarks.

Importing this package is light: torch, transformers and tokenizers are imported only inside
:func:`build_model`.

Example:
    .. code-block:: python

        from sagellm_obs.models import TINY, build_model, describe

        path = build_model(TINY)  # cached; rebuilt only when missing
        print(describe(path)["num_parameters"])
"""

from __future__ import annotations

from sagellm_obs.models.build import (
    CACHE_ENV,
    CHAT_TEMPLATE,
    build_model,
    cache_root,
    corpus_digest,
    default_model_dir,
)
from sagellm_obs.models.info import (
    COMPLETE_MARKER,
    describe,
    is_complete,
    kv_bytes_per_token,
)
from sagellm_obs.models.spec import (
    BUILDER_VERSION,
    SMALL,
    SPECIAL_TOKENS,
    SUPPORTED_HEAD_DIMS,
    TINY,
    TinyModelSpec,
)

#: Named presets, for CLIs (``--preset tiny|small``).
PRESETS: dict[str, TinyModelSpec] = {"tiny": TINY, "small": SMALL}

__all__ = [
    "BUILDER_VERSION",
    "CACHE_ENV",
    "CHAT_TEMPLATE",
    "COMPLETE_MARKER",
    "PRESETS",
    "SMALL",
    "SPECIAL_TOKENS",
    "SUPPORTED_HEAD_DIMS",
    "TINY",
    "TinyModelSpec",
    "build_model",
    "cache_root",
    "corpus_digest",
    "default_model_dir",
    "describe",
    "is_complete",
    "kv_bytes_per_token",
]
