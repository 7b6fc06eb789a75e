"""An optional Prometheus ``/metrics`` endpoint on 127.0.0.1, fed by the OTel meter provider.

Each :class:`~sagellm_obs.telemetry.Telemetry` gets its own registry, so two configurations in one
process (a notebook comparing runs, a test suite) never mix their samples. The endpoint also shows
the process-wide ``prometheus_client`` registry, where vLLM keeps its own ``vllm:*`` metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class _GlobalRegistryView:
    """A collector that yields whatever the process-wide registry holds (vLLM's metrics)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()


def start_prometheus(port: int | None, addr: str = "127.0.0.1") -> tuple[Any, Any, int | None, Any]:
    """Start a ``/metrics`` server; returns ``(reader, server, bound_port, registry)``.

    ``port=0`` picks a free port; ``None`` serves nothing (the registry alone, for an app that
    serves it itself; server and port are then None). Needs the ``prometheus`` extra.
    """
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "Prometheus export needs the 'prometheus' extra: pip install 'sagellm-obs[prometheus]'"
        ) from exc
    registry = CollectorRegistry(auto_describe=False)
    reader = PrometheusMetricReader(registry=registry)
    registry.register(_GlobalRegistryView())
    if port is None:
        return reader, None, None, registry
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    bound = int(server.server_address[1])
    return reader, server, bound, registry
