"""Small calls into vLLM the engine makes: sampling parameters, the tokenizer, model facts.

vLLM is imported inside the functions: importing this module does not load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from sagellm_obs.engine.convert import invalid

_INT64 = range(-(2**63), 2**63)


def is_client_error(exc: BaseException) -> bool:
    """vLLM's request errors: ``ValueError`` and its ``VLLMClientError`` family (HTTP 4xx)."""
    if isinstance(exc, ValueError):
        return True
    return any(cls.__name__ == "VLLMClientError" for cls in type(exc).__mro__)


def check_text(text: str, field: str) -> None:
    """Text vLLM's tokenizer cannot encode (a lone surrogate) is the request's fault."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(field, "text is not valid Unicode (a lone surrogate)") from None


@functools.cache
def _sampling_params_class() -> tuple[Any, Any, Any, dict[str, bool]]:
    """vLLM's ``SamplingParams``, ``DELTA``, ``FINAL_ONLY`` and the keywords that mark one made
    for a single request, imported once: ``from vllm import ...`` goes through vLLM's lazy
    module ``__getattr__`` each time (~7 µs a request)."""
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    # AsyncLLM.add_request deep-copies parameters a caller may share (~37 µs); ours are made
    # for one request, and vLLM's own server marks its so. Older vLLM has no such field.
    fresh = {"skip_clone": True} if hasattr(SamplingParams, "skip_clone") else {}
    return SamplingParams, RequestOutputKind.DELTA, RequestOutputKind.FINAL_ONLY, fresh


def sampling_params(kwargs: dict[str, Any], *, final_only: bool = False) -> Any:
    """vLLM ``SamplingParams``; bad values raise ``INVALID_ARGUMENT``.

    Outputs are ``DELTA`` (each output the tokens since the last), or with ``final_only`` one
    output when the request ends (``FINAL_ONLY``), as vLLM's server asks for a request that is
    not streamed: vLLM then builds no output per step, and nothing wakes per token. Each call
    makes parameters for one request, not to be shared: vLLM does not deep-copy them.

    Parameters of plain values (numbers, text, flags: most requests') are copied from ones made
    and checked by vLLM for the same values and types (:func:`_template`): ~2 µs against
    ~5 – 10 µs for vLLM's checks each time (its settings cached or not).
    """
    # Seeds are most often per request: a template each would only churn the cache.
    key: list[tuple[str, type, Any]] | None = [] if kwargs.get("seed") is None else None
    for name, value in kwargs.items():
        if isinstance(value, int) and value not in _INT64:  # what vLLM's core can take
            field = name if name == "max_tokens" else f"sampling_params.{name}"
            raise invalid(field, "must fit in a signed 64-bit integer")
        if key is not None:
            kind = type(value)
            if kind in _PLAIN:
                key.append((name, kind, value))  # the type too: 1, 1.0 and True are equal keys
            else:
                key = None
    if key is None:
        return _new_params(kwargs, final_only)
    template, containers = _template(final_only, tuple(key))
    params = copy.copy(template)
    for name, make in containers:  # vLLM fills some in place (its stop ids): one per request
        setattr(params, name, make(getattr(template, name)))
    return params


_PLAIN = frozenset((bool, int, float, str, type(None)))


@functools.lru_cache(maxsize=256)
def _template(
    final_only: bool, key: tuple[tuple[str, type, Any], ...]
) -> tuple[Any, tuple[tuple[str, type], ...]]:
    """Parameters for ``key``'s (name, type, value) made by vLLM (raising what it raises), and
    their fields that hold a list, set or dict, with its type (the rest are plain values,
    shared safely)."""
    params = _new_params({name: value for name, _, value in key}, final_only)
    names = getattr(params, "__struct_fields__", None) or vars(params)
    values = ((n, getattr(params, n, None)) for n in names)
    return params, tuple((n, type(v)) for n, v in values if type(v) in (list, set, dict))


def _new_params(kwargs: dict[str, Any], final_only: bool) -> Any:
    new, delta, final, fresh = _sampling_params_class()
    kind = final if final_only else delta
    try:
        return new(output_kind=kind, **fresh, **kwargs)
    except Exception as exc:  # ValueError, TypeError, or VLLMValidationError (not a ValueError)
        if isinstance(exc, TypeError) or is_client_error(exc):
            raise invalid("sampling_params", str(exc)) from exc
        raise


async def get_tokenizer(llm: Any) -> Any:
    """The engine's tokenizer (a coroutine in some vLLM versions, an attribute in others)."""
    getter = getattr(llm, "get_tokenizer", None)
    if getter is not None:
        tok = getter()
        if asyncio.iscoroutine(tok):
            tok = await tok
        return tok
    return llm.tokenizer


def kv_bytes_per_token(llm: Any) -> int:
    """Bytes of K and V one token occupies across all layers, from vLLM's model config."""
    try:
        vc = llm.vllm_config
        mc, pc = vc.model_config, vc.parallel_config
        import torch

        itemsize = torch.empty((), dtype=mc.dtype).element_size()
        return int(
            2 * mc.get_num_layers(pc) * mc.get_num_kv_heads(pc) * mc.get_head_size() * itemsize
        )
    except Exception:
        return 0


def max_model_len(llm: Any) -> int:
    """The context length vLLM runs with (0 when unknown)."""
    try:
        return int(llm.vllm_config.model_config.max_model_len)
    except Exception:
        return 0


def vllm_version() -> str:
    """vLLM's version, or ``unknown``."""
    try:
        import vllm

        return str(vllm.__version__)
    except Exception:
        return "unknown"


# vLLM's init_tracer reads these while AsyncLLM starts (its EngineCore process inherits them)
# and leaves the endpoint in os.environ, where our own OTLP exporters would find it later.
_TRACING_ENV = (
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_BSP_SCHEDULE_DELAY",
)


def vllm_tracing_env(endpoint: str | None, ours: bool) -> AbstractContextManager[None]:
    """The environment vLLM's tracing starts in, restored afterwards.

    With ``ours`` (the endpoint is our in-process receiver) vLLM exports OTLP/HTTP, whatever
    ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` says for the user's own collector, and batches for at
    most 500 ms (the SDK's default is 5 s) so its spans reach the run folder about when ours do.
    """
    if not endpoint:
        return contextlib.nullcontext()
    values = {}
    if ours:
        values["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/protobuf"
        values["OTEL_BSP_SCHEDULE_DELAY"] = os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "500")
    return scoped_env(values, restore=_TRACING_ENV)


@contextlib.contextmanager
def scoped_env(values: Mapping[str, str], restore: Iterable[str] = ()) -> Iterator[None]:
    """``values`` set in ``os.environ`` for the block (the processes vLLM starts then inherit
    them); afterwards those and the ``restore`` names get their previous values back, so an
    engine start leaves the caller's environment, and the subprocesses it starts later, as it
    found them."""
    saved = {name: os.environ.get(name) for name in (*values, *restore)}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
