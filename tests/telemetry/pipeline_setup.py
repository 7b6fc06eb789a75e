"""What the pipeline tests share: a telemetry with in-memory exporters and readers, read back.

The ``setup`` fixture (``conftest.py``) configures one per test: the run folder on, spans to an
in-memory exporter through simple processors, metrics to an in-memory reader.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind

from sagellm_obs import semconv as sc
from sagellm_obs.store import files_of, iter_jsonl
from sagellm_obs.store.otlp_json import encode_spans, parse_traces_line
from sagellm_obs.telemetry import RequestRecord, Telemetry

MODEL = "tiny-model"

MakeRecord = Callable[..., RequestRecord]


def span_ctx(span: ReadableSpan) -> SpanContext:
    """The span's context (never None for a finished span)."""
    ctx = span.get_span_context()
    assert ctx is not None
    return ctx


@dataclass
class Setup:
    telemetry: Telemetry
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    @property
    def run_dir(self) -> Path:
        assert self.telemetry.run_dir is not None
        return self.telemetry.run_dir

    def submit(self, *records: RequestRecord) -> None:
        for r in records:
            self.telemetry.submit_request(r)
        assert self.telemetry.flush(timeout=10)

    def server_spans(self) -> dict[str, ReadableSpan]:
        return {
            str(s.attributes[sc.SAGELLM_REQUEST_ID]): s  # type: ignore[index]
            for s in self.spans.get_finished_spans()
            if s.kind == SpanKind.SERVER
        }

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        pid = span_ctx(parent).span_id
        kids = [
            s
            for s in self.spans.get_finished_spans()
            if s.parent is not None and s.parent.span_id == pid
        ]
        return sorted(kids, key=lambda s: s.start_time or 0)

    def metrics(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }

    def store_spans(self) -> dict[int, Any]:
        out = {}
        for f in files_of(self.run_dir, "traces"):
            for _, obj in iter_jsonl(f):
                for rs in parse_traces_line(obj).resource_spans:
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            out[int.from_bytes(span.span_id, "big")] = span
        return out

    def exported_bytes(self) -> bytes:
        """Every byte that left through an exporter: the run folder and the in-memory spans."""
        blobs = [p.read_bytes() for p in sorted(self.run_dir.iterdir()) if p.is_file()]
        blobs.append(json.dumps(encode_spans(self.spans.get_finished_spans())).encode())
        return b"\n".join(blobs)


def span_attrs(span: ReadableSpan) -> dict[str, Any]:
    """The span's attributes, sequences as lists."""
    assert span.attributes is not None
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in span.attributes.items()}
