"""Workload generators by name: the registry a runner or command line picks from.

Every entry is a generator function taking keyword arguments only and returning
``list[WorkItem]``; all accept ``seed``, ``n_requests``, ``max_tokens``, ``arrival``, ``duration``,
``stream`` and ``temperature``, plus their own shape parameters (see
:func:`workload_parameters`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from sagellm_obs.workload.chat import chat_sessions
from sagellm_obs.workload.item import WorkItem
from sagellm_obs.workload.mixes import long_prompt_short_answer, mixed, short_prompt_long_answer
from sagellm_obs.workload.phases import phases
from sagellm_obs.workload.shared_prefix import shared_prefix

__all__ = [
    "COMMON_PARAMETERS",
    "DEFAULT_WORKLOAD",
    "WORKLOADS",
    "WorkItem",
    "build_workload",
    "workload_parameters",
]

WORKLOADS: dict[str, Callable[..., list[WorkItem]]] = {
    "shared_prefix": shared_prefix,
    "chat_sessions": chat_sessions,
    "long_prompt_short_answer": long_prompt_short_answer,
    "short_prompt_long_answer": short_prompt_long_answer,
    "mixed": mixed,
    "phases": phases,
}
"""Workload generators by name."""

DEFAULT_WORKLOAD = "phases"
"""The workload ``sagellm-obs run`` uses when none is named."""

COMMON_PARAMETERS: tuple[str, ...] = (
    "seed",
    "n_requests",
    "max_tokens",
    "arrival",
    "duration",
    "stream",
    "temperature",
)
"""Keyword arguments every registered generator accepts."""


def _lookup(name: str) -> Callable[..., list[WorkItem]]:
    """The generator called ``name`` (``-`` and ``_`` are interchangeable, case is ignored)."""
    key = name.strip().lower().replace("-", "_")
    try:
        return WORKLOADS[key]
    except KeyError:
        known = ", ".join(sorted(WORKLOADS))
        raise ValueError(f"unknown workload {name!r}; known workloads: {known}") from None


def workload_parameters(name: str) -> list[str]:
    """Keyword arguments the named generator accepts, in signature order.

    Args:
        name: A :data:`WORKLOADS` key.

    Returns:
        The parameter names.

    Raises:
        ValueError: Unknown workload; the message lists the known names.
    """
    return list(inspect.signature(_lookup(name)).parameters)


def build_workload(name: str, **kwargs: Any) -> list[WorkItem]:
    """Builds a workload by name.

    Args:
        name: A :data:`WORKLOADS` key (``"shared-prefix"`` works too).
        **kwargs: Keyword arguments of that generator.

    Returns:
        The items, in send order.

    Raises:
        ValueError: Unknown workload (the message lists the known names), an argument the
            generator does not take (the message lists those it does), or a bad argument value.
    """
    generator = _lookup(name)
    accepted = inspect.signature(generator).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"workload {name!r} does not take {', '.join(unknown)}; it takes: {', '.join(accepted)}"
        )
    return generator(**kwargs)
