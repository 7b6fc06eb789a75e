"""The ``phases`` workload: a run that tells the KV-cache story in three acts.

1. **warm** (``warm_share`` of the requests): the :mod:`shared_prefix` requests. The prefix cache
   learns the families' system prompts and the hit rate climbs towards their shared share.
2. **pressure** (``pressure_share``): long unrelated prompts (``pressure_prompt_tokens``, spread
   ±20% so that decodes cross KV-block boundaries at different times) with longer answers. With a
   KV cache sized for a few of them (``sagellm-obs run`` sizes the tiny model's cache so), the cache
   fills past 80%, requests wait in the engine's queue and some are preempted; the hit rate falls,
   and the families' blocks are evicted.
3. **recover** (the rest): the shared-prefix requests again. The first of each family miss (their
   blocks were evicted under pressure), then the hit rate climbs back.

Requests come as a burst by default, so the runner's concurrency decides the load; each
item's ``metadata["phase"]`` names its act, and the frames carry it to the charts.
"""

from __future__ import annotations

import random

from sagellm_obs.workload.arrivals import ArrivalLike, schedule
from sagellm_obs.workload.item import WorkItem, check_positive, make_request
from sagellm_obs.workload.shared_prefix import (
    DEFAULT_FAMILIES,
    DEFAULT_PREFIX_TOKENS,
    DEFAULT_SUFFIX_TOKENS,
    PREFIX_SEPARATOR,
    family_name,
    family_prefix,
)
from sagellm_obs.workload.text import TextGenerator

__all__ = ["KIND", "PHASES", "phases"]

KIND = "phases"
PHASES = ("warm", "pressure", "recover")
"""The acts, in order (``metadata["phase"]``)."""


def _counts(n_requests: int, warm_share: float, pressure_share: float) -> tuple[int, int, int]:
    if warm_share < 0.0 or pressure_share < 0.0 or warm_share + pressure_share > 1.0:
        raise ValueError(
            f"warm_share ({warm_share}) and pressure_share ({pressure_share}) must be >= 0 "
            "and add up to at most 1"
        )
    warm = round(n_requests * warm_share)
    pressure = round(n_requests * pressure_share)
    return warm, pressure, n_requests - warm - pressure


def phases(
    *,
    seed: int = 0,
    n_requests: int = 200,
    max_tokens: int = 32,
    warm_share: float = 0.4,
    pressure_share: float = 0.3,
    pressure_prompt_tokens: int = 720,
    pressure_max_tokens: int | None = None,
    families: int = DEFAULT_FAMILIES,
    prefix_tokens: int = DEFAULT_PREFIX_TOKENS,
    suffix_tokens: int = DEFAULT_SUFFIX_TOKENS,
    arrival: ArrivalLike = None,
    duration: float | None = None,
    stream: bool = False,
    temperature: float | None = 0.0,
) -> list[WorkItem]:
    """Warm shared prefixes, a burst of long unrelated prompts, shared prefixes again.

    Args:
        seed: Seed of texts, family order, prompt lengths and (string ``arrival``) Poisson gaps.
        n_requests: Number of requests (> 0), split over the three phases.
        max_tokens: Output tokens of the shared-prefix requests (> 0).
        warm_share: Share of the requests in the warm phase.
        pressure_share: Share in the pressure phase (the rest recover).
        pressure_prompt_tokens: Mean prompt length of the pressure phase (±20%, uniform).
        pressure_max_tokens: Output tokens of the pressure requests (> 0); by default three
            times ``max_tokens``, so their decodes outlast the shared requests'.
        families: Number of shared prefixes (> 0).
        prefix_tokens: Approximate prefix length in tokens (> 0).
        suffix_tokens: Approximate per-request suffix length in tokens (> 0).
        arrival: Arrival pattern, pattern string (``"poisson:20"``) or ``None`` for a burst (the
            runner's concurrency bounds what is in flight).
        duration: When given, drop the requests scheduled after this many seconds.
        stream: Whether requests stream their output.
        temperature: Sampling temperature (greedy by default).

    Returns:
        The items in send order; ``metadata["phase"]`` names each one's phase, shared-prefix
        items also their ``family``.

    Raises:
        ValueError: A count or length is not a positive integer, shares out of range, or a bad
            ``arrival``.
    """
    if pressure_max_tokens is None:
        pressure_max_tokens = 3 * max_tokens
    for name, value in (
        ("n_requests", n_requests),
        ("max_tokens", max_tokens),
        ("pressure_prompt_tokens", pressure_prompt_tokens),
        ("pressure_max_tokens", pressure_max_tokens),
        ("families", families),
        ("prefix_tokens", prefix_tokens),
        ("suffix_tokens", suffix_tokens),
    ):
        check_positive(name, value)
    n_warm, n_pressure, n_recover = _counts(n_requests, warm_share, pressure_share)
    prefixes = [family_prefix(seed, f, prefix_tokens) for f in range(families)]
    rng = random.Random(f"{KIND}:{seed}:order")
    suffixes = TextGenerator(f"{KIND}:{seed}:suffix")
    unrelated = TextGenerator(f"{KIND}:{seed}:pressure")
    items: list[WorkItem] = []

    def shared(phase: str, count: int) -> None:
        order = [i % families for i in range(count)]
        rng.shuffle(order)
        for f in order:
            name = family_name(f)
            request = make_request(
                KIND,
                seed,
                len(items),
                max_tokens=max_tokens,
                prompt=prefixes[f] + PREFIX_SEPARATOR + suffixes.text(suffix_tokens),
                family=name,
                stream=stream,
                temperature=temperature,
                metadata={"phase": phase},
            )
            items.append(WorkItem(request=request, family=name, kind=KIND))

    shared(PHASES[0], n_warm)
    for _ in range(n_pressure):
        tokens = max(1, round(pressure_prompt_tokens * rng.uniform(0.8, 1.2)))
        request = make_request(
            KIND,
            seed,
            len(items),
            max_tokens=pressure_max_tokens,
            prompt=unrelated.text(tokens),
            stream=stream,
            temperature=temperature,
            metadata={"phase": PHASES[1]},
        )
        items.append(WorkItem(request=request, kind=KIND))
    shared(PHASES[2], n_recover)
    return schedule(items, arrival, seed=seed, duration=duration)
