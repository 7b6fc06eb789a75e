from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sagellm_obs import AdvancedOptions, Telemetry, configure
from sagellm_obs import semconv as sc

HERE = Path(__file__).parent


@dataclass
class Mem:
    """One in-memory telemetry for the whole session (spans and metrics)."""

    telemetry: Telemetry
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def metric_points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out


@pytest.fixture(scope="session")
def session_mem() -> Iterator[Mem]:
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    tel = configure(
        run_dir=False,
        otlp_endpoint=False,
        engine_id="test-app-engine",
        make_current=False,
        advanced=AdvancedOptions(
            span_exporters=[exporter], metric_readers=[reader], simple_processors=True
        ),
    )
    mem = Mem(tel, exporter, reader)
    yield mem
    _stop_server()
    tel.shutdown()


@pytest.fixture
def mem(session_mem: Mem) -> Mem:
    """The session's in-memory telemetry, with the finished spans cleared."""
    session_mem.exporter.clear()
    return session_mem


# --- the one engine + server of this session -----------------------------------------------------
@dataclass
class Served:
    """A real engine behind a real server on 127.0.0.1; its spans go to the session's ``Mem``."""

    server: Any  # BackgroundServer
    mem: Mem
    restore: list[Callable[[], None]] = field(default_factory=list)
    closed: bool = False

    @property
    def url(self) -> str:
        return f"{self.server.url}/v1"

    @property
    def model(self) -> str:
        return str(self.server.engine.model_name)

    def wait_for(self, probe: Callable[[], Any], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self.mem.telemetry.flush()
            got = probe()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for telemetry")
            time.sleep(0.05)

    def engine_span(self, request_id: str) -> ReadableSpan:
        def probe() -> ReadableSpan | None:
            for s in self.mem.spans():
                attrs = s.attributes or {}
                if (
                    attrs.get(sc.SAGELLM_REQUEST_ID) == request_id
                    and sc.GEN_AI_OPERATION_NAME in attrs
                ):
                    return s
            return None

        span: ReadableSpan = self.wait_for(probe)
        return span

    def unfinished_requests(self) -> int:
        engine = self.server.engine
        return int(
            self.server.call(lambda: engine.llm.output_processor.get_num_unfinished_requests())
        )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.server.stop()
        finally:
            for undo in reversed(self.restore):
                undo()


_served: dict[str, Served] = {}


def _ensure_structured_output(served: Served) -> None:
    """The engine maps ``metadata["structured_output"]`` onto vLLM (forced tool calls need it)."""
    from sagellm_obs.server import openai_compat as oc

    assert oc.structured_output_supported(), "engine/convert.py must map structured_output"


@pytest.fixture
def served(session_mem: Mem) -> Served:
    """The session's server, started on first use (one vLLM engine per session)."""
    s = _served.get("s")
    if s is None or s.closed:
        from sagellm_obs.engine import EngineConfig
        from sagellm_obs.server import BackgroundServer, ServerOptions

        config = EngineConfig(
            in_process=True,
            kv_cache_memory_bytes=64 * 2**20,
            # Compact JSON under constraints: a random-weight model otherwise pads with whitespace.
            extra={
                "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True}
            },
        )
        server = BackgroundServer(
            config, telemetry=session_mem.telemetry, options=ServerOptions(port=0)
        )
        server.start()
        s = Served(server, session_mem)
        _ensure_structured_output(s)
        _served["s"] = s
    session_mem.exporter.clear()
    return s


def _stop_server() -> None:
    s = _served.pop("s", None)
    if s is not None:
        s.close()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the engine after the last test of this folder (frees it for other folders)."""
    if nextitem is not None and HERE in Path(nextitem.path).parents:
        return
    _stop_server()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _stop_server()
