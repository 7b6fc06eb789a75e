"""An optional Prometheus ``/metrics`` endpoint on 127.0.0.1, fed by the OTel meter provider.

Each :class:`~sagellm_obs.telemetry.Telemetry` gets its own registry, so two configurations in one
process (a notebook comparing runs, a test suite) never mix their samples. The endpoint also shows
the process-wide ``prometheus_client`` registry, where vLLM keeps its own ``vllm:*`` metrics.

Exemplars: the histogram buckets carry the OTel exemplars (``trace_id``, ``span_id`` of a request
that landed in the bucket) when the scraper asks for OpenMetrics (``Accept:
application/openmetrics-text``, as Prometheus does); the classic text format has no exemplars.
opentelemetry-exporter-prometheus drops them, so its collector is extended here (its private
``_CustomCollector._translate_metric``; without it, /metrics simply has no exemplars).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

_log = logging.getLogger(__name__)


def _exemplar_collector_class() -> type | None:
    """A subclass of the exporter's collector that puts exemplars on bucket samples."""
    try:
        from opentelemetry.exporter.prometheus import _CustomCollector
        from opentelemetry.sdk.metrics.export import Histogram
        from prometheus_client.samples import Exemplar
    except ImportError:  # pragma: no cover - depends on the install
        return None
    if not hasattr(_CustomCollector, "_translate_metric"):  # pragma: no cover - exporter changed
        _log.info("sagellm-obs: this opentelemetry-exporter-prometheus has no exemplar hook")
        return None

    class ExemplarCollector(_CustomCollector):
        def _translate_metric(self, metric: Any, *args: Any, **kwargs: Any) -> None:
            families = kwargs.get("metric_family_id_metric_family")
            if families is None and len(args) >= 3:
                families = args[2]
            before = {id(f): len(f.samples) for f in (families or {}).values()}
            super()._translate_metric(metric, *args, **kwargs)
            if not isinstance(metric.data, Histogram) or families is None:
                return
            try:
                _attach(metric, families, before)
            except Exception:  # exemplars must never break a scrape
                _log.debug("sagellm-obs: exemplars not attached", exc_info=True)

    def _attach(metric: Any, families: dict[str, Any], before: dict[int, int]) -> None:
        points = list(metric.data.data_points)
        if not any(p.exemplars for p in points):
            return
        for family in families.values():
            start = before.get(id(family), 0)
            new = family.samples[start:]
            buckets = [i for i, smp in enumerate(new) if smp.name.endswith("_bucket")]
            if not new or not buckets or len(buckets) != sum(len(p.bucket_counts) for p in points):
                continue
            i = 0
            for point in points:
                n = len(point.bucket_counts)
                mine = buckets[i : i + n]
                i += n
                for ex in point.exemplars:
                    if ex.trace_id is None or ex.span_id is None:
                        continue
                    slot = bisect_left(point.explicit_bounds, ex.value)
                    k = start + mine[slot]
                    family.samples[k] = family.samples[k]._replace(
                        exemplar=Exemplar(
                            {"trace_id": f"{ex.trace_id:032x}", "span_id": f"{ex.span_id:016x}"},
                            ex.value,
                            ex.time_unix_nano / 1e9,
                        )
                    )
            return

    return ExemplarCollector


def add_exemplars(reader: Any) -> bool:
    """Make a ``PrometheusMetricReader`` expose exemplars; False if this exporter cannot."""
    cls = _exemplar_collector_class()
    collector = getattr(reader, "_collector", None)
    if cls is None or collector is None or not isinstance(collector, cls.__mro__[1]):
        return False
    collector.__class__ = cls
    return True


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
    add_exemplars(reader)
    registry.register(_GlobalRegistryView())
    if port is None:
        return reader, None, None, registry
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    bound = int(server.server_address[1])
    return reader, server, bound, registry
