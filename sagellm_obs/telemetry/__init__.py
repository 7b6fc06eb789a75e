"""Telemetry set-up: tracer and meter providers, exporters, and the recording thread."""

from __future__ import annotations

from sagellm_obs.telemetry.records import RequestRecord
from sagellm_obs.telemetry.setup import AdvancedOptions, Telemetry, configure, current, shutdown

__all__ = ["AdvancedOptions", "RequestRecord", "Telemetry", "configure", "current", "shutdown"]
