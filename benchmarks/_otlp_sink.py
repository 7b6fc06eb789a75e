"""An OTLP/gRPC receiver that keeps nothing: ``python -m benchmarks._otlp_sink [PORT]``.

It listens on 127.0.0.1 (port 0 picks a free one), prints ``PORT <n>`` on stdout once it
listens, counts requests and bytes without parsing them, and stops on SIGTERM/SIGINT. It runs in
its own process so that the receiving side's CPU is not charged to the engine being measured.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc  # type: ignore[import-untyped]

_SERVICES = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}


class _Drop(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0

    def service(self, handler_call_details: Any) -> Any:
        if handler_call_details.method not in _SERVICES:
            return None

        def export(request: bytes, context: Any) -> bytes:
            self.requests += 1
            self.bytes += len(request)
            return b""  # an empty Export*ServiceResponse

        return grpc.unary_unary_rpc_method_handler(export)


def main(port: int = 0) -> None:
    handler = _Drop()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"PORT {bound}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(0)
    print(f"RECEIVED {handler.requests} {handler.bytes}", flush=True)


@dataclass
class Sink:
    """A running sink subprocess (stop it with :meth:`stop`, which kills only its PID)."""

    proc: subprocess.Popen[str]
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> tuple[int, int]:
        """Stop the sink; returns (requests, bytes) it received."""
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
        for line in out.splitlines():
            if line.startswith("RECEIVED"):
                _, n, b = line.split()
                return int(n), int(b)
        return 0, 0


def start() -> Sink:
    """Start a sink on a free port and wait until it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._otlp_sink"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"OTLP sink did not start: {line!r}")
    return Sink(proc, int(line.split()[1]))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
