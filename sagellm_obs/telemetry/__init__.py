"""Telemetry set-up: tracer and meter providers, exporters, and the recording thread.

Producers (the engine, its stat logger, the server) use only :class:`TelemetryPort`.
"""

from __future__ import annotations

from sagellm_obs.telemetry.attributes import PREFIX_BLOCK_TOKENS, chain_block_hash
from sagellm_obs.telemetry.port import TelemetryPort
from sagellm_obs.telemetry.records import RequestRecord
from sagellm_obs.telemetry.sdk_private import engaged_fallbacks
from sagellm_obs.telemetry.setup import AdvancedOptions, Telemetry, configure, current, shutdown

__all__ = [
    "PREFIX_BLOCK_TOKENS",
    "AdvancedOptions",
    "RequestRecord",
    "Telemetry",
    "TelemetryPort",
    "chain_block_hash",
    "configure",
    "current",
    "engaged_fallbacks",
    "shutdown",
]
