"""``GET /v1/sagellm/run``: which replica this is and where it records.

``sagellm-obs run --endpoint URL1,URL2`` asks every replica (see
:mod:`sagellm_obs.workload.replica_info`) and keeps the answers in its manifest, so loading the
client's run folder finds the replicas' folders (:mod:`sagellm_obs.frames.replicas`).

The run folder is a path on this machine, of use only here: it is told to a loopback peer only
(behind a local proxy that sends ``X-Forwarded-For``, uvicorn reports the forwarded client). The
rest is what a client already sees: the engine id labels ``/metrics``, the model is on
``/v1/models``, the run id names only the folder.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import Request

    from sagellm_obs.engine.core import InstrumentedEngine


def run_info(engine: InstrumentedEngine, model: str, request: Request) -> dict[str, Any]:
    """The body: ``engine_id``, ``run_id``, ``model``, ``data_parallel_size``, ``run_dir``
    (absolute; None for a peer off this machine or without a local store)."""
    tel = engine.telemetry
    run_dir = tel.run_dir
    local = run_dir is not None and loopback_peer(request)
    return {
        "engine_id": tel.engine_id,
        "run_id": tel.run_id,
        "model": model,
        "data_parallel_size": int(engine.config.extra.get("data_parallel_size", 1)),
        "run_dir": str(Path(run_dir).resolve()) if local and run_dir else None,
    }


def loopback_peer(request: Request) -> bool:
    """Whether the request came from this machine's loopback interface."""
    host = request.client.host if request.client is not None else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
