"""One request in vLLM's ``AsyncLLM``: added, its outputs read, aborted.

This is what ``AsyncLLM.generate`` does, without its async generator between vLLM's per-request
collector and the engine's own loop (every output wakes one frame fewer), and with the request's
abort output kept: ``generate`` drops it when its caller is cancelled, and with ``FINAL_ONLY``
outputs it is the only record of the tokens a cancelled request had.

vLLM's collector (``RequestOutputCollector``) wakes its reader through an ``asyncio.Event``: a
coroutine frame, a waiter list and a clear per output. Our requests get an :class:`OutputSlot`
in its place, the same hand-off with a bare future, ~1 µs less of the frontend's CPU per output
(``python -m benchmarks._stream_replay``). The engine reads either as ``generate`` reads vLLM's:
``q.get_nowait() or await q.get()`` until an output is ``finished``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Mapping
from typing import Any


class OutputSlot:
    """vLLM's ``RequestOutputCollector`` for one generation request (``n`` = 1), woken by a bare
    future instead of an ``asyncio.Event``.

    It keeps the collector's contract, which vLLM's output handler relies on: ``put`` never
    blocks; an output not yet taken is merged with the next (``DELTA``: tokens and text
    appended; ``FINAL_ONLY``: replaced), so a slow reader gets fewer, larger outputs and vLLM
    never waits for it; an exception (vLLM's engine died) replaces what is held and is raised
    to the reader. One reader at a time, on the event loop's thread (as vLLM's).
    """

    __slots__ = ("_loop", "_waiter", "aggregate", "output", "request_id")

    def __init__(self, request_id: str, aggregate: bool, held: Any = None) -> None:
        self.request_id = request_id  # vLLM's internal id (what ``abort(internal=True)`` takes)
        self.aggregate = aggregate
        self.output: Any = held
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the reader's, kept: ~0.3 µs a wait

    def put(self, output: Any) -> None:
        held = self.output
        if held is None or isinstance(output, Exception):
            self.output = output
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():  # done: its reader was cancelled
                waiter.set_result(None)
        elif type(held) is type(output):  # vLLM's: merge generation outputs, replace others
            if hasattr(held, "add"):
                held.add(output, aggregate=self.aggregate)
            else:
                self.output = output

    async def get(self) -> Any:
        while (output := self.output) is None:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            await waiter
        self.output = None
        if isinstance(output, Exception):
            raise output
        return output

    def get_nowait(self) -> Any:
        output = self.output
        if output is not None:
            self.output = None
            if isinstance(output, Exception):
                raise output
        return output

    def close(self) -> None:
        return None


async def add_request(
    llm: Any,
    request_id: str,
    prompt: str,
    params: Any,
    *,
    trace_headers: Mapping[str, str] | None = None,
    session_id: str | None = None,
) -> Any:
    """Add a request to vLLM; returns what hands over its outputs: an :class:`OutputSlot`, or
    vLLM's ``RequestOutputCollector`` where the slot cannot take its place.

    Raises what vLLM raises for a request it refuses (a prompt longer than the context, ...).
    """
    kw: dict[str, Any] = {}
    if trace_headers:
        kw["trace_headers"] = trace_headers
    if session_id is not None:
        kw["session_id"] = session_id
    return _slot_for(llm, await llm.add_request(request_id, prompt, params, **kw))


def _slot_for(llm: Any, q: Any) -> Any:
    """An :class:`OutputSlot` in place of vLLM's collector ``q``, or ``q`` itself when vLLM's
    output processor does not hold it as the queue of ``q``'s request id (another vLLM layout;
    ``n`` > 1, whose child requests share ``q`` under ids of their own).

    vLLM's output handler runs on this thread and looks the queue up at every put, so the swap
    cannot lose an output; one it already put (an engine error) moves to the slot.
    """
    try:
        state = llm.output_processor.request_states.get(q.request_id)
        if state is None or state.queue is not q:  # n > 1: its children's ids hold q
            return q
        slot = OutputSlot(q.request_id, bool(q.aggregate), q.output)
    except Exception:  # another vLLM's internals: keep its collector
        return q
    state.queue = slot
    return slot


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
    """Release the hand-off (vLLM's ``generate`` closes its collector when the request leaves)."""
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


__all__ = ["OutputSlot", "abort_request", "add_request", "close"]
