"""Prompt/answer length mixes: prefill-heavy, decode-heavy, and a blend of the two.

* ``long_prompt_short_answer``: about ``prompt_tokens`` = 1024 prompt tokens, ``max_tokens`` = 16
  output tokens: the time goes into prefill (TTFT-bound).
* ``short_prompt_long_answer``: about 32 prompt tokens, 256 output tokens: the time goes into
  decode (TPOT-bound).
* ``mixed``: both shapes in one run, ``long_ratio`` of them prefill-heavy, in a seeded random
  order: what chunked prefill and the scheduler have to balance.

Prompts are unrelated random texts (no shared prefix beyond chance). ``metadata["shape"]`` names
each request's shape, which for ``mixed`` tells the two populations apart.
"""

from __future__ import annotations

import math
import random

from sagellm_obs.workload.arrivals import ArrivalLike, schedule
from sagellm_obs.workload.item import WorkItem, check_positive, make_request
from sagellm_obs.workload.text import TextGenerator

__all__ = [
    "LONG_PROMPT_SHORT_ANSWER",
    "SHORT_PROMPT_LONG_ANSWER",
    "long_prompt_short_answer",
    "mixed",
    "short_prompt_long_answer",
]

LONG_PROMPT_SHORT_ANSWER = "long_prompt_short_answer"
SHORT_PROMPT_LONG_ANSWER = "short_prompt_long_answer"
_MIXED = "mixed"


def _shaped(
    kind: str,
    shapes: list[tuple[str, int, int]],
    *,
    seed: int,
    arrival: ArrivalLike,
    duration: float | None,
    stream: bool,
    temperature: float | None,
) -> list[WorkItem]:
    """One request per ``(shape, prompt_tokens, max_tokens)`` entry, in order, then scheduled."""
    gen = TextGenerator(f"{kind}:{seed}:prompts")
    items: list[WorkItem] = []
    for i, (shape, prompt_tokens, max_tokens) in enumerate(shapes):
        request = make_request(
            kind,
            seed,
            i,
            max_tokens=max_tokens,
            prompt=gen.text(prompt_tokens),
            stream=stream,
            temperature=temperature,
            metadata={"shape": shape},
        )
        items.append(WorkItem(request=request, kind=kind))
    return schedule(items, arrival, seed=seed, duration=duration)


def _uniform(
    kind: str,
    n_requests: int,
    prompt_tokens: int,
    max_tokens: int,
    *,
    seed: int,
    arrival: ArrivalLike,
    duration: float | None,
    stream: bool,
    temperature: float | None,
) -> list[WorkItem]:
    """``n_requests`` requests of one shape (validated), scheduled."""
    for name, value in (
        ("n_requests", n_requests),
        ("max_tokens", max_tokens),
        ("prompt_tokens", prompt_tokens),
    ):
        check_positive(name, value)
    return _shaped(
        kind,
        [(kind, prompt_tokens, max_tokens)] * n_requests,
        seed=seed,
        arrival=arrival,
        duration=duration,
        stream=stream,
        temperature=temperature,
    )


def long_prompt_short_answer(
    *,
    seed: int = 0,
    n_requests: int = 32,
    max_tokens: int = 16,
    prompt_tokens: int = 1024,
    arrival: ArrivalLike = None,
    duration: float | None = None,
    stream: bool = False,
    temperature: float | None = 0.0,
) -> list[WorkItem]:
    """Prefill-heavy requests: long prompts, short answers.

    Args:
        seed: Seed of texts and (string ``arrival``) Poisson gaps.
        n_requests: Number of requests (> 0).
        max_tokens: Output tokens per request (> 0, exact thanks to ``ignore_eos``).
        prompt_tokens: Approximate prompt length in tokens (> 0).
        arrival: Arrival pattern, pattern string (``"poisson:20"``) or ``None`` for a burst.
        duration: When given, drop the requests scheduled after this many seconds.
        stream: Whether requests stream their output.
        temperature: Sampling temperature (greedy by default).

    Returns:
        The items, in send order.

    Raises:
        ValueError: A count or length is not a positive integer, or a bad ``arrival``.
    """
    return _uniform(
        LONG_PROMPT_SHORT_ANSWER,
        n_requests,
        prompt_tokens,
        max_tokens,
        seed=seed,
        arrival=arrival,
        duration=duration,
        stream=stream,
        temperature=temperature,
    )


def short_prompt_long_answer(
    *,
    seed: int = 0,
    n_requests: int = 32,
    max_tokens: int = 256,
    prompt_tokens: int = 32,
    arrival: ArrivalLike = None,
    duration: float | None = None,
    stream: bool = False,
    temperature: float | None = 0.0,
) -> list[WorkItem]:
    """Decode-heavy requests: short prompts, long answers.

    Args:
        seed: Seed of texts and (string ``arrival``) Poisson gaps.
        n_requests: Number of requests (> 0).
        max_tokens: Output tokens per request (> 0, exact thanks to ``ignore_eos``).
        prompt_tokens: Approximate prompt length in tokens (> 0).
        arrival: Arrival pattern, pattern string (``"poisson:20"``) or ``None`` for a burst.
        duration: When given, drop the requests scheduled after this many seconds.
        stream: Whether requests stream their output.
        temperature: Sampling temperature (greedy by default).

    Returns:
        The items, in send order.

    Raises:
        ValueError: A count or length is not a positive integer, or a bad ``arrival``.
    """
    return _uniform(
        SHORT_PROMPT_LONG_ANSWER,
        n_requests,
        prompt_tokens,
        max_tokens,
        seed=seed,
        arrival=arrival,
        duration=duration,
        stream=stream,
        temperature=temperature,
    )


def mixed(
    *,
    seed: int = 0,
    n_requests: int = 64,
    max_tokens: int | None = None,
    long_ratio: float = 0.5,
    long_prompt_tokens: int = 1024,
    short_answer_tokens: int = 16,
    short_prompt_tokens: int = 32,
    long_answer_tokens: int = 256,
    arrival: ArrivalLike = None,
    duration: float | None = None,
    stream: bool = False,
    temperature: float | None = 0.0,
) -> list[WorkItem]:
    """Both shapes in one seeded random order.

    Exactly ``round(long_ratio * n_requests)`` requests are prefill-heavy (long prompt, short
    answer), the others decode-heavy (short prompt, long answer).

    Args:
        seed: Seed of texts, order and (string ``arrival``) Poisson gaps.
        n_requests: Number of requests (> 0).
        max_tokens: When given (> 0), an upper bound on every request's output length, so a
            global ``--max-tokens`` still bounds the run; ``None`` keeps the per-shape lengths.
        long_ratio: Fraction of prefill-heavy requests, in [0, 1].
        long_prompt_tokens: Prompt length of the prefill-heavy requests (> 0).
        short_answer_tokens: Output length of the prefill-heavy requests (> 0).
        short_prompt_tokens: Prompt length of the decode-heavy requests (> 0).
        long_answer_tokens: Output length of the decode-heavy requests (> 0).
        arrival: Arrival pattern, pattern string (``"poisson:20"``) or ``None`` for a burst.
        duration: When given, drop the requests scheduled after this many seconds.
        stream: Whether requests stream their output.
        temperature: Sampling temperature (greedy by default).

    Returns:
        The items, in send order; ``metadata["shape"]`` names each request's shape.

    Raises:
        ValueError: A count or length is not a positive integer, ``long_ratio`` is outside
            [0, 1], or a bad ``arrival``.
    """
    for name, value in (
        ("n_requests", n_requests),
        ("long_prompt_tokens", long_prompt_tokens),
        ("short_answer_tokens", short_answer_tokens),
        ("short_prompt_tokens", short_prompt_tokens),
        ("long_answer_tokens", long_answer_tokens),
    ):
        check_positive(name, value)
    if max_tokens is not None:
        check_positive("max_tokens", max_tokens)
        short_answer_tokens = min(short_answer_tokens, max_tokens)
        long_answer_tokens = min(long_answer_tokens, max_tokens)
    if not (isinstance(long_ratio, (int, float)) and math.isfinite(long_ratio)) or not (
        0.0 <= long_ratio <= 1.0
    ):
        raise ValueError(f"long_ratio must be in [0, 1], got {long_ratio!r}")
    n_long = round(long_ratio * n_requests)
    shapes = [(LONG_PROMPT_SHORT_ANSWER, long_prompt_tokens, short_answer_tokens)] * n_long + [
        (SHORT_PROMPT_LONG_ANSWER, short_prompt_tokens, long_answer_tokens)
    ] * (n_requests - n_long)
    random.Random(f"{_MIXED}:{seed}:order").shuffle(shapes)
    return _shaped(
        _MIXED,
        shapes,
        seed=seed,
        arrival=arrival,
        duration=duration,
        stream=stream,
        temperature=temperature,
    )
