"""Clock conversion and latency arithmetic for protocol ``Timestamps`` and ``Metrics``.

The protocol's ``Timestamps`` are Unix epoch seconds from the wall clock, while engines measure
with monotonic clocks (vLLM's EngineCore stamps ``queued_ts``, ``scheduled_ts``, ``first_token_ts``
and ``last_token_ts`` with ``time.monotonic()``). :class:`ClockAnchor` is **the one boundary** where
monotonic readings become epoch seconds: intervals between converted values are exact monotonic
differences, and only the absolute position depends on the anchor.

Two TTFT conventions exist and both are offered, named explicitly:

* ``"queue"`` (default, vLLM-style): ``executed_at - queued_at``, i.e. queueing included, as in
  vLLM's ``time_to_first_token`` measured from arrival.
* ``"schedule"``: ``executed_at - scheduled_at``, the formula in the protocol's ``Timestamps``
  docstring; it excludes queueing (like vLLM's ``--enable-per-request-metrics``
  ``time_to_first_token_ms``).

Nothing here clamps or hides impossible intervals; :func:`check_timestamps` names them.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from sagellm_obs.protocol.types import Timestamps

__all__ = [
    "CLOCK_STEP_TOLERANCE_S",
    "MAX_PLAUSIBLE_EPOCH_S",
    "MIN_PLAUSIBLE_EPOCH_S",
    "ClockAnchor",
    "TTFTFrom",
    "check_timestamps",
    "itl_list_ms",
    "metrics_from_timestamps",
    "timestamps_from_engine",
    "total_time_ms",
    "tpot_ms",
    "ttft_ms",
]

TTFTFrom = Literal["queue", "schedule"]
"""Start point of TTFT: ``"queue"`` (``queued_at``) or ``"schedule"`` (``scheduled_at``)."""

MIN_PLAUSIBLE_EPOCH_S = 946_684_800.0
"""2000-01-01T00:00:00Z. Earlier values are probably monotonic readings, not epoch seconds."""

MAX_PLAUSIBLE_EPOCH_S = 4_102_444_800.0
"""2100-01-01T00:00:00Z. Later values are probably milli/micro/nanoseconds, not seconds."""

CLOCK_STEP_TOLERANCE_S = 1e-3
"""The smallest wall-clock step :meth:`ClockAnchor.stepped` reports (pairing error is ~1 µs)."""

_FIELDS = ("queued_at", "scheduled_at", "executed_at", "completed_at")


@dataclass(frozen=True)
class ClockAnchor:
    """A wall-clock reading paired with a monotonic reading taken at the same instant.

    ``to_epoch(m) = wall_s + (m - mono_s)``. On Linux ``CLOCK_MONOTONIC`` (Python's
    ``time.monotonic()``) is system-wide, so an anchor taken in one process also converts monotonic
    stamps taken in other processes on the same host, such as vLLM's EngineCore. Reuse one anchor,
    so converted stamps keep their exact monotonic spacing, until the wall clock steps against the
    monotonic one (see :meth:`stepped`): NTP slewing moves both clocks alike, but a step (NTP's,
    ``date -s``, a virtual machine restored from a snapshot) moves the wall clock alone.

    Attributes:
        wall_s: ``time.time()`` reading, Unix epoch seconds.
        mono_s: ``time.monotonic()`` reading, seconds.
        uncertainty_s: Half the gap between the monotonic readings that bracketed the wall
            reading; the pairing error is at most this.
    """

    wall_s: float
    mono_s: float
    uncertainty_s: float = 0.0

    @classmethod
    def now(cls, samples: int = 5) -> ClockAnchor:
        """Takes an anchor: the tightest of ``samples`` monotonic/wall/monotonic triples.

        Args:
            samples: How many triples to try (at least one is taken).

        Returns:
            The anchor whose bracketing monotonic readings were closest together; ``mono_s`` is
            their midpoint.
        """
        best = (math.inf, 0.0, 0.0)
        for _ in range(max(1, samples)):
            before = time.monotonic()
            wall = time.time()
            after = time.monotonic()
            if after - before < best[0]:
                best = (after - before, wall, (before + after) / 2.0)
        gap, wall, mono = best
        return cls(wall_s=wall, mono_s=mono, uncertainty_s=gap / 2.0)

    @property
    def offset_s(self) -> float:
        """``wall_s - mono_s``: add it to a monotonic reading to get epoch seconds."""
        return self.wall_s - self.mono_s

    def stepped(self, tolerance_s: float = CLOCK_STEP_TOLERANCE_S) -> ClockAnchor | None:
        """A new anchor if the wall clock has stepped against the monotonic clock since this one.

        Wall-clock readings taken after a step (vLLM's ``arrival_time``) are in the new frame, so
        monotonic stamps must be converted with a new anchor to stay comparable with them.
        Costs one reading of each clock when nothing stepped.

        Args:
            tolerance_s: The smallest step reported; readings disagree by microseconds at most.

        Returns:
            A precise new anchor (:meth:`now`), or None when the clocks still agree with this one.
        """
        if abs(time.time() - time.monotonic() - self.offset_s) <= tolerance_s:
            return None
        fresh = ClockAnchor.now()  # a preempted reading above is no step: check precisely
        return fresh if abs(fresh.offset_s - self.offset_s) > tolerance_s else None

    def to_epoch(self, mono_s: float) -> float:
        """Converts a ``time.monotonic()`` reading to Unix epoch seconds."""
        return self.wall_s + (mono_s - self.mono_s)

    def to_epoch_ns(self, mono_s: float) -> int:
        """Converts a ``time.monotonic()`` reading to integer Unix epoch nanoseconds.

        Whole seconds and the fractional part are kept apart, so the result is not limited by the
        ~0.2 µs resolution of a float holding ``epoch * 1e9``.
        """
        whole_ns, wall_frac = self._wall_parts
        return whole_ns + round((wall_frac + (mono_s - self.mono_s)) * 1e9)

    @cached_property
    def _wall_parts(self) -> tuple[int, float]:
        # (whole seconds of wall_s in ns, its fraction): computed once, the telemetry thread
        # converts four stamps a request.
        whole = math.floor(self.wall_s)
        return whole * 1_000_000_000, self.wall_s - whole

    def to_mono(self, epoch_s: float) -> float:
        """Converts Unix epoch seconds back to a monotonic reading (inverse of ``to_epoch``)."""
        return self.mono_s + (epoch_s - self.wall_s)


def _convert(anchor: ClockAnchor, mono: float | None, fallback: float) -> float:
    """Converts ``mono`` or returns ``fallback`` when it is unset (vLLM leaves unset stamps 0.0)."""
    if mono is None or mono == 0.0:
        return fallback
    return anchor.to_epoch(mono)


def timestamps_from_engine(
    arrival_wall: float,
    queued_mono: float | None,
    scheduled_mono: float | None,
    first_token_mono: float | None,
    last_token_mono: float | None,
    anchor: ClockAnchor | None = None,
) -> Timestamps:
    """Builds protocol ``Timestamps`` (epoch seconds) from an engine's monotonic stamps.

    ``queued_at``, ``scheduled_at``, ``executed_at`` and ``completed_at`` are the conversions of
    ``queued_mono``, ``scheduled_mono``, ``first_token_mono`` and ``last_token_mono``;
    ``executed_at`` is the **first-token** time, as the protocol docstring defines it.

    A missing stamp (``None``, or ``0.0`` which vLLM uses for "not set") falls back to the previous
    stage, making that interval zero ("no data"); a missing ``queued_mono`` falls back to
    ``arrival_wall``. Note that vLLM's ``arrival_time`` is taken by the frontend before the
    request reaches EngineCore, so ``arrival_wall <= queued_at`` up to anchor uncertainty.

    Args:
        arrival_wall: Arrival time, Unix epoch seconds (vLLM ``arrival_time``, ``time.time()``).
        queued_mono: Entry into the engine queue, ``time.monotonic()`` seconds.
        scheduled_mono: First scheduling, monotonic seconds.
        first_token_mono: First output token, monotonic seconds.
        last_token_mono: Last output token, monotonic seconds.
        anchor: Clock anchor; ``ClockAnchor.now()`` when omitted.

    Returns:
        The four timestamps, in epoch seconds. Order is not enforced: see
        :func:`check_timestamps`.
    """
    anchor = anchor or ClockAnchor.now()
    queued = _convert(anchor, queued_mono, arrival_wall)
    scheduled = _convert(anchor, scheduled_mono, queued)
    executed = _convert(anchor, first_token_mono, scheduled)
    completed = _convert(anchor, last_token_mono, executed)
    return Timestamps(
        queued_at=queued, scheduled_at=scheduled, executed_at=executed, completed_at=completed
    )


def ttft_ms(ts: Timestamps, from_: TTFTFrom = "queue") -> float:
    """Time to first token, ms.

    Args:
        ts: The timestamps.
        from_: ``"queue"``: ``(executed_at - queued_at) * 1000``, queueing included (vLLM-style).
            ``"schedule"``: ``(executed_at - scheduled_at) * 1000``, the protocol docstring's
            formula, queueing excluded.

    Returns:
        The raw difference; negative when the timestamps are out of order (not clamped).

    Raises:
        ValueError: Unknown ``from_``.
    """
    if from_ == "queue":
        start = ts.queued_at
    elif from_ == "schedule":
        start = ts.scheduled_at
    else:
        raise ValueError(f"from_ must be 'queue' or 'schedule', got {from_!r}")
    return (ts.executed_at - start) * 1000.0


def tpot_ms(ts: Timestamps, output_tokens: int) -> float:
    """Time per output token after the first, ms (vLLM's ``mean_time_per_output_token``).

    ``(completed_at - executed_at) / (output_tokens - 1) * 1000``; ``0.0`` ("no data") when fewer
    than two tokens were produced. Unlike sageLLM's streaming path it excludes the TTFT.
    """
    if output_tokens < 2:
        return 0.0
    return (ts.completed_at - ts.executed_at) / (output_tokens - 1) * 1000.0


def itl_list_ms(token_times: Sequence[float]) -> list[float]:
    """Inter-token latencies, ms: differences of consecutive token times (any one clock, seconds).

    ``n`` token times give ``n - 1`` intervals; fewer than two give ``[]``. Not clamped.
    """
    return [(b - a) * 1000.0 for a, b in itertools.pairwise(token_times)]


def total_time_ms(ts: Timestamps) -> float:
    """End-to-end time, ms: ``(completed_at - queued_at) * 1000`` (the protocol's formula)."""
    return (ts.completed_at - ts.queued_at) * 1000.0


def check_timestamps(ts: Timestamps, *, plausible_epoch: bool = True) -> list[str]:
    """Names every impossible value or interval; ``[]`` means the timestamps are consistent.

    Problems reported (in field order):

    * ``"<field> is not finite"`` for NaN or infinity;
    * ``"<field><0"`` for negative values;
    * with ``plausible_epoch``: ``"<field><2000-01-01 (monotonic reading?)"`` and
      ``"<field>>2100-01-01 (not seconds?)"`` for values that cannot be epoch seconds;
    * ``"scheduled_at<queued_at"``, ``"executed_at<scheduled_at"``, ``"completed_at<executed_at"``
      for stages out of order.

    Args:
        ts: The timestamps.
        plausible_epoch: Also flag values outside 2000..2100 (disable for synthetic data).

    Returns:
        Problem descriptions.
    """
    problems: list[str] = []
    for name in _FIELDS:
        value: float = getattr(ts, name)
        if not math.isfinite(value):
            problems.append(f"{name} is not finite")
        elif value < 0:
            problems.append(f"{name}<0")
        elif plausible_epoch and value < MIN_PLAUSIBLE_EPOCH_S:
            problems.append(f"{name}<2000-01-01 (monotonic reading?)")
        elif plausible_epoch and value > MAX_PLAUSIBLE_EPOCH_S:
            problems.append(f"{name}>2100-01-01 (not seconds?)")
    for earlier, later in itertools.pairwise(_FIELDS):
        if getattr(ts, later) < getattr(ts, earlier):
            problems.append(f"{later}<{earlier}")
    return problems


def metrics_from_timestamps(
    ts: Timestamps,
    *,
    output_tokens: int,
    ttft_from: TTFTFrom = "queue",
    token_times: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Latency fields of ``Metrics`` derived from timestamps.

    Returns a dict to merge into ``Metrics(...)`` together with the fields this cannot know
    (``peak_mem_mb``, ``error_rate``...)::

        Metrics(**metrics_from_timestamps(ts, output_tokens=n), peak_mem_mb=0, error_rate=0.0)

    Keys: ``ttft_ms`` (see :func:`ttft_ms`), ``tpot_ms`` (see :func:`tpot_ms`), ``tbt_ms`` (mean of
    ``itl_list`` when token times are given, else ``tpot_ms``), ``throughput_tps``
    (``output_tokens / total seconds``, 0.0 when the total is 0, as sageLLM core computes it),
    ``itl_list`` and ``timestamps``.

    Args:
        ts: The timestamps.
        output_tokens: Number of generated tokens.
        ttft_from: TTFT convention, see :func:`ttft_ms`.
        token_times: Optional per-token times (seconds, one clock) for ``itl_list``.

    Returns:
        Keyword arguments for ``Metrics``.

    Raises:
        ValueError: The timestamps are not finite, negative or out of order (the message lists the
            problems from :func:`check_timestamps`), ``token_times`` decrease, or
            ``output_tokens < 0``.
    """
    problems = check_timestamps(ts, plausible_epoch=False)
    if problems:
        raise ValueError("inconsistent timestamps: " + ", ".join(problems))
    if output_tokens < 0:
        raise ValueError(f"output_tokens must be >= 0, got {output_tokens}")
    itl = itl_list_ms(token_times) if token_times is not None else []
    if any(not (gap >= 0.0) for gap in itl):  # also catches NaN
        raise ValueError("inconsistent timestamps: token_times are not non-decreasing")
    tpot = tpot_ms(ts, output_tokens)
    total_s = total_time_ms(ts) / 1000.0
    return {
        "ttft_ms": ttft_ms(ts, ttft_from),
        "tbt_ms": sum(itl) / len(itl) if itl else tpot,
        "tpot_ms": tpot,
        "throughput_tps": output_tokens / total_s if total_s > 0 else 0.0,
        "itl_list": itl,
        "timestamps": ts,
    }
