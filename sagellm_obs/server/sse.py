"""Server-sent events: ``data: {...}\\n\\n`` frames, and a response that always closes its source.

Starlette cancels the streaming task when the client disconnects, but an async generator that
was suspended at a ``yield`` at that moment is only finalised later by the garbage collector.
:class:`EventStreamResponse` closes it explicitly, at once, so the engine request it drives is
aborted (and recorded as cancelled) when the client goes away.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

DONE = b"data: [DONE]\n\n"
"""The OpenAI end-of-stream frame."""

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(payload: dict[str, Any] | str) -> bytes:
    """One SSE ``data:`` frame of a JSON object (dict) or of pre-encoded JSON (str)."""
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response over an async generator of frames.

    Args:
        source: The frames; closed (``aclose``) when the response ends for any reason.
        headers: Extra response headers.
        also_close: More async generators to close afterwards (the engine stream ``source``
            reads from: ``source`` may never have started if the client left early).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        source: AsyncIterator[bytes],
        headers: dict[str, str] | None = None,
        also_close: Sequence[AsyncIterator[Any]] = (),
    ) -> None:
        super().__init__(source, headers={**SSE_HEADERS, **(headers or {})})
        self._closing = [source, *also_close]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream, then close the source even when the client went away."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                for gen in self._closing:
                    aclose = getattr(gen, "aclose", None)
                    if aclose is not None:
                        await aclose()
