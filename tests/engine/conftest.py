from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from engine_harness import EngineHarness
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sagellm_obs import AdvancedOptions, configure
from sagellm_obs.engine import Engine


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
        vllm_tracing=True,  # vLLM's own llm_request spans: what the numbers are checked against
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
