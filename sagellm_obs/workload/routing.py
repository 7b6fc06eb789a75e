"""Several endpoints, one workload: the endpoint list and the routing policies that spread it.

``sagellm-obs run --endpoint URL1,URL2 --route NAME``: :func:`parse_endpoints` reads the list,
:func:`make_router` picks the policy (:data:`ROUTES`) that
:func:`~sagellm_obs.workload.http_runner.run_http_workload` asks for each request's replica.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "ROUTES",
    "LeastLoaded",
    "ReplicaStats",
    "RoundRobin",
    "Router",
    "base_url",
    "make_router",
    "parse_endpoints",
]


def base_url(endpoint: str) -> str:
    """``endpoint`` without a trailing ``/`` or ``/v1`` (both are accepted)."""
    base = endpoint.rstrip("/")
    return base.removesuffix("/v1")


def parse_endpoints(endpoints: str | Sequence[str]) -> list[str]:
    """Base URLs of ``endpoints``: one URL, a comma-separated list, or a sequence of them.

    Raises:
        ValueError: No endpoint, one that is not ``http(s)://HOST[:PORT]``, or a repeated one.
    """
    parts = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    out: list[str] = []
    for part in parts:
        for url in str(part).split(","):
            url = url.strip()
            if not url:
                continue
            split = urlsplit(url)
            if split.scheme not in ("http", "https") or not split.hostname:
                raise ValueError(f"not an http(s) endpoint: {url!r}")
            base = base_url(url)
            if base in out:
                raise ValueError(f"endpoint given twice: {base}")
            out.append(base)
    if not out:
        raise ValueError("no endpoint given")
    return out


@dataclass
class ReplicaStats:
    """What this client sent to one replica and got back."""

    endpoint: str
    sent: int = 0
    done: int = 0
    failed: int = 0
    output_tokens: int = 0
    in_flight: int = 0


class Router:
    """Picks the replica for each request; ``pick`` and ``done`` run on the event loop."""

    name = ""

    def __init__(self, replicas: Sequence[ReplicaStats]) -> None:
        self.replicas = list(replicas)

    def pick(self) -> ReplicaStats:  # pragma: no cover - abstract
        raise NotImplementedError


class RoundRobin(Router):
    """Replicas in turn, whatever their load."""

    name = "round-robin"

    def __init__(self, replicas: Sequence[ReplicaStats]) -> None:
        super().__init__(replicas)
        self._order = itertools.cycle(self.replicas)

    def pick(self) -> ReplicaStats:
        return next(self._order)


class LeastLoaded(Router):
    """The replica with the fewest requests in flight from this client; ties go to the one
    sent the fewest so far, then to the first listed."""

    name = "least-loaded"

    def pick(self) -> ReplicaStats:
        return min(self.replicas, key=lambda r: (r.in_flight, r.sent))


ROUTES: dict[str, type[Router]] = {"round-robin": RoundRobin, "least-loaded": LeastLoaded}
"""The routing policies by name (``sagellm-obs run --route``)."""


def make_router(route: str, replicas: Sequence[ReplicaStats]) -> Router:
    """The :data:`ROUTES` policy named ``route`` over ``replicas``.

    Raises:
        ValueError: An unknown policy name.
    """
    try:
        return ROUTES[route](replicas)
    except KeyError:
        raise ValueError(f"unknown route {route!r}: choose from {', '.join(ROUTES)}") from None
