from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sagellm_obs import AdvancedOptions, Telemetry, configure
from sagellm_obs.engine import Engine

# ~330 tokens of shared prefix: more than two of vLLM's 128-token CPU blocks.
SHARED_PREFIX = (
    "You are a careful assistant that answers questions about Python programs. "
    "Read the code, explain what it does, and point out any bug you find. " * 12
)


@dataclass
class EngineHarness:
    engine: Engine
    telemetry: Telemetry
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    run_dir: Path
    outputs: dict[str, Any] = field(default_factory=dict)

    def flush(self) -> None:
        assert self.telemetry.flush()

    def request_spans(self) -> dict[str, Any]:
        from opentelemetry.trace import SpanKind

        return {
            s.attributes["sagellm.request_id"]: s
            for s in self.spans.get_finished_spans()
            if s.kind == SpanKind.SERVER and s.attributes
        }

    def children(self, span: Any) -> list[Any]:
        sid = span.context.span_id
        kids = [s for s in self.spans.get_finished_spans() if s.parent and s.parent.span_id == sid]
        return sorted(kids, key=lambda s: s.start_time)


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineHarness]:
    run_dir = tmp_path_factory.mktemp("engine-run")
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    tel = configure(
        run_dir=run_dir,
        engine_id="test-engine",
        otlp_endpoint=False,
        prometheus_port=0,
        make_current=False,
        advanced=AdvancedOptions(
            span_exporters=[spans], metric_readers=[reader], simple_processors=True
        ),
    )
    engine = Engine("tiny", telemetry=tel, in_process=True, kv_cache_memory_bytes=64 * 2**20)
    h = EngineHarness(engine, tel, spans, reader, run_dir)

    def keep(out: Any) -> None:
        h.outputs[out.request_id] = out

    engine.engine.on_request_output = keep
    yield h
    engine.close()
    tel.shutdown()
