"""A short description of a workload, printed before a run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sagellm_obs.workload.item import WorkItem
from sagellm_obs.workload.text import TOKENS_PER_WORD

__all__ = ["WorkloadSummary", "summary_of"]


@dataclass(frozen=True)
class WorkloadSummary:
    """Counts and sizes of a list of work items.

    Attributes:
        n_items: Number of items.
        kinds: Items per workload name, in first-seen order.
        n_families: Distinct non-``None`` families.
        n_sessions: Distinct non-``None`` session ids.
        n_chat: Items sending ``messages`` rather than a ``prompt``.
        n_stream: Items requesting a streamed output.
        mean_prompt_words: Mean words sent per request (all messages of a chat request).
        max_prompt_words: Largest words sent by one request.
        mean_max_tokens: Mean ``max_tokens``.
        total_max_tokens: Sum of ``max_tokens`` (the output tokens of the run with
            ``ignore_eos``).
        n_scheduled: Items with a send time (``at`` not ``None``).
        first_at: Earliest send time, seconds; ``None`` when nothing is scheduled.
        last_at: Latest send time, seconds; ``None`` when nothing is scheduled.
    """

    n_items: int
    kinds: dict[str, int]
    n_families: int
    n_sessions: int
    n_chat: int
    n_stream: int
    mean_prompt_words: float
    max_prompt_words: int
    mean_max_tokens: float
    total_max_tokens: int
    n_scheduled: int
    first_at: float | None
    last_at: float | None

    @property
    def span_s(self) -> float | None:
        """Seconds between the first and the last scheduled send, ``None`` when none is."""
        if self.first_at is None or self.last_at is None:
            return None
        return self.last_at - self.first_at

    @property
    def mean_prompt_tokens(self) -> float:
        """Estimated mean prompt tokens: words times :data:`~.text.TOKENS_PER_WORD`."""
        return self.mean_prompt_words * TOKENS_PER_WORD

    def __str__(self) -> str:
        """A few human-readable lines."""
        kinds = ", ".join(f"{k}: {n}" for k, n in self.kinds.items()) or "none"
        lines = [
            f"{self.n_items} requests ({kinds})",
            f"families: {self.n_families}, sessions: {self.n_sessions}, chat: {self.n_chat}, "
            f"streamed: {self.n_stream}",
            f"prompt: {self.mean_prompt_words:.1f} words on average "
            f"(~{self.mean_prompt_tokens:.0f} tokens), {self.max_prompt_words} at most",
            f"max_tokens: {self.mean_max_tokens:.1f} on average, {self.total_max_tokens} in total",
        ]
        unscheduled = self.n_items - self.n_scheduled
        if self.span_s is None:
            lines.append(
                "arrivals: none scheduled (closed loop)" if self.n_items else "arrivals: -"
            )
        else:
            text = (
                f"arrivals: {self.first_at:.3f} s to {self.last_at:.3f} s "
                f"(span {self.span_s:.3f} s)"
            )
            if unscheduled:
                text += f", {unscheduled} unscheduled"
            lines.append(text)
        return "\n".join(lines)


def summary_of(items: Sequence[WorkItem]) -> WorkloadSummary:
    """Summarises ``items`` for printing before a run.

    Args:
        items: The work items.

    Returns:
        The summary (zeros and ``None`` for an empty list).
    """
    n = len(items)
    words = [item.prompt_words for item in items]
    max_tokens = [item.request.max_tokens for item in items]
    times = [item.at for item in items if item.at is not None]
    return WorkloadSummary(
        n_items=n,
        kinds=dict(Counter(item.kind for item in items)),
        n_families=len({item.family for item in items if item.family is not None}),
        n_sessions=len({item.session_id for item in items if item.session_id is not None}),
        n_chat=sum(1 for item in items if not item.request.prompt and item.request.messages),
        n_stream=sum(1 for item in items if item.request.stream),
        mean_prompt_words=sum(words) / n if n else 0.0,
        max_prompt_words=max(words, default=0),
        mean_max_tokens=sum(max_tokens) / n if n else 0.0,
        total_max_tokens=sum(max_tokens),
        n_scheduled=len(times),
        first_at=min(times) if times else None,
        last_at=max(times) if times else None,
    )
