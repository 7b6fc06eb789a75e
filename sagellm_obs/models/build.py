"""Offline builder of tiny random-weight Llama models (never touches the network).

:func:`build_model` writes a Hugging Face-format model directory that both ``transformers`` and
vLLM load: ``config.json``, ``generation_config.json``, ``model.safetensors`` (random weights drawn
under ``torch.manual_seed(spec.seed)``), a byte-level BPE ``tokenizer.json`` trained on the corpus
shipped in ``sagellm_obs/models/corpus``, ``tokenizer_config.json``, a ChatML
``chat_template.jinja`` and ``build_info.json``.

Crash and concurrency safety: the files are written into a temporary sibling directory, fsynced,
renamed into place (``os.replace``), and only then is the ``.complete`` marker written. A
directory without that marker is never treated as a model. Builders of the same directory
serialise on a sibling ``.<name>.lock`` file lock; a second builder waits, then finds the model
complete and returns it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sagellm_obs.models.info import BUILD_INFO, COMPLETE_MARKER, is_complete
from sagellm_obs.models.spec import BUILDER_VERSION, SPECIAL_TOKENS, TINY, TinyModelSpec

logger = logging.getLogger(__name__)

#: Environment variable overriding the cache root (models go to ``<root>/<name>-<key[:12]>``).
CACHE_ENV = "SAGELLM_OBS_MODEL_CACHE"

PAD, BOS, EOS, IM_START, IM_END = SPECIAL_TOKENS

#: ChatML template (also accepts OpenAI-style ``[{"type": "text", "text": ...}]`` content).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}\n"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}\n"
    "{%- if message['content'] is string -%}\n"
    "{{- message['content'] -}}\n"
    "{%- else -%}\n"
    "{%- for part in message['content'] -%}\n"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- endif -%}\n"
    "{{- '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}\n"
)

_TMP_INFIX = ".tmp-"
_OLD_INFIX = ".old-"


def cache_root() -> Path:
    """Return the directory under which default model directories live.

    Returns:
        ``$SAGELLM_OBS_MODEL_CACHE`` if set, else ``<user cache dir>/sagellm-obs/models``.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("sagellm-obs")) / "models"


def default_model_dir(spec: TinyModelSpec = TINY) -> Path:
    """Return where :func:`build_model` puts ``spec`` when no ``out_dir`` is given.

    Args:
        spec: The model spec.

    Returns:
        ``cache_root() / f"{spec.name}-{spec.key()[:12]}"``.
    """
    return cache_root() / f"{spec.name}-{spec.key()[:12]}"


def corpus_files() -> list[Path]:
    """Return the tokenizer training corpus shipped in the package, sorted by name.

    Returns:
        Paths of ``sagellm_obs/models/corpus/*.txt``.

    Raises:
        FileNotFoundError: If the corpus is missing (a broken install).
    """
    root = importlib.resources.files("sagellm_obs.models").joinpath("corpus")
    files = sorted(
        (Path(str(p)) for p in root.iterdir() if p.name.endswith(".txt")),
        key=lambda p: p.name,
    )
    if not files:
        raise FileNotFoundError(f"tokenizer corpus not found in {root}")
    return files


def corpus_digest() -> str:
    """Return a sha256 over the corpus file names and contents.

    Returns:
        Hex digest; changes whenever the corpus does (which should bump ``BUILDER_VERSION``).
    """
    h = hashlib.sha256()
    for p in corpus_files():
        h.update(p.name.encode("utf-8") + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


def build_model(
    spec: TinyModelSpec = TINY,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
) -> Path:
    """Build (or reuse) a random-weight Llama model directory, fully offline.

    Args:
        spec: What to build; validated first.
        out_dir: Target directory. Defaults to :func:`default_model_dir` (a user cache dir,
            overridable with ``$SAGELLM_OBS_MODEL_CACHE``).
        force: Rebuild even if a complete model for this spec is already there.

    Returns:
        The model directory, complete (``.complete`` marker present).

    Raises:
        ValueError: If the spec is invalid (e.g. a head size vLLM's CPU backend rejects).
        FileExistsError: If ``out_dir`` is a non-empty directory this builder did not create.
    """
    spec.validate()
    key = spec.key()
    target = Path(out_dir).expanduser() if out_dir is not None else default_model_dir(spec)
    target = target.absolute()
    if not force and is_complete(target, key):
        return target

    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with FileLock(str(lock_path)):
        if not force and is_complete(target, key):
            logger.debug("model built concurrently by another process: %s", target)
            return target
        _check_replaceable(target)
        _remove_leftovers(target)
        tmp = target.parent / f".{target.name}{_TMP_INFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            started = time.perf_counter()
            with _offline_env():
                _write_model_files(spec, key, tmp)
            _fsync_dir(tmp)
            _swap_into_place(tmp, target)
            _write_atomic(target / COMPLETE_MARKER, key + "\n")
            _fsync_dir(target)
            logger.info(
                "built %s (%s) in %.1f s",
                target,
                spec.name,
                time.perf_counter() - started,
            )
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- internals


def _check_replaceable(target: Path) -> None:
    """Refuse to replace a non-empty directory that is not one of our builds."""
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory")
    ours = (target / BUILD_INFO).is_file() or (target / COMPLETE_MARKER).is_file()
    if not ours and any(target.iterdir()):
        raise FileExistsError(
            f"{target} is a non-empty directory that does not look like a sagellm-obs model "
            f"(no {BUILD_INFO}); refusing to overwrite it"
        )


def _remove_leftovers(target: Path) -> None:
    """Delete temp/old dirs of crashed builders (safe: we hold the lock for ``target``)."""
    for infix in (_TMP_INFIX, _OLD_INFIX):
        for p in target.parent.glob(f".{target.name}{infix}*"):
            logger.debug("removing leftover %s", p)
            shutil.rmtree(p, ignore_errors=True)


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Atomically move the finished ``tmp`` dir to ``target``, replacing any previous one."""
    old: Path | None = None
    if target.exists():
        # Remove the marker first so the old directory never looks complete once we start.
        with contextlib.suppress(FileNotFoundError):
            (target / COMPLETE_MARKER).unlink()
        old = target.parent / f".{target.name}{_OLD_INFIX}{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _offline_env() -> Iterator[None]:
    """Force the Hugging Face libraries offline for the duration of the build."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update(dict.fromkeys(names, "1"))
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _fsync_dir(path: Path) -> None:
    """Flush a directory entry (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _corpus_paragraphs() -> Iterator[str]:
    for p in corpus_files():
        for para in p.read_text(encoding="utf-8").split("\n\n"):
            if para.strip():
                yield para


def _train_tokenizer(spec: TinyModelSpec) -> Any:
    """Train the byte-level BPE on the shipped corpus (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_paragraphs(), trainer=trainer)
    for i, token in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(token) != i:  # pragma: no cover - guards a tokenizers behaviour change
            raise RuntimeError(f"special token {token} did not get id {i}")
    return tok


def _tokenizer_config(spec: TinyModelSpec) -> dict[str, Any]:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": None,
        "additional_special_tokens": [IM_START, IM_END],
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": spec.max_position_embeddings,
        "padding_side": "left",
        "added_tokens_decoder": {
            str(i): {
                "content": token,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for i, token in enumerate(SPECIAL_TOKENS)
        },
        "chat_template": CHAT_TEMPLATE,
    }


def _model_config(spec: TinyModelSpec) -> dict[str, Any]:
    """Return ``config.json`` content (plain dict, no transformers import needed)."""
    ids = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": ids[BOS],
        "eos_token_id": ids[EOS],
        "pad_token_id": ids[PAD],
        "head_dim": spec.head_dim,
        "hidden_act": "silu",
        "hidden_size": spec.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": spec.intermediate_size,
        "max_position_embeddings": spec.max_position_embeddings,
        "mlp_bias": False,
        "num_attention_heads": spec.num_attention_heads,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_key_value_heads": spec.num_key_value_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": spec.rms_norm_eps,
        "rope_parameters": {"rope_theta": spec.rope_theta, "rope_type": "default"},
        "rope_theta": spec.rope_theta,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "torch_dtype": spec.dtype,
        "dtype": spec.dtype,
        "use_cache": True,
        "vocab_size": spec.vocab_size,
    }


def _generation_config() -> dict[str, Any]:
    ids = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    return {
        "bos_token_id": ids[BOS],
        "eos_token_id": [ids[IM_END], ids[EOS]],
        "pad_token_id": ids[PAD],
    }


def _write_weights(spec: TinyModelSpec, config: dict[str, Any], path: Path) -> int:
    """Draw the random weights under ``spec.seed`` and save them; return the parameter count."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    model_cls: Any = LlamaForCausalLM  # transformers' partial annotations trip mypy --strict
    hf_config = LlamaConfig(
        **{k: v for k, v in config.items() if k not in ("architectures", "model_type")}
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model: Any = model_cls(hf_config)
    model = model.to(dtype=getattr(torch, spec.dtype))
    state = {
        name: tensor.detach().contiguous()
        for name, tensor in model.state_dict().items()
        if not (spec.tie_word_embeddings and name == "lm_head.weight")
    }
    n_params = int(sum(t.numel() for t in state.values()))
    save_file(state, str(path), metadata={"format": "pt"})
    _fsync_file(path)
    return n_params


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for dist in ("torch", "transformers", "tokenizers", "safetensors"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # pragma: no cover - all four are needed to build
            out[dist] = "unknown"
    return out


def _write_model_files(spec: TinyModelSpec, key: str, out: Path) -> None:
    """Write every model file into ``out`` (a fresh temp dir)."""
    # build_info.json goes first: it marks the directory as ours even if the build dies.
    info: dict[str, Any] = {
        "builder": "sagellm_obs.models",
        "builder_version": BUILDER_VERSION,
        "key": key,
        "spec": spec.to_dict(),
        "corpus_sha256": corpus_digest(),
        "num_parameters": spec.num_parameters(),
        "versions": _library_versions(),
    }
    _write_json(out / BUILD_INFO, info)

    tok = _train_tokenizer(spec)
    _write_text(out / "tokenizer.json", tok.to_str(pretty=True) + "\n")
    _write_json(out / "tokenizer_config.json", _tokenizer_config(spec))
    _write_text(out / "chat_template.jinja", CHAT_TEMPLATE)

    config = _model_config(spec)
    _write_json(out / "config.json", config)
    _write_json(out / "generation_config.json", _generation_config())

    n_params = _write_weights(spec, config, out / "model.safetensors")
    if n_params != spec.num_parameters():  # pragma: no cover - guards a transformers change
        raise RuntimeError(f"built {n_params} parameters, spec predicts {spec.num_parameters()}")
    info["tokenizer_vocab_size"] = tok.get_vocab_size()
    _write_json(out / BUILD_INFO, info)
