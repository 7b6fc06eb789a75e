"""Arrival patterns: when each :class:`~sagellm_obs.workload.item.WorkItem` is sent.

Three patterns, each an :class:`Arrival`:

* :func:`burst`: every request at ``t = 0`` (open loop, everything queued at once);
* :func:`poisson`: a Poisson process of ``rate`` requests per second: inter-arrival gaps are
  exponential with mean ``1 / rate`` and ``at`` is their running sum (the first request arrives
  after one gap, not at 0);
* :func:`fixed_concurrency`: ``at = None`` for every item (closed loop): the runner keeps
  ``concurrency`` requests in flight and sends the next item whenever one completes.

:func:`apply_arrivals` assigns times in list order and the times never decrease, so any ordering
the generator put in the list (turns of a chat session) is kept in time. :func:`within_duration`
drops the items scheduled after a time bound. Patterns also parse from short strings
(:func:`parse_arrival`: ``"burst"``, ``"poisson:20"``, ``"concurrency:8"``) for command lines.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sagellm_obs.workload.item import WorkItem, check_positive

__all__ = [
    "Arrival",
    "ArrivalKind",
    "ArrivalLike",
    "apply_arrivals",
    "arrival_times",
    "burst",
    "fixed_concurrency",
    "parse_arrival",
    "poisson",
    "resolve_arrival",
    "schedule",
    "within_duration",
]

ArrivalKind = Literal["burst", "poisson", "fixed_concurrency"]
"""Name of an arrival pattern."""


@dataclass(frozen=True)
class Arrival:
    """An arrival pattern; build one with :func:`burst`, :func:`poisson` or
    :func:`fixed_concurrency`.

    Attributes:
        kind: Which pattern.
        rate: Requests per second (``poisson`` only).
        seed: Seed of the inter-arrival gaps (``poisson`` only).
        concurrency: Requests the runner keeps in flight (``fixed_concurrency`` only).
    """

    kind: ArrivalKind
    rate: float | None = None
    seed: int = 0
    concurrency: int | None = None

    def __post_init__(self) -> None:
        """Checks that the parameters the kind needs are present and valid."""
        if self.kind == "poisson":
            rate = self.rate
            if rate is None or not math.isfinite(rate) or rate <= 0:
                raise ValueError(f"poisson rate must be a finite number > 0, got {rate!r}")
        elif self.kind == "fixed_concurrency":
            check_positive("concurrency", self.concurrency)
        elif self.kind != "burst":
            raise ValueError(
                f"unknown arrival kind {self.kind!r}; choose burst, poisson or fixed_concurrency"
            )

    def times(self, n: int) -> list[float | None]:
        """Send times of ``n`` consecutive items (see :func:`arrival_times`)."""
        return arrival_times(self, n)

    def __str__(self) -> str:
        """The :func:`parse_arrival` spelling (``"poisson:20"``), without the seed."""
        if self.kind == "poisson":
            return f"poisson:{self.rate:g}"
        if self.kind == "fixed_concurrency":
            return f"concurrency:{self.concurrency}"
        return "burst"


ArrivalLike = Arrival | str | None
"""What the generators accept: an :class:`Arrival`, a :func:`parse_arrival` string, or ``None``
(= :func:`burst`)."""


def burst() -> Arrival:
    """Every request at ``t = 0``."""
    return Arrival("burst")


def poisson(rate: float, seed: int = 0) -> Arrival:
    """Poisson arrivals: exponential gaps of mean ``1 / rate`` seconds, seeded.

    Args:
        rate: Mean requests per second (> 0).
        seed: Seed of the gaps; same seed, same times.

    Returns:
        The pattern.

    Raises:
        ValueError: ``rate`` is not a finite positive number.
    """
    return Arrival("poisson", rate=float(rate), seed=seed)


def fixed_concurrency(concurrency: int) -> Arrival:
    """Closed loop: ``at = None``; the runner keeps ``concurrency`` requests in flight.

    Args:
        concurrency: Requests in flight (> 0). Carried for the runner; items only get ``None``.

    Returns:
        The pattern.

    Raises:
        ValueError: ``concurrency`` is not a positive integer.
    """
    return Arrival("fixed_concurrency", concurrency=concurrency)


def parse_arrival(spec: str, *, seed: int = 0) -> Arrival:
    """Parses ``"burst"``, ``"poisson:<rate>"`` or ``"concurrency:<n>"``.

    ``"fixed_concurrency:<n>"`` is accepted too; case and surrounding spaces are ignored.

    Args:
        spec: The pattern string.
        seed: Seed of Poisson gaps (normally the workload seed).

    Returns:
        The pattern.

    Raises:
        ValueError: Unknown pattern or bad parameter; the message shows the accepted forms.
    """
    name, _, param = spec.strip().lower().partition(":")
    name, param = name.strip(), param.strip()
    usage = "expected 'burst', 'poisson:<rate per second>' or 'concurrency:<n>'"
    try:
        if name == "burst" and not param:
            return burst()
        if name == "poisson" and param:
            return poisson(float(param), seed=seed)
        if name in ("concurrency", "fixed_concurrency") and param:
            return fixed_concurrency(int(param))
    except ValueError as exc:
        raise ValueError(f"bad arrival pattern {spec!r}: {exc}; {usage}") from exc
    raise ValueError(f"bad arrival pattern {spec!r}; {usage}")


def arrival_times(pattern: Arrival, n: int) -> list[float | None]:
    """Send times of ``n`` consecutive items under ``pattern``.

    Args:
        pattern: The arrival pattern.
        n: Number of items (>= 0).

    Returns:
        ``n`` non-decreasing times in seconds (``burst``: all ``0.0``; ``poisson``: running sums
        of exponential gaps drawn from ``random.Random(pattern.seed)``), or ``n`` ``None`` for
        ``fixed_concurrency``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if pattern.kind == "fixed_concurrency":
        return [None] * n
    if pattern.kind == "burst":
        return [0.0] * n
    assert pattern.rate is not None  # checked by Arrival.__post_init__
    rng = random.Random(pattern.seed)
    times: list[float | None] = []
    t = 0.0
    for _ in range(n):
        t += rng.expovariate(pattern.rate)
        times.append(t)
    return times


def apply_arrivals(items: Sequence[WorkItem], pattern: Arrival) -> list[WorkItem]:
    """Schedules ``items`` in list order under ``pattern``.

    Args:
        items: The items; their current ``at`` is replaced.
        pattern: The arrival pattern.

    Returns:
        New items, same order, with ``at`` from :func:`arrival_times`.
    """
    times = arrival_times(pattern, len(items))
    return [item.with_at(t) for item, t in zip(items, times, strict=True)]


def within_duration(items: Sequence[WorkItem], duration: float) -> list[WorkItem]:
    """Drops the items scheduled after ``duration`` seconds.

    Items with ``at = None`` (closed loop) are kept: their send time is only known at run time, so
    the runner has to enforce a time bound for them itself.

    Args:
        items: The items.
        duration: Bound in seconds (>= 0); an item at exactly ``duration`` is kept.

    Returns:
        The kept items, in order.

    Raises:
        ValueError: ``duration`` is negative or not finite.
    """
    if not math.isfinite(duration) or duration < 0:
        raise ValueError(f"duration must be a finite number >= 0, got {duration!r}")
    return [item for item in items if item.at is None or item.at <= duration]


def resolve_arrival(arrival: ArrivalLike, *, seed: int) -> Arrival:
    """An :class:`Arrival` from what a generator accepts (``None`` = burst; strings parsed)."""
    if arrival is None:
        return burst()
    if isinstance(arrival, str):
        return parse_arrival(arrival, seed=seed)
    return arrival


def schedule(
    items: Sequence[WorkItem],
    arrival: ArrivalLike = None,
    *,
    seed: int = 0,
    duration: float | None = None,
) -> list[WorkItem]:
    """Applies an arrival pattern then an optional duration bound (what every generator does).

    Args:
        items: The items, in send order.
        arrival: Pattern, :func:`parse_arrival` string, or ``None`` for :func:`burst`.
        seed: Seed of Poisson gaps when ``arrival`` is a string.
        duration: When given, drop the items scheduled after it (:func:`within_duration`).

    Returns:
        The scheduled items.
    """
    scheduled = apply_arrivals(items, resolve_arrival(arrival, seed=seed))
    if duration is not None:
        scheduled = within_duration(scheduled, duration)
    return scheduled
