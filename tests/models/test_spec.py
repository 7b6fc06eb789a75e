"""Tests of the model spec, cache paths and the light helpers (no torch needed)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sagellm_obs.models import (
    BUILDER_VERSION,
    CACHE_ENV,
    PRESETS,
    SMALL,
    SUPPORTED_HEAD_DIMS,
    TINY,
    TinyModelSpec,
    build_model,
    corpus_digest,
    default_model_dir,
    kv_bytes_per_token,
)

#: Pinned so that editing the corpus forces a conscious BUILDER_VERSION bump (cached models
#: would otherwise keep a tokenizer trained on the old text under the same key).
EXPECTED_CORPUS = ("1", "6516aa383bec5a2588e983b399fb5ee9ef755553cacaed839dded4f63292e4fa")


def test_tiny_defaults() -> None:
    assert TINY.hidden_size == 256
    assert TINY.num_hidden_layers == 4
    assert TINY.num_attention_heads == 4
    assert TINY.head_dim == 64
    assert TINY.num_key_value_heads == 2
    assert TINY.intermediate_size == 512
    assert TINY.vocab_size == 2048
    assert TINY.max_position_embeddings == 2048
    assert TINY.seed == 0
    assert TINY.dtype == "float32"
    assert TINY.validate() is TINY
    assert TINY.num_parameters() == 3_410_176


def test_small_preset() -> None:
    SMALL.validate()
    assert (SMALL.hidden_size, SMALL.intermediate_size, SMALL.num_hidden_layers) == (576, 1536, 30)
    assert (SMALL.num_attention_heads, SMALL.num_key_value_heads, SMALL.head_dim) == (9, 3, 64)
    assert 108_000_000 < SMALL.num_parameters() < 109_000_000
    assert PRESETS == {"tiny": TINY, "small": SMALL}


def test_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.seed = 1  # type: ignore[misc]


def test_key_is_stable_and_sensitive() -> None:
    assert TINY.key() == TinyModelSpec().key()
    assert len(TINY.key()) == 64
    assert TINY.key() != dataclasses.replace(TINY, seed=1).key()
    assert TINY.key() != dataclasses.replace(TINY, vocab_size=1024).key()
    assert TINY.key() != SMALL.key()
    assert TinyModelSpec.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY


def test_key_includes_builder_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from sagellm_obs.models import spec as spec_module

    before = TINY.key()
    monkeypatch.setattr(spec_module, "BUILDER_VERSION", BUILDER_VERSION + "-next")
    assert TINY.key() != before


def test_corpus_change_requires_builder_version_bump() -> None:
    assert (BUILDER_VERSION, corpus_digest()) == EXPECTED_CORPUS, (
        "the tokenizer corpus changed: bump BUILDER_VERSION in sagellm_obs/models/spec.py "
        "and update EXPECTED_CORPUS here"
    )


def test_head_dim_48_rejected(tmp_path: Path) -> None:
    spec = TinyModelSpec(hidden_size=192, num_attention_heads=4, num_key_value_heads=2)
    assert spec.head_dim == 48
    with pytest.raises(ValueError, match=r"head_dim 48 .*not supported by the vLLM CPU"):
        spec.validate()
    with pytest.raises(ValueError, match="head_dim 48"):
        build_model(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("head_dim", SUPPORTED_HEAD_DIMS)
def test_supported_head_dims_accepted(head_dim: int) -> None:
    TinyModelSpec(hidden_size=head_dim * 2, num_attention_heads=2, num_key_value_heads=1).validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_key_value_heads": 3}, "must divide"),
        ({"hidden_size": 250}, "not divisible"),
        ({"vocab_size": 100}, "too small"),
        ({"dtype": "int8"}, "dtype"),
        ({"num_hidden_layers": 0}, "positive"),
        ({"name": "../evil"}, "directory name"),
    ],
)
def test_invalid_specs(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **changes).validate()  # type: ignore[arg-type]


def test_kv_bytes_per_token_from_spec() -> None:
    assert kv_bytes_per_token(TINY) == 2 * 4 * 2 * 64 * 4 == 4096
    assert kv_bytes_per_token(TINY, dtype="bfloat16") == 2048
    assert kv_bytes_per_token(SMALL) == 2 * 30 * 3 * 64 * 4
    assert kv_bytes_per_token(dataclasses.replace(TINY, dtype="bfloat16")) == 2048
    with pytest.raises(ValueError, match="unknown dtype"):
        kv_bytes_per_token(TINY, dtype="int3")


def test_kv_bytes_per_token_from_config(tmp_path: Path) -> None:
    cfg = {
        "hidden_size": 576,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "num_hidden_layers": 30,
        "torch_dtype": "bfloat16",
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    expected = 2 * 30 * 3 * 64 * 2
    assert kv_bytes_per_token(tmp_path) == expected
    assert kv_bytes_per_token(str(tmp_path / "config.json")) == expected
    assert kv_bytes_per_token(tmp_path, dtype="float32") == 2 * expected


def test_default_model_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert default_model_dir(TINY) == tmp_path / f"tiny-llama-{TINY.key()[:12]}"
    assert default_model_dir(SMALL) == tmp_path / f"small-llama-{SMALL.key()[:12]}"


def test_default_model_dir_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.delenv(CACHE_ENV, raising=False)
    expected = Path(platformdirs.user_cache_dir("sagellm-obs")) / "models"
    assert default_model_dir(TINY) == expected / f"tiny-llama-{TINY.key()[:12]}"


def test_import_is_light() -> None:
    code = (
        "import sys, sagellm_obs.models\n"
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers', 'safetensors', 'vllm')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == ""
