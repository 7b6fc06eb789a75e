"""One request on its way through :class:`~sagellm_obs.engine.core.InstrumentedEngine`: what was
admitted (:class:`Flight`) and its life in vLLM (:class:`Outputs`: added, read, aborted)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sagellm_obs.engine import vllm_requests
from sagellm_obs.engine.outputs import RequestOutputs
from sagellm_obs.protocol import Error, Request
from sagellm_obs.telemetry import RequestRecord

if TYPE_CHECKING:
    from sagellm_obs.engine.core import InstrumentedEngine


@dataclass(slots=True)
class Flight:
    """One admitted request on its way through the engine."""

    req: Request
    prompt: str
    params: Any
    rec: RequestRecord
    ids: dict[str, str]
    outs: RequestOutputs
    error: Error | None = None  # what the request ends with when vLLM's outputs failed


class Outputs:
    """The request added to vLLM, as ``async with Outputs(engine, f) as q``: ``q`` hands over the
    request's outputs (an :class:`~sagellm_obs.engine.vllm_requests.OutputSlot`, or vLLM's own
    collector), or is None when vLLM refused the request (``f.error`` says why).

    Leaving the block before the request finished (cancelled, closed early, failed) aborts it in
    vLLM and takes vLLM's abort output first, so the record keeps the tokens and timing the
    request had. An exception out of the block is recorded
    (:meth:`InstrumentedEngine._interrupted`): a failure becomes ``f.error`` and is swallowed;
    cancellation and rejections propagate.
    """

    def __init__(self, engine: InstrumentedEngine, f: Flight) -> None:
        self._engine, self._f = engine, f
        self._q: Any = None

    async def __aenter__(self) -> Any:
        try:
            self._q = await self._engine._add(self._f)
        except BaseException as exc:
            if not self._record(exc):
                raise
        return self._q

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        q, f = self._q, self._f
        if q is None:
            return False
        try:
            if not f.outs.finished:
                last = None
                # A second cancellation while vLLM aborts must not lose the first's record.
                with contextlib.suppress(BaseException):
                    last = await vllm_requests.abort_request(self._engine.llm, q, f.req.request_id)
                if last is not None:
                    f.outs.add(last)
            return exc is not None and self._record(exc)
        finally:
            vllm_requests.close(q)

    def _record(self, exc: BaseException) -> bool:
        """Record what ``exc`` means for the request; True when it is swallowed as ``f.error``."""
        self._f.error = self._engine._interrupted(self._f, exc)
        return self._f.error is not None
