"""The collector metrics path for the live dashboard test: real rotel, then a Prometheus endpoint.

``sagellm-obs`` exports OTLP to a real collector (rotel-agent, from PyPI). rotel has no Prometheus
exporter, and neither the OpenTelemetry Collector nor a Prometheus with an OTLP receiver installs
on our machines, so :class:`PromEndpoint` stands in for the collector's ``prometheus`` exporter: it
receives what rotel forwards (OTLP/HTTP) and serves the latest points in the Prometheus text format,
named by the rules of the collector's translator (``prometheus/otlptranslator``, ``normalizeName``:
unit words as suffixes, units in braces dropped, ``_total`` on monotonic sums, ``_ratio`` on gauges
of unit ``1``; ``le`` as Go formats a float; ``job``/``instance`` from the resource; scope labels).
This port is written from the translator's source, independently of ``semconv.py``'s own idea of
the collector names, so a wrong guess there shows up as a panel without data.
"""

from __future__ import annotations

import gzip
import re
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

# otlptranslator's unitMap (the part that matters here) and its per-unit map.
_UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes",
    "MiBy": "mebibytes", "GiBy": "gibibytes", "1": "", "%": "percent",
}  # fmt: skip
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}


def _clean_unit(unit: str) -> str:
    unit = re.sub(r"\{[^}]*\}", "", unit)  # annotations ({token}) say nothing to Prometheus
    return "_".join(t for t in re.split(r"[^a-zA-Z0-9]", unit) if t)


def collector_name(name: str, unit: str, kind: str) -> str:
    """``normalizeName(name, unit, type)`` with suffixes on, UTF-8 off (the exporter's default)."""
    tokens = [t for t in re.split(r"[^a-zA-Z0-9:]", name) if t]
    main, _, per = unit.partition("/")
    main_suffix = _clean_unit(_UNITS.get(main, main))
    per_suffix = _clean_unit(_PER_UNITS.get(per, per)) if per else ""
    if main_suffix and main_suffix not in tokens:
        tokens.append(main_suffix)
    if per_suffix and per_suffix not in tokens:
        tokens += ["per", per_suffix]
    if kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    out = "_".join(tokens)
    return "_" + out if out[:1].isdigit() else out


def _label(key: str) -> str:
    out = re.sub(r"[^a-zA-Z0-9_]", "_", key)
    return "key_" + out if out[:1].isdigit() else out


def _go_float(value: float) -> str:
    """``strconv.FormatFloat(v, 'f', -1, 64)``: ``1``, ``0.5``, ``81.92``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _value(any_value: Any) -> str:
    kind = any_value.WhichOneof("value")
    return str(getattr(any_value, kind)) if kind else ""


class PromEndpoint:
    """OTLP/HTTP in (``/v1/metrics``; ``/v1/traces`` ignored), Prometheus text out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (name, kind, labels) -> the latest cumulative point
        self._points: dict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.received = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> PromEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def take(self, request: ExportMetricsServiceRequest) -> None:
        with self._lock:
            self.received += 1
            for rm in request.resource_metrics:
                res = {a.key: _value(a.value) for a in rm.resource.attributes}
                base: dict[str, str] = {}
                if "service.name" in res:
                    ns = res.get("service.namespace")
                    base["job"] = f"{ns}/{res['service.name']}" if ns else res["service.name"]
                if "service.instance.id" in res:
                    base["instance"] = res["service.instance.id"]
                for sm in rm.scope_metrics:
                    scope = {
                        "otel_scope_name": sm.scope.name,
                        "otel_scope_version": sm.scope.version,
                    }
                    for m in sm.metrics:
                        self._take_metric(m, {**base, **scope})

    def _take_metric(self, m: Any, base: dict[str, str]) -> None:
        data = m.WhichOneof("data")
        if data == "sum":
            kind = "counter" if m.sum.is_monotonic else "gauge"
            points = m.sum.data_points
        elif data == "gauge":
            kind, points = "gauge", m.gauge.data_points
        elif data == "histogram":
            kind, points = "histogram", m.histogram.data_points
        else:
            return
        name = collector_name(m.name, m.unit, kind)
        for p in points:
            labels = {**base, **{_label(a.key): _value(a.value) for a in p.attributes}}
            self._points[(name, kind, tuple(sorted(labels.items())))] = p

    def exposition(self) -> str:
        lines: list[str] = []
        with self._lock:
            items = sorted(self._points.items(), key=lambda kv: kv[0][:2])
        typed: set[str] = set()
        for (name, kind, labels), p in items:
            if name not in typed:
                typed.add(name)
                lines.append(f"# TYPE {name} {kind}")
            if kind == "histogram":
                running = 0
                bounds = [*map(_go_float, p.explicit_bounds), "+Inf"]
                for le, count in zip(bounds, p.bucket_counts, strict=True):
                    running += count
                    lines.append(f"{name}_bucket{_fmt((*labels, ('le', le)))} {running}")
                lines.append(f"{name}_sum{_fmt(labels)} {p.sum!r}")
                lines.append(f"{name}_count{_fmt(labels)} {p.count}")
            else:
                value = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                lines.append(f"{name}{_fmt(labels)} {float(value)!r}")
        return "\n".join(lines) + "\n"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path == "/v1/metrics":
                    req = ExportMetricsServiceRequest()
                    req.ParseFromString(body)
                    endpoint.take(req)
                    reply = ExportMetricsServiceResponse().SerializeToString()
                else:
                    reply = ExportTraceServiceResponse().SerializeToString()
                self._send(200, "application/x-protobuf", reply)

            def do_GET(self) -> None:
                body = endpoint.exposition().encode()
                self._send(200, "text/plain; version=0.0.4; charset=utf-8", body)

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _fmt(labels: Any) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels) + "}"
