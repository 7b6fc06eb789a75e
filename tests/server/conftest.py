from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sagellm_obs import AdvancedOptions, Telemetry, configure
from sagellm_obs import semconv as sc

API_KEY = "test-key-123"
HERE = Path(__file__).parent

# ~330 tokens: more than two of vLLM's 128-token CPU blocks, so a repeat hits the prefix cache.
LONG_PROMPT = (
    "You are a careful assistant that answers questions about Python programs. "
    "Read the code, explain what it does, and point out any bug you find. " * 12
)


@dataclass
class ServerHarness:
    """One real engine behind a real uvicorn server on 127.0.0.1, spans in memory."""

    server: Any  # BackgroundServer
    telemetry: Telemetry
    spans: InMemorySpanExporter
    run_dir: Path
    api_key: str = API_KEY
    closed: bool = False

    @property
    def url(self) -> str:
        return str(self.server.url)

    @property
    def model(self) -> str:
        return str(self.server.engine.model_name)

    def client(self, *, key: str | None = API_KEY, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers.update(kw.pop("headers", {}))
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)

    def flush(self) -> None:
        assert self.telemetry.flush()

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def engine_span(self, request_id: str, timeout: float = 10.0) -> ReadableSpan:
        """The engine's request span of ``request_id`` (waits for the telemetry thread)."""
        return self.wait_for(
            lambda: next(
                (
                    s
                    for s in self.finished()
                    if s.attributes
                    and s.attributes.get(sc.SAGELLM_REQUEST_ID) == request_id
                    and sc.GEN_AI_OPERATION_NAME in s.attributes
                ),
                None,
            ),
            timeout,
        )

    def http_spans(self, trace_id: int | None = None) -> list[ReadableSpan]:
        return [
            s
            for s in self.finished()
            if s.attributes
            and "http.request.method" in s.attributes
            and (trace_id is None or s.context.trace_id == trace_id)
        ]

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        sid = span.context.span_id
        kids = [s for s in self.finished() if s.parent and s.parent.span_id == sid]
        return sorted(kids, key=lambda s: s.start_time or 0)

    def unfinished_requests(self) -> int:
        engine = self.server.engine
        return int(
            self.server.call(lambda: engine.llm.output_processor.get_num_unfinished_requests())
        )

    def wait_for(self, probe: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            got = probe()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for telemetry")
            time.sleep(0.05)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.server.stop()
        finally:
            self.telemetry.shutdown()


_harness: dict[str, ServerHarness] = {}


def _start(tmp: Path) -> ServerHarness:
    from sagellm_obs.engine import EngineConfig
    from sagellm_obs.server import BackgroundServer, ServerOptions

    spans = InMemorySpanExporter()
    tel = configure(
        run_dir=tmp,
        engine_id="test-server-engine",
        otlp_endpoint=False,
        prometheus_port="registry",  # the server's /metrics serves them next to vLLM's
        make_current=False,
        advanced=AdvancedOptions(span_exporters=[spans], simple_processors=True),
    )
    config = EngineConfig(in_process=True, kv_cache_memory_bytes=64 * 2**20)
    server = BackgroundServer(config, telemetry=tel, options=ServerOptions(port=0, api_key=API_KEY))
    try:
        server.start()
    except BaseException:
        tel.shutdown()
        raise
    return ServerHarness(server, tel, spans, tmp)


@pytest.fixture
def harness(tmp_path_factory: pytest.TempPathFactory) -> ServerHarness:
    """The shared server, started on first use and stopped after the last test of this folder.

    Stopping early frees its vLLM engine (and its Prometheus endpoint) before other folders run.
    """
    h = _harness.get("h")
    if h is None or h.closed:
        h = _start(tmp_path_factory.mktemp("server-run"))
        _harness["h"] = h
    return h


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is not None and HERE in Path(nextitem.path).parents:
        return
    h = _harness.pop("h", None)
    if h is not None:
        h.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    h = _harness.pop("h", None)
    if h is not None:
        h.close()


@pytest.fixture
def long_prompt() -> str:
    return LONG_PROMPT


@pytest.fixture
def client(harness: ServerHarness) -> Iterator[httpx.Client]:
    with harness.client() as c:
        yield c
