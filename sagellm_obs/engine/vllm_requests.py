"""One request in vLLM's ``AsyncLLM``: added, its outputs read, aborted.

This is what ``AsyncLLM.generate`` does, without its async generator between vLLM's per-request
collector and the engine's own loop (every output wakes one frame fewer), and with the request's
abort output kept: ``generate`` drops it when its caller is cancelled, and with ``FINAL_ONLY``
outputs it is the only record of the tokens a cancelled request had.

The engine reads a collector as ``generate`` does: ``q.get_nowait() or await q.get()`` until an
output is ``finished``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Mapping
from typing import Any


async def add_request(
    llm: Any,
    request_id: str,
    prompt: str,
    params: Any,
    *,
    trace_headers: Mapping[str, str] | None = None,
    session_id: str | None = None,
) -> Any:
    """Add a request to vLLM; returns its output collector (vLLM's ``RequestOutputCollector``).

    Raises what vLLM raises for a request it refuses (a prompt longer than the context, ...).
    """
    kw: dict[str, Any] = {}
    if trace_headers:
        kw["trace_headers"] = trace_headers
    if session_id is not None:
        kw["session_id"] = session_id
    return await llm.add_request(request_id, prompt, params, **kw)


async def abort_request(llm: Any, q: Any, request_id: str) -> Any:
    """Abort an unfinished request in vLLM (scheduler and output processor); returns vLLM's
    final output of it (``finish_reason`` ``abort``; with ``FINAL_ONLY`` every token so far), or
    None when vLLM had nothing to say (the request had already left it)."""
    if _abort_takes_internal(llm.__class__):
        # vLLM >= 0.12 keys requests by an internal id (the collector's) with a random suffix.
        await llm.abort(q.request_id, internal=True)
    else:
        await llm.abort(request_id)
    return q.get_nowait()


def close(q: Any) -> None:
    """Release the collector (vLLM's ``generate`` closes it when the request leaves)."""
    closer = getattr(q, "close", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            closer()


@functools.cache
def _abort_takes_internal(cls: Any) -> bool:
    try:
        return "internal" in inspect.signature(cls.abort).parameters
    except (TypeError, ValueError, AttributeError):
        return False


__all__ = ["abort_request", "add_request", "close"]
