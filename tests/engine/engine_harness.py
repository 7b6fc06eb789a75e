"""The shared engine harness of tests/engine (imported by its tests and conftest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sagellm_obs import Telemetry
from sagellm_obs.engine import Engine

# ~330 tokens of shared prefix: more than two of vLLM's 128-token CPU blocks.
SHARED_PREFIX = (
    "You are a careful assistant that answers questions about Python programs. "
    "Read the code, explain what it does, and point out any bug you find. " * 12
)


def request(rid: str, max_tokens: int, *, stream: bool = False) -> Any:
    """A request of exactly ``max_tokens`` output tokens (``ignore_eos``), prompted by ``rid``."""
    from sagellm_obs.protocol import Request

    return Request(
        request_id=rid,
        trace_id=rid,
        prompt=f"def {rid.replace('-', '_')}():\n",
        max_tokens=max_tokens,
        stream=stream,
        metadata={"ignore_eos": True},
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
        """Our request spans by request id."""
        from opentelemetry.trace import SpanKind

        return {
            s.attributes["sagellm.request_id"]: s
            for s in self.spans.get_finished_spans()
            if s.kind == SpanKind.SERVER and s.attributes and "sagellm.request_id" in s.attributes
        }

    def vllm_spans(self) -> dict[str, Any]:
        """vLLM's own ``llm_request`` spans (vLLM emitted them; the receiver) by request id."""
        return {
            s.attributes["gen_ai.request.id"]: s
            for s in self.spans.get_finished_spans()
            if s.name == "llm_request" and s.attributes
        }

    def children(self, span: Any) -> list[Any]:
        """Our child spans of ``span`` (vLLM's ``llm_request`` child is :meth:`vllm_spans`')."""
        sid = span.context.span_id
        kids = [
            s
            for s in self.spans.get_finished_spans()
            if s.parent and s.parent.span_id == sid and s.name != "llm_request"
        ]
        return sorted(kids, key=lambda s: s.start_time)

    def vllm_histogram(self, name: str) -> tuple[float, float]:
        """``(count, sum)`` of vLLM's own Prometheus histogram ``vllm:{name}_seconds`` (or
        ``vllm:{name}``) of this engine, e.g. ``"time_to_first_token"``.

        Read from the engine's PrometheusStatLogger, not the global registry: every new vLLM
        engine in the process re-registers its metrics there.
        """
        from vllm.v1.metrics.loggers import PrometheusStatLogger

        for logger in self.engine.engine.llm.logger_manager.stat_loggers:
            if isinstance(logger, PrometheusStatLogger):
                (metric,) = getattr(logger, f"histogram_{name}")[0].collect()
                got = {s.name.rsplit("_", 1)[-1]: s.value for s in metric.samples}
                return got["count"], got["sum"]
        raise AssertionError("vLLM's PrometheusStatLogger is not installed")
