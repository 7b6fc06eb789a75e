"""An optional Prometheus ``/metrics`` endpoint on 127.0.0.1, fed by the OTel meter provider."""

from __future__ import annotations

from typing import Any


def start_prometheus(port: int, addr: str = "127.0.0.1") -> tuple[Any, Any, int]:
    """Start a ``/metrics`` server; returns ``(reader, server, bound_port)``.

    ``port=0`` picks a free port. Needs the ``prometheus`` extra.
    """
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import REGISTRY, start_http_server
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "Prometheus export needs the 'prometheus' extra: pip install 'sagellm-obs[prometheus]'"
        ) from exc
    reader = PrometheusMetricReader()
    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    bound = int(server.server_address[1])
    return reader, server, bound
