"""``phoenix serve`` with its OTLP/gRPC receiver on 127.0.0.1. Run it with Phoenix's own Python.

Phoenix (20.26.1) binds the gRPC port on ``[::]``, all interfaces, whatever ``PHOENIX_HOST`` says
(``phoenix/server/grpc_server.py`` calls ``add_insecure_port(f"[::]:{port}")``; no setting changes
it). This wraps ``grpc.aio.server`` so that the port is bound on loopback instead, then runs the
``phoenix serve`` command. Everything else is configured as usual: ``PHOENIX_HOST``,
``PHOENIX_PORT``, ``PHOENIX_GRPC_PORT``, ``PHOENIX_WORKING_DIR``, ``PHOENIX_TELEMETRY_ENABLED``.
"""

from __future__ import annotations

import sys
from typing import Any

import grpc.aio

LOOPBACK = "127.0.0.1"
_new_server = grpc.aio.server


def _on_loopback(address: str) -> str:
    """``[::]:4317`` or ``0.0.0.0:4317`` -> ``127.0.0.1:4317``."""
    return f"{LOOPBACK}:{address.rpartition(':')[2]}"


def _loopback_server(*args: Any, **kwargs: Any) -> Any:
    server = _new_server(*args, **kwargs)
    add_insecure, add_secure = server.add_insecure_port, server.add_secure_port
    server.add_insecure_port = lambda address: add_insecure(_on_loopback(address))
    server.add_secure_port = lambda address, creds: add_secure(_on_loopback(address), creds)
    return server


if __name__ == "__main__":
    grpc.aio.server = _loopback_server
    from phoenix.server.main import main

    sys.argv = ["phoenix", "serve"]
    sys.exit(main())
