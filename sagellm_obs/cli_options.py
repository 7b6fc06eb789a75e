"""The command line's shared pieces: engine options of ``run`` and ``serve``, one-line errors.

Every error the CLI reports is one line on stderr (``error: ...``) and a non-zero exit code;
``--verbose`` shows vLLM's start-up output and, for an unexpected error, the traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from sagellm_obs import semconv as sc
from sagellm_obs.engine.config import EngineConfig
from sagellm_obs.engine.quiet import LEVELS, resolve_level
from sagellm_obs.workload.generators import WORKLOADS

err = Console(stderr=True, soft_wrap=True)

ENGINE_PANEL = "vLLM engine"

# --- options shared by run and serve -------------------------------------------------------------
PrefixCaching = Annotated[
    bool,
    typer.Option(
        "--prefix-caching/--no-prefix-caching",
        "--enable-prefix-caching/--no-enable-prefix-caching",
        help="vLLM automatic prefix caching.",
        rich_help_panel=ENGINE_PANEL,
    ),
]
MaxModelLen = Annotated[
    int | None,
    typer.Option(help="Context length (default 1024).", rich_help_panel=ENGINE_PANEL),
]
MaxNumSeqs = Annotated[
    int | None,
    typer.Option(help="Most requests vLLM runs in one step.", rich_help_panel=ENGINE_PANEL),
]
KvCacheMemory = Annotated[
    str | None,
    typer.Option(
        help="KV-cache size, e.g. 256MiB or 2GiB (default 256MiB); 'auto' lets vLLM decide.",
        rich_help_panel=ENGINE_PANEL,
    ),
]
RunKvCacheMemory = Annotated[
    str | None,
    typer.Option(
        "--kv-cache-memory",
        help="KV-cache size, e.g. 256MiB or 2GiB; 'auto' lets vLLM decide. Default: 20MiB for "
        "the tiny model (so the default workload fills it), else 256MiB.",
        rich_help_panel=ENGINE_PANEL,
    ),
]
BlockSize = Annotated[
    int | None,
    typer.Option(
        help="KV block size in tokens (CPU: a multiple of 32).", rich_help_panel=ENGINE_PANEL
    ),
]
EngineArg = Annotated[
    list[str] | None,
    typer.Option(
        "--engine-arg",
        metavar="KEY=VALUE",
        help="Any other vLLM EngineArgs field, repeatable: --engine-arg max_num_batched_tokens=512 "
        "(VALUE is read as JSON when it parses: numbers, true/false, lists).",
        rich_help_panel=ENGINE_PANEL,
    ),
]
LogLevel = Annotated[
    str | None,
    typer.Option(
        help=f"What vLLM and torch print while starting: {', '.join(LEVELS)} (default error).",
        rich_help_panel="Output",
    ),
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="vLLM's start-up lines (--log-level info) and tracebacks of unexpected errors.",
        rich_help_panel="Output",
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    err.print(f"[red]error:[/] {one_line(message)}", highlight=False, markup=True)
    raise typer.Exit(code)


def one_line(error: BaseException | str) -> str:
    """An error as one line: pydantic's messages joined, whitespace runs collapsed."""
    if isinstance(error, BaseException):
        errors = getattr(error, "errors", None)
        text = str(error)
        if callable(errors):
            with contextlib.suppress(Exception):  # not pydantic's errors()
                text = "; ".join(str(e.get("msg", e)) for e in errors())
        if not text:
            text = type(error).__name__
    else:
        text = error
    return re.sub(r"\s+", " ", text).strip()


def set_log_level(level: str | None, verbose: bool) -> str:
    """The level ``--log-level``/``--verbose`` ask for, put in ``$SAGELLM_OBS_LOG_LEVEL`` (which
    the engine reads)."""
    try:
        name = resolve_level(level or ("info" if verbose else None))
    except ValueError as exc:
        fail(f"--log-level: {exc}")
    os.environ[sc.ENV_LOG_LEVEL] = name
    return name


def verbose_requested() -> bool:
    """True when ``--verbose`` or a log level below ``warning`` was asked for."""
    return os.environ.get(sc.ENV_LOG_LEVEL, "") in ("info", "debug")


def workload_help() -> str:
    """``--workload``'s help: every registered workload by name."""
    return f"Workload: {', '.join(WORKLOADS)}; or a JSONL file of requests."


def check_workload(workload: str) -> None:
    """Exit with one line when ``workload`` is neither a known name nor an existing file."""
    key = workload.strip().lower().replace("-", "_")
    if key in WORKLOADS:
        return
    path = Path(workload)
    if path.is_file():
        return
    if path.suffix in (".jsonl", ".json") or os.sep in workload:
        fail(f"no workload file {workload}")
    fail(
        f"unknown workload {workload!r}; known workloads: {', '.join(WORKLOADS)} (or a JSONL file)"
    )


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int | None:
    """``256MiB``, ``2G``, ``1.5GiB`` or plain bytes -> bytes; ``auto`` -> None.

    Powers of 1024 with or without the ``i`` (``2G`` is 2 GiB), as vLLM's own size options.

    Raises:
        ValueError: Not a size.
    """
    if text.strip().lower() == "auto":
        return None
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"not a size: {text!r} (e.g. 256MiB, 2GiB, or 'auto')")
    number, unit = float(m.group(1)), m.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def parse_engine_arg(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> ``(key, value)``; VALUE as JSON when it parses, else the string.

    Raises:
        ValueError: No ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    key = key.strip().removeprefix("--").replace("-", "_")
    if not sep or not key:
        raise ValueError(f"--engine-arg {text!r}: use KEY=VALUE, e.g. max_num_seqs=4")
    raw = raw.strip()
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


# vLLM's argument names that are EngineConfig fields: they set the field (which records them).
_CONFIG_FIELDS = {f.name for f in fields(EngineConfig)} - {
    "model",
    "extra",
    "in_process",
    "log_level",
    "kv_events",
}


def engine_options(
    *,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    kv_cache_memory: str | None = None,
    block_size: int | None = None,
    enable_prefix_caching: bool | None = None,
    engine_arg: list[str] | None = None,
) -> dict[str, Any]:
    """:class:`EngineConfig` overrides from the command line's engine options.

    ``--engine-arg`` keys are checked against vLLM's ``EngineArgs`` (which imports vLLM) and win
    over the named options; those naming an :class:`EngineConfig` field set it.

    Raises:
        typer.Exit: A bad size or engine argument (reported as one line).
    """
    out: dict[str, Any] = {}
    if max_model_len is not None:
        out["max_model_len"] = max_model_len
    if kv_cache_memory is not None:
        try:
            out["kv_cache_memory_bytes"] = parse_size(kv_cache_memory)
        except ValueError as exc:
            fail(f"--kv-cache-memory: {exc}")
    if block_size is not None:
        out["block_size"] = block_size
    if enable_prefix_caching is not None:
        out["enable_prefix_caching"] = enable_prefix_caching
    extra: dict[str, Any] = {}
    if max_num_seqs is not None:
        extra["max_num_seqs"] = max_num_seqs
    for text in engine_arg or ():
        try:
            key, value = parse_engine_arg(text)
        except ValueError as exc:
            fail(str(exc))
        if key in _CONFIG_FIELDS:
            out[key] = value
        else:
            extra[key] = value
    if extra:
        check_engine_args_or_fail(extra)
        out["extra"] = extra
    return out


def check_engine_args_or_fail(args: dict[str, Any]) -> None:
    """:func:`~sagellm_obs.engine.config.check_engine_args`, its error as one line."""
    from sagellm_obs.engine.config import check_engine_args
    from sagellm_obs.engine.quiet import engine_start_output

    with engine_start_output():  # importing vLLM: keep its import-time output quiet too
        try:
            check_engine_args(args)
        except ValueError as exc:
            fail(f"--engine-arg: {exc}")
