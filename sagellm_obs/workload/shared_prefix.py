"""The ``shared_prefix`` workload: a few long system prompts, many short user suffixes.

``families`` system prompts ("families") of about ``prefix_tokens`` tokens each (400 by default:
with 128-token KV blocks that is three full blocks a prefix cache can reuse) are each followed,
request after request, by a fresh user suffix of about ``suffix_tokens`` tokens (30 by default).
Requests are spread evenly over the families and interleaved in a seeded random order, so a prefix
cache sees every family again and again, mixed with the others. The default workload of
``sagellm-obs run``, :mod:`~sagellm_obs.workload.phases`, opens and closes with it.

The prompt of a request is ``family_prefix + "\\n\\n" + suffix``: every request of a family starts
with the same :func:`family_prefix` string, character for character. The intended sharing ratio,
shared prefix tokens over prompt tokens, is :func:`shared_prefix_ratio` (about 0.93 by default);
it is computed from exact word counts, so it is also the exact word ratio of every prompt.
"""

from __future__ import annotations

import random

from sagellm_obs.workload.arrivals import ArrivalLike, schedule
from sagellm_obs.workload.item import WorkItem, check_positive, make_request
from sagellm_obs.workload.text import TextGenerator, words_for_tokens

__all__ = [
    "DEFAULT_FAMILIES",
    "DEFAULT_PREFIX_TOKENS",
    "DEFAULT_SUFFIX_TOKENS",
    "PREFIX_SEPARATOR",
    "family_name",
    "family_prefix",
    "shared_prefix",
    "shared_prefix_ratio",
]

KIND = "shared_prefix"
DEFAULT_FAMILIES = 4
DEFAULT_PREFIX_TOKENS = 400
DEFAULT_SUFFIX_TOKENS = 30
PREFIX_SEPARATOR = "\n\n"
"""Between the shared prefix and the per-request suffix."""


def family_name(family: int) -> str:
    """Name of family number ``family`` (``"family-00"``), used in ``WorkItem.family``."""
    return f"family-{family:02d}"


def family_prefix(seed: int, family: int, prefix_tokens: int = DEFAULT_PREFIX_TOKENS) -> str:
    """The shared system prompt of one family (exactly ``words_for_tokens(prefix_tokens)`` words).

    Args:
        seed: Workload seed.
        family: Family number.
        prefix_tokens: Approximate length in tokens.

    Returns:
        The prefix text; depends only on the three arguments.
    """
    return TextGenerator(f"{KIND}:{seed}:family:{family}").text(prefix_tokens)


def shared_prefix_ratio(
    prefix_tokens: int = DEFAULT_PREFIX_TOKENS, suffix_tokens: int = DEFAULT_SUFFIX_TOKENS
) -> float:
    """Intended share of each prompt that is its family's prefix.

    Args:
        prefix_tokens: Prefix length argument of :func:`shared_prefix`.
        suffix_tokens: Suffix length argument of :func:`shared_prefix`.

    Returns:
        ``prefix_words / (prefix_words + suffix_words)`` with the exact word counts the generator
        uses; under the :data:`~sagellm_obs.workload.text.TOKENS_PER_WORD` assumption this is also
        the token ratio (``400 / (400 + 30) ≈ 0.93`` by default).
    """
    prefix_words = words_for_tokens(prefix_tokens)
    total = prefix_words + words_for_tokens(suffix_tokens)
    return prefix_words / total if total else 0.0


def shared_prefix(
    *,
    seed: int = 0,
    n_requests: int = 64,
    max_tokens: int = 32,
    families: int = DEFAULT_FAMILIES,
    prefix_tokens: int = DEFAULT_PREFIX_TOKENS,
    suffix_tokens: int = DEFAULT_SUFFIX_TOKENS,
    arrival: ArrivalLike = None,
    duration: float | None = None,
    stream: bool = False,
    temperature: float | None = 0.0,
) -> list[WorkItem]:
    """Requests that share one of ``families`` long prompt prefixes.

    Args:
        seed: Seed of texts, family order and (string ``arrival``) Poisson gaps.
        n_requests: Number of requests (> 0).
        max_tokens: Output tokens per request (> 0, exact thanks to ``ignore_eos``).
        families: Number of distinct prefixes (> 0); requests are spread evenly over them.
        prefix_tokens: Approximate prefix length in tokens (> 0).
        suffix_tokens: Approximate per-request suffix length in tokens (> 0).
        arrival: Arrival pattern, pattern string (``"poisson:20"``) or ``None`` for a burst.
        duration: When given, drop the requests scheduled after this many seconds.
        stream: Whether requests stream their output.
        temperature: Sampling temperature (greedy by default).

    Returns:
        The items, in send order; ``family`` and ``metadata["family"]`` name the family.

    Raises:
        ValueError: A count or length is not a positive integer, or a bad ``arrival``.
    """
    for name, value in (
        ("n_requests", n_requests),
        ("max_tokens", max_tokens),
        ("families", families),
        ("prefix_tokens", prefix_tokens),
        ("suffix_tokens", suffix_tokens),
    ):
        check_positive(name, value)
    prefixes = [family_prefix(seed, f, prefix_tokens) for f in range(families)]
    rng = random.Random(f"{KIND}:{seed}:order")
    order = [i % families for i in range(n_requests)]
    rng.shuffle(order)
    suffixes = TextGenerator(f"{KIND}:{seed}:suffix")
    items: list[WorkItem] = []
    for i, f in enumerate(order):
        name = family_name(f)
        prompt = prefixes[f] + PREFIX_SEPARATOR + suffixes.text(suffix_tokens)
        request = make_request(
            KIND,
            seed,
            i,
            max_tokens=max_tokens,
            prompt=prompt,
            family=name,
            stream=stream,
            temperature=temperature,
        )
        items.append(WorkItem(request=request, family=name, kind=KIND))
    return schedule(items, arrival, seed=seed, duration=duration)
