"""What a collector's file exporter would write of what rotel forwarded: OTLP/JSON lines.

rotel (the collector that installs here) has no file exporter, so the test keeps every body rotel
forwards (``raw_receiver``) and writes each as one OTLP/JSON line, as the OpenTelemetry
Collector's ``file`` exporter does: protobuf's JSON mapping with trace and span ids in hex. The
conversion is written here, apart from sagellm-obs' own encoder, so the load checks that too.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sagellm_obs import semconv as sc
from tests.hardening.hardening_procs import RawReceived

_IDS = {"traceId", "spanId", "parentSpanId"}
_MESSAGES = {"/v1/traces": ExportTraceServiceRequest, "/v1/metrics": ExportMetricsServiceRequest}


def _hex(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _IDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex(value)
    elif isinstance(node, list):
        for item in node:
            _hex(item)


def write_file_export(received: RawReceived, path: Path) -> Path:
    """One OTLP/JSON line per body received (traces and metrics in one file)."""
    with received.lock:
        bodies = list(received.bodies)
    lines = []
    for route, body in bodies:
        kind = _MESSAGES.get(route)
        if kind is None:
            continue
        message = kind()
        message.ParseFromString(body)
        obj = MessageToDict(message)
        _hex(obj)
        lines.append(json.dumps(obj, separators=(",", ":")))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def request_span_count(received: RawReceived) -> int:
    """Engine request spans received so far (SERVER spans with a ``sagellm.engine_id``)."""
    return sum(
        1
        for req in received.traces()
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
        if span.kind == span.SPAN_KIND_SERVER
        and {sc.GEN_AI_OPERATION_NAME, sc.SAGELLM_ENGINE_ID} <= {kv.key for kv in span.attributes}
    )
