"""A collector that is down, or that hangs: bounded time, the local store keeps every span."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sagellm_obs.store import files_of, iter_jsonl
from sagellm_obs.telemetry import AdvancedOptions, RequestRecord, configure

EXPORT_TIMEOUT_S = 1
BOUND_S = 8.0  # flush or shutdown must finish well before this with 1 s exporter timeouts


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A TCP server that accepts connections and never reads or answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, name="test-hanging-collector", daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def _stored_span_count(run: Path) -> int:
    return sum(
        len(ss["spans"])
        for f in files_of(run, "traces")
        for _, obj in iter_jsonl(f)
        for rs in obj["resourceSpans"]
        for ss in rs["scopeSpans"]
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("collector", ["down", "hanging"])
def test_unreachable_collector_is_bounded_and_loses_nothing_locally(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    records: Callable[..., RequestRecord],
    unused_port: Callable[[], int],
    protocol: str,
    collector: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", str(EXPORT_TIMEOUT_S))
    port = unused_port() if collector == "down" else request.getfixturevalue("hanging_port")
    tel = configure(
        run_dir=tmp_path / "run",
        otlp_endpoint=f"http://127.0.0.1:{port}",
        otlp_protocol=protocol,  # type: ignore[arg-type]
        advanced=AdvancedOptions(span_batch_delay=0.05, metric_export_interval=3600),
        make_current=False,
    )
    closed = False
    try:
        anchor = tel.anchor
        recs = [records(anchor, i) for i in range(5)]
        start = time.monotonic()
        for r in recs:
            tel.submit_request(r)
        assert time.monotonic() - start < 0.05  # the engine's path never waits on the network

        start = time.monotonic()
        tel.flush(timeout=BOUND_S)
        flush_s = time.monotonic() - start
        assert flush_s < BOUND_S, f"flush took {flush_s:.1f} s"

        assert tel.run_dir is not None
        assert _stored_span_count(tel.run_dir) == 4 * len(recs)
        stats = tel.stats()
        assert stats["requests_recorded"] == len(recs)
        assert stats["otlp_spans_failed"] > 0
        assert stats["otlp_spans_exported"] == 0

        start = time.monotonic()
        tel.shutdown()
        closed = True
        shutdown_s = time.monotonic() - start
        assert shutdown_s < BOUND_S, f"shutdown took {shutdown_s:.1f} s"
        assert stats["otlp_spans_failed"] + tel.stats()["otlp_spans_exported"] <= 4 * len(recs)
        assert _stored_span_count(tel.run_dir) == 4 * len(recs)
    finally:
        if not closed:
            tel.shutdown()
