"""Ask each replica who it is and where it records (``GET /v1/sagellm/run`` of ``serve``).

``sagellm-obs run --endpoint URL1,URL2`` records the answers in its run folder's manifest
(``replicas``), so loading the client run finds the replicas' run folders
(:mod:`sagellm_obs.frames.replicas`). A server that is not ``sagellm-obs serve`` (vLLM's own, any
OpenAI-compatible one) has no such route: its entry says so in ``problem`` and the run goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from sagellm_obs import semconv as sc

__all__ = ["REPLICA_FIELDS", "ask_replica", "ask_replicas"]

REPLICA_FIELDS = ("engine_id", "run_id", "run_dir", "model", "data_parallel_size")
"""What a replica's entry keeps of its answer (besides ``endpoint`` and ``problem``)."""


async def ask_replica(http: httpx.AsyncClient, endpoint: str) -> dict[str, Any]:
    """One replica's entry: ``endpoint`` and :data:`REPLICA_FIELDS`, or ``problem``."""
    entry: dict[str, Any] = {"endpoint": endpoint, **dict.fromkeys(REPLICA_FIELDS)}
    try:
        resp = await http.get(endpoint + sc.RUN_INFO_ROUTE)
    except httpx.HTTPError as exc:
        entry["problem"] = f"{sc.RUN_INFO_ROUTE}: {type(exc).__name__}"
        return entry
    if resp.status_code != 200:
        entry["problem"] = f"{sc.RUN_INFO_ROUTE}: HTTP {resp.status_code} (not sagellm-obs serve?)"
        return entry
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        entry["problem"] = f"{sc.RUN_INFO_ROUTE}: not a JSON object"
        return entry
    for key in REPLICA_FIELDS:
        value = body.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            entry[key] = value
    if entry["run_id"] is None:
        entry["problem"] = "the replica keeps no run folder"
    elif entry["run_dir"] is None:
        entry["problem"] = "the replica did not tell its run folder (not a loopback client?)"
    return entry


async def ask_replicas(
    endpoints: Sequence[str], *, api_key: str | None = None, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Every replica's entry, in the order of ``endpoints`` (base URLs); never raises for a
    replica that does not answer (its entry has ``problem``)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout)) as http:
        return list(await asyncio.gather(*(ask_replica(http, e) for e in endpoints)))
