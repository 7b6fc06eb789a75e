"""Fixtures for the telemetry tests: hand-made request records, an OTLP/HTTP receiver, rotel, and
a telemetry with in-memory exporters for the pipeline tests (``setup``)."""

from __future__ import annotations

import gzip
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sagellm_obs.telemetry import AdvancedOptions, configure
from sagellm_obs.telemetry.records import RequestRecord
from sagellm_obs.testing import make_record as make_record
from tests._procs import ROTEL_HOW, RotelProcess, find_rotel, rotel_agent
from tests._procs import free_port as free_port
from tests.telemetry.pipeline_setup import Setup

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def _clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without OTLP/sagellm settings from the outer environment."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "SAGELLM_OBS_", "SAGELLM_ENGINE_ID")):
            monkeypatch.delenv(name)


# --- an OTLP/HTTP receiver ------------------------------------------------------------------------


@dataclass
class Received:
    """What an OTLP/HTTP receiver got, parsed."""

    traces: list[Any] = field(default_factory=list)
    metrics: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> dict[int, tuple[Any, Any]]:
        """span id -> (span, resource) over everything received."""
        with self.lock:
            return {
                int.from_bytes(span.span_id, "big"): (span, rs.resource)
                for req in self.traces
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            }

    def metric_points(self, name: str) -> list[Any]:
        with self.lock:
            out = []
            for req in self.metrics:
                for rm in req.resource_metrics:
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            if m.name == name:
                                out.append(m)
            return out

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()


def _handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            reply: bytes
            if self.path == "/v1/traces":
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                with received.lock:
                    received.traces.append(req)
                reply = ExportTraceServiceResponse().SerializeToString()
            elif self.path == "/v1/metrics":
                mreq = ExportMetricsServiceRequest()
                mreq.ParseFromString(body)
                with received.lock:
                    received.metrics.append(mreq)
                reply = ExportMetricsServiceResponse().SerializeToString()
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@dataclass
class Receiver:
    url: str
    received: Received


@pytest.fixture(scope="module")
def otlp_receiver() -> Iterator[Receiver]:
    """A tiny OTLP/HTTP-protobuf receiver on 127.0.0.1 that parses what it gets."""
    received = Received()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    thread = threading.Thread(target=server.serve_forever, name="test-otlp-receiver", daemon=True)
    thread.start()
    yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", received)
    server.shutdown()
    server.server_close()
    thread.join(5)


# --- rotel ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rotel(
    otlp_receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RotelProcess]:
    """rotel-agent on free ports, forwarding everything over OTLP/HTTP to ``otlp_receiver``; its
    log names what it received (``--debug-log traces``)."""
    binary = find_rotel()
    if binary is None:
        msg = f"rotel-agent (an OTLP collector) is not available; install with: {ROTEL_HOW}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    work = tmp_path_factory.mktemp("rotel")
    with rotel_agent(binary, otlp_receiver.url, work, extra_args=("--debug-log", "traces")) as r:
        yield r


@pytest.fixture
def records() -> Callable[..., RequestRecord]:
    """``records(anchor, i, **overrides)``: see :func:`make_record`."""
    return make_record


@pytest.fixture
def unused_port() -> Callable[[], int]:
    """``unused_port()``: see :func:`free_port`."""
    return free_port


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """A telemetry of its own (not current) with in-memory exporters: see :class:`Setup`."""
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    tel = configure(
        run_dir=tmp_path / "run",
        engine_id="engine-test",
        otlp_endpoint=False,
        advanced=AdvancedOptions(
            span_exporters=[spans],
            metric_readers=[reader],
            simple_processors=True,
            metric_export_interval=3600,
        ),
        make_current=False,
    )
    yield Setup(tel, spans, reader)
    tel.shutdown()
