"""A server's own Prometheus counters, read before and after a run (``run --endpoint``).

The server's ``/metrics`` holds vLLM's counters for its whole life, so a run's share is the
difference of two scrapes: one just before the first request, one after the last answer. The
prefix-cache pair gives the run-scoped hit rate as the *server* counts it, independent of our
spans; a hit rate read from the totals would include every earlier run that warmed the cache.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

import httpx

from sagellm_obs import semconv as sc

__all__ = [
    "COUNTERS",
    "MANIFEST_KEY",
    "CountersAround",
    "ServerCounters",
    "counters_delta",
    "hit_rate_text",
    "parse_counters",
    "scrape_counters",
    "settled_counters",
]

MANIFEST_KEY: Final = "server_counters"
"""Where ``run --endpoint`` keeps the servers' counter deltas in the run's manifest."""

#: Our key -> vLLM's counter family (Prometheus text drops nothing but the ``_total`` suffix).
#: All count tokens except ``requests`` (finished requests, every ``finished_reason``).
COUNTERS: Final[Mapping[str, str]] = {
    "prefix_queries": sc.VLLM_PREFIX_CACHE_QUERIES,
    "prefix_hits": sc.VLLM_PREFIX_CACHE_HITS,
    "prompt_tokens": sc.VLLM_PROMPT_TOKENS,
    "generation_tokens": sc.VLLM_GENERATION_TOKENS,
    "requests": sc.VLLM_REQUEST_SUCCESS,
}


@dataclass(frozen=True)
class ServerCounters:
    """vLLM's counters of one server (summed over labels: engines, reasons), or their delta."""

    prefix_queries: float = 0.0
    prefix_hits: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    requests: float = 0.0

    @property
    def prefix_hit_rate(self) -> float | None:
        """Hits / queries (tokens); None without queries."""
        return self.prefix_hits / self.prefix_queries if self.prefix_queries else None

    def as_dict(self) -> dict[str, Any]:
        """Plain data, with the hit rate."""
        return {**asdict(self), "prefix_hit_rate": self.prefix_hit_rate}


def hit_rate_text(counters: Mapping[str, Any]) -> str:
    """``62.5% (2,560 of 4,096 tokens)`` from :meth:`ServerCounters.as_dict` data."""
    rate = counters.get("prefix_hit_rate")
    shown = "n/a" if rate is None else f"{rate:.1%}"
    hits, queries = counters.get("prefix_hits") or 0, counters.get("prefix_queries") or 0
    return f"{shown} ({hits:,.0f} of {queries:,.0f} tokens)"


def parse_counters(text: str) -> ServerCounters:
    """:data:`COUNTERS` out of a Prometheus text exposition, summed over their labels.

    Samples are matched by name (``<family>_total``), so an exposition without ``# TYPE`` lines
    reads the same.

    Raises:
        ValueError: The text is not Prometheus' exposition format, or has none of vLLM's
            counters (not a vLLM server).
    """
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {f"{family}_total": key for key, family in COUNTERS.items()}
    totals = dict.fromkeys(COUNTERS, 0.0)
    found = False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = wanted.get(sample.name)
            if key is not None:
                totals[key] += sample.value
                found = True
    if not found:
        raise ValueError("no vLLM counters (vllm:prefix_cache_queries_total...) on /metrics")
    return ServerCounters(**totals)


def scrape_counters(
    base_url: str, *, api_key: str | None = None, timeout: float = 10.0
) -> ServerCounters:
    """GET ``{base_url}/metrics`` (``base_url`` with or without ``/v1``) and parse it.

    Raises:
        httpx.HTTPError: The server did not answer, or answered with an error.
        ValueError: The answer is not Prometheus text.
    """
    base = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    resp = httpx.get(f"{base}/metrics", headers=headers, timeout=timeout)
    resp.raise_for_status()
    return parse_counters(resp.text)


def settled_counters(
    base_url: str,
    *,
    api_key: str | None = None,
    tries: int = 10,
    pause_s: float = 0.1,
) -> ServerCounters:
    """Scrape until two scrapes in a row agree (at most ``tries``): a server may answer a
    request before its stat logger has counted the step that finished it."""
    last = scrape_counters(base_url, api_key=api_key)
    for _ in range(tries - 1):
        time.sleep(pause_s)
        now = scrape_counters(base_url, api_key=api_key)
        if now == last:
            break
        last = now
    return last


def counters_delta(before: ServerCounters, after: ServerCounters) -> ServerCounters:
    """``after - before``, per counter; a counter that went down (a restarted server) counts
    its ``after`` value in full, as Prometheus' ``increase()`` does."""
    out: dict[str, float] = {}
    for key in COUNTERS:
        b, a = getattr(before, key), getattr(after, key)
        out[key] = a - b if a >= b else a
    return ServerCounters(**out)


class CountersAround:
    """The counters of each endpoint of a run, scraped before it and after it.

    A server that does not answer ``/metrics`` (or not with vLLM's counters) is left out, with
    the reason in ``errors``; the run goes on either way.
    """

    def __init__(self, endpoints: list[str], *, api_key: str | None = None) -> None:
        self.endpoints = endpoints
        self.api_key = api_key
        self.before: dict[str, ServerCounters] = {}
        self.errors: dict[str, str] = {}

    def start(self) -> None:
        """Scrape every endpoint before the first request."""
        for ep in self.endpoints:
            try:
                self.before[ep] = scrape_counters(ep, api_key=self.api_key)
            except (httpx.HTTPError, ValueError) as exc:
                self.errors[ep] = f"{type(exc).__name__}: {exc}"

    def finish(self) -> dict[str, Any]:
        """Scrape again (until settled) and return the deltas, for the manifest: the sum over
        the endpoints, ``endpoints`` with each one's and ``errors`` with those left out; empty
        when no endpoint could be read."""
        per: dict[str, ServerCounters] = {}
        for ep, before in self.before.items():
            try:
                after = settled_counters(ep, api_key=self.api_key)
            except (httpx.HTTPError, ValueError) as exc:
                self.errors[ep] = f"{type(exc).__name__}: {exc}"
                continue
            per[ep] = counters_delta(before, after)
        if not per:
            return {"errors": dict(self.errors)} if self.errors else {}
        total = ServerCounters(**{k: sum(getattr(d, k) for d in per.values()) for k in COUNTERS})
        return {
            **total.as_dict(),
            "endpoints": {ep: d.as_dict() for ep, d in per.items()},
            "errors": dict(self.errors),
        }
