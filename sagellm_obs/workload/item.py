"""The unit of a workload: a protocol :class:`~sagellm_obs.protocol.Request` plus when to send it.

Every generator of :mod:`sagellm_obs.workload` returns ``list[WorkItem]``. Synthetic requests are
built by :func:`make_request`, which fixes their conventions:

* ``request_id`` is ``f"{kind}-{seed}-{index:05d}"``: unique within a workload and the same for the
  same seed; ``trace_id`` equals ``request_id``.
* ``metadata`` is ``{"ignore_eos": True, "workload": kind, "family": family, ...}``.
  ``ignore_eos`` (our engine extension, see :mod:`sagellm_obs.engine.convert`) makes every output
  exactly ``max_tokens`` long, so runs are comparable whatever the model samples; ``family`` names
  the shared-prefix family or chat session the request belongs to (``None`` when it has none).
* ``temperature`` defaults to ``0.0`` (greedy), so a seeded run is reproducible end to end.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sagellm_obs.protocol import ChatMessage, Request

__all__ = [
    "WorkItem",
    "check_positive",
    "make_request",
    "prompt_words",
    "request_id_for",
]


@dataclass(frozen=True)
class WorkItem:
    """One request of a workload and its schedule.

    Attributes:
        request: The protocol request to send.
        at: Seconds after the start of the run at which to send it; ``None`` means "as soon as a
            concurrency slot frees" (closed-loop load, see
            :func:`~sagellm_obs.workload.arrivals.fixed_concurrency`).
        session_id: Chat session the request continues, if any; a runner should not send turn
            ``k`` of a session before turn ``k - 1`` has completed.
        family: Shared-prefix family or session the request belongs to, if any.
        kind: Name of the workload that produced it (``"shared_prefix"``, ``"replay"``...).
    """

    request: Request
    at: float | None = None
    session_id: str | None = None
    family: str | None = None
    kind: str = "custom"

    def with_at(self, at: float | None) -> WorkItem:
        """Returns a copy scheduled at ``at`` (the request object is shared, not copied)."""
        return dataclasses.replace(self, at=at)

    @property
    def prompt_words(self) -> int:
        """Whitespace-separated words of the prompt, or of all messages for a chat request."""
        return prompt_words(self.request)


def prompt_words(request: Request) -> int:
    """Number of whitespace-separated words a request sends (prompt, else every message).

    Args:
        request: The request.

    Returns:
        The word count (``0`` for an empty request).
    """
    if request.prompt:
        return len(request.prompt.split())
    return sum(len(m.content.split()) for m in request.messages or ())


def check_positive(name: str, value: object) -> None:
    """Raises a ``ValueError`` naming ``name`` unless ``value`` is an ``int`` > 0.

    Args:
        name: Argument name, for the message.
        value: The value to check.

    Raises:
        ValueError: ``value`` is not a positive integer (``bool`` is rejected too).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def request_id_for(kind: str, seed: int, index: int) -> str:
    """The synthetic request id convention: ``f"{kind}-{seed}-{index:05d}"``."""
    return f"{kind}-{seed}-{index:05d}"


def make_request(
    kind: str,
    seed: int,
    index: int,
    *,
    max_tokens: int,
    prompt: str = "",
    messages: list[ChatMessage] | None = None,
    family: str | None = None,
    stream: bool = False,
    temperature: float | None = 0.0,
    metadata: dict[str, Any] | None = None,
) -> Request:
    """Builds a synthetic request following the conventions of this module.

    Args:
        kind: Workload name (first part of the id, ``metadata["workload"]``).
        seed: Workload seed (second part of the id).
        index: Position of the request in the workload (last part of the id).
        max_tokens: Output tokens to generate (> 0); exact, thanks to ``ignore_eos``.
        prompt: Completion-style prompt.
        messages: Chat-style messages (used when ``prompt`` is empty).
        family: Shared-prefix family or session name (``metadata["family"]``).
        stream: Whether to stream the output.
        temperature: Sampling temperature; ``0.0`` (greedy) by default.
        metadata: Extra metadata entries, merged after the standard ones.

    Returns:
        The validated request.

    Raises:
        ValueError: ``max_tokens`` is not a positive integer.
    """
    check_positive("max_tokens", max_tokens)
    request_id = request_id_for(kind, seed, index)
    meta: dict[str, Any] = {"ignore_eos": True, "workload": kind, "family": family}
    meta.update(metadata or {})
    return Request(
        request_id=request_id,
        trace_id=request_id,
        prompt=prompt,
        messages=messages,
        max_tokens=max_tokens,
        stream=stream,
        temperature=temperature,
        metadata=meta,
    )
