"""Real builds of the tiny model: loading, generation, tokenizer, caching and crash safety."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sagellm_obs.models import (
    CHAT_TEMPLATE,
    COMPLETE_MARKER,
    SPECIAL_TOKENS,
    TINY,
    TinyModelSpec,
    build_model,
    describe,
    is_complete,
    kv_bytes_per_token,
)
from sagellm_obs.models import build as build_module

#: A spec small enough to build in well under a second (head_dim 32, one layer).
MICRO = TinyModelSpec(
    name="micro-llama",
    hidden_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    intermediate_size=128,
    vocab_size=512,
    max_position_embeddings=256,
)

EXPECTED_FILES = {
    COMPLETE_MARKER,
    "build_info.json",
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
}

UNICODE_SAMPLES = [
    "Hello, world!",
    "  leading and trailing spaces \t\n",
    "Grüße aus Köln — naïve café, ½ € 3,50",
    "日本語のテキストと中文文本",
    "Съешь же ещё этих мягких французских булок",
    "emoji 🙂👩‍💻🇫🇷 and a rare one 𓂀 plus \u200b zero width",
    "code: def f(x):\n    return x ** 2  # ∑ x²",
    "مرحبا بالعالم",
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_layout(tiny_model: tuple[Path, float], model_cache: Path) -> None:
    path, elapsed = tiny_model
    assert path == model_cache / f"tiny-llama-{TINY.key()[:12]}"
    assert {p.name for p in path.iterdir()} == EXPECTED_FILES
    assert is_complete(path, TINY.key())
    assert (path / COMPLETE_MARKER).read_text().strip() == TINY.key()
    assert (path / "chat_template.jinja").read_text() == CHAT_TEMPLATE
    assert elapsed < 60, f"tiny build took {elapsed:.1f} s"
    print(f"\ntiny build: {elapsed:.2f} s")


def test_config_files(tiny_model: tuple[Path, float]) -> None:
    path, _ = tiny_model
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["torch_dtype"] == "float32"
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (1, 2, 0)
    assert cfg["head_dim"] == 64
    gen = json.loads((path / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [4, 2]
    tok_cfg = json.loads((path / "tokenizer_config.json").read_text())
    assert (tok_cfg["bos_token"], tok_cfg["eos_token"], tok_cfg["pad_token"]) == (
        "<|bos|>",
        "<|eos|>",
        "<|pad|>",
    )
    assert tok_cfg["model_max_length"] == 2048
    assert tok_cfg["chat_template"] == CHAT_TEMPLATE
    info = json.loads((path / "build_info.json").read_text())
    assert info["key"] == TINY.key()
    assert info["tokenizer_vocab_size"] == 2048


def test_describe(tiny_model: tuple[Path, float]) -> None:
    path, _ = tiny_model
    d = describe(path)
    json.dumps(d)  # printable
    assert d["complete"] is True
    assert d["key"] == TINY.key()
    assert d["architecture"] == "LlamaForCausalLM"
    assert d["num_parameters"] == TINY.num_parameters() == 3_410_176
    assert d["weights_bytes"] > 4 * d["num_parameters"]
    assert 13_000_000 < d["total_bytes"] < 16_000_000
    assert d["kv_bytes_per_token"] == kv_bytes_per_token(path) == kv_bytes_per_token(TINY)
    assert d["spec"] == TINY.to_dict()
    assert {f["name"] for f in d["files"]} == EXPECTED_FILES


@pytest.mark.usefixtures("offline")
def test_transformers_load_and_generate(tiny_model: tuple[Path, float]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _ = tiny_model
    started = time.perf_counter()
    model: Any = AutoModelForCausalLM.from_pretrained(path)
    tok: Any = AutoTokenizer.from_pretrained(path)
    print(f"\ntransformers load: {time.perf_counter() - started:.2f} s")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == TINY.num_parameters()
    ids = tok("The queue grows when", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **ids, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0
        )
    assert out.shape == (1, ids["input_ids"].shape[1] + 6)
    assert int(out.max()) < TINY.vocab_size
    logits = model(**ids).logits
    assert logits.shape == (1, ids["input_ids"].shape[1], TINY.vocab_size)
    assert torch.isfinite(logits).all()


@pytest.mark.usefixtures("offline")
def test_tokenizer_specials_and_chat_template(tiny_model: tuple[Path, float]) -> None:
    from transformers import AutoTokenizer

    path, _ = tiny_model
    tok: Any = AutoTokenizer.from_pretrained(path)
    assert len(tok) == TINY.vocab_size
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 0)
    assert tok.model_max_length == TINY.max_position_embeddings
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Héllo 🙂"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHéllo 🙂<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == 3
    assert ids.count(3) == 3
    assert ids.count(4) == 2
    # OpenAI-style content parts render the same.
    parts = [{"role": "user", "content": [{"type": "text", "text": "Héllo 🙂"}]}]
    assert (
        tok.apply_chat_template(parts, tokenize=False) == "<|im_start|>user\nHéllo 🙂<|im_end|>\n"
    )


@pytest.mark.usefixtures("offline")
def test_tokenizer_unicode_round_trip(tiny_model: tuple[Path, float]) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    path, _ = tiny_model
    tok: Any = AutoTokenizer.from_pretrained(path)
    raw = Tokenizer.from_file(str(path / "tokenizer.json"))
    for text in UNICODE_SAMPLES:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids, text
        assert all(5 <= i < TINY.vocab_size for i in ids), text
        assert tok.decode(ids) == text
        assert raw.decode(raw.encode(text).ids) == text
    # Trained merges actually compress English.
    english = "The engineer measured the latency of every request before the sun came up."
    assert len(tok(english)["input_ids"]) < len(english.encode()) / 2.5


def test_second_build_reuses(tiny_model: tuple[Path, float], model_cache: Path) -> None:
    path, _ = tiny_model
    weights = path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    started = time.perf_counter()
    again = build_model(TINY, path)
    elapsed = time.perf_counter() - started
    assert again == path
    assert weights.stat().st_mtime_ns == before
    assert elapsed < 0.5, f"reuse took {elapsed:.3f} s"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAGELLM_OBS_MODEL_CACHE", str(model_cache))
        assert build_model() == path
    assert weights.stat().st_mtime_ns == before


def test_force_rebuild_is_byte_identical(tiny_model: tuple[Path, float]) -> None:
    path, _ = tiny_model
    files = ["model.safetensors", "tokenizer.json", "config.json", "tokenizer_config.json"]
    before = {name: sha256(path / name) for name in files}
    inode = (path / "model.safetensors").stat().st_ino
    started = time.perf_counter()
    assert build_model(TINY, path, force=True) == path
    print(f"\nforced tiny rebuild: {time.perf_counter() - started:.2f} s")
    assert (path / "model.safetensors").stat().st_ino != inode  # really rewritten
    assert {name: sha256(path / name) for name in files} == before
    assert is_complete(path, TINY.key())
    assert not list(path.parent.glob(f".{path.name}.tmp-*"))
    assert not list(path.parent.glob(f".{path.name}.old-*"))


def test_seed_changes_weights(tmp_path: Path) -> None:
    a = build_model(MICRO, tmp_path / "a")
    b = build_model(dataclasses.replace(MICRO, seed=1), tmp_path / "b")
    assert sha256(a / "model.safetensors") != sha256(b / "model.safetensors")
    assert sha256(a / "tokenizer.json") == sha256(b / "tokenizer.json")


def test_incomplete_dir_is_not_a_model(tmp_path: Path) -> None:
    target = build_model(MICRO, tmp_path / "m")
    weights_sha = sha256(target / "model.safetensors")
    # Simulate a crash after the rename but before the marker: files there, no .complete.
    (target / COMPLETE_MARKER).unlink()
    (target / "model.safetensors").write_bytes(b"truncated")
    assert not is_complete(target)
    assert describe(target)["complete"] is False
    assert describe(target)["num_parameters"] is None
    rebuilt = build_model(MICRO, target)
    assert rebuilt == target
    assert is_complete(target, MICRO.key())
    assert sha256(target / "model.safetensors") == weights_sha


def test_leftover_temp_dir_is_ignored_and_cleaned(tmp_path: Path) -> None:
    target = tmp_path / "m"
    # A crashed builder's temp dir: complete-looking content but no marker, and not the target.
    stale = tmp_path / ".m.tmp-99999-deadbeef"
    stale.mkdir()
    (stale / "build_info.json").write_text("{}")
    (stale / "config.json").write_text("{}")
    assert not is_complete(stale)
    assert not target.exists()
    assert build_model(MICRO, target) == target
    assert is_complete(target, MICRO.key())
    assert not stale.exists()


def test_crash_mid_build_leaves_nothing_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "m"

    def boom(*args: object, **kwargs: object) -> int:
        raise RuntimeError("simulated crash while writing weights")

    monkeypatch.setattr(build_module, "_write_weights", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_model(MICRO, target)
    assert not target.exists()
    assert not list(tmp_path.glob(".m.tmp-*"))
    monkeypatch.undo()
    assert is_complete(build_model(MICRO, target), MICRO.key())


def test_marker_for_another_spec_triggers_rebuild(tmp_path: Path) -> None:
    target = build_model(MICRO, tmp_path / "m")
    other = dataclasses.replace(MICRO, seed=7)
    assert not is_complete(target, other.key())
    build_model(other, target)
    assert is_complete(target, other.key())
    assert json.loads((target / "build_info.json").read_text())["spec"]["seed"] == 7


def test_refuses_to_overwrite_foreign_dir(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        build_model(MICRO, target)
    assert (target / "notes.txt").read_text() == "keep me"


def test_concurrent_builders(tmp_path: Path) -> None:
    target = tmp_path / "m"
    results: list[Path] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(build_model(MICRO, target))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert results == [target] * 3
    assert is_complete(target, MICRO.key())
    assert {p.name for p in target.iterdir()} == EXPECTED_FILES
    assert not list(tmp_path.glob(".m.tmp-*"))
