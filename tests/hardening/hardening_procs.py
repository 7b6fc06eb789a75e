"""Real processes for the hardening tests: the server and a raw OTLP/HTTP receiver (rotel comes
from tests/_procs.py).

Everything binds 127.0.0.1 on free ports, and every process started here is stopped by its own
process id (its process group, which it leads, for what it spawned).
"""

from __future__ import annotations

import gzip
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

# rotel and free ports: one home for the tests (tests/_procs.py), importable from here as before
from tests._procs import RotelProcess as RotelProcess
from tests._procs import find_rotel as find_rotel
from tests._procs import free_port as free_port
from tests._procs import rotel_agent as rotel_agent

ROTEL_HOW = "pip install -c requirements/constraints.txt 'rotel>=0.0.1a15'"
SERVER_START_S = 240.0
_SERVING = re.compile(r"serving on (http://127\.0\.0\.1:\d+)")
# Settings of the outer environment that would change what a child process exports.
# Dropped from a child's environment: OTLP/sagellm settings, and vLLM's multiprocessing switch,
# which an in-process engine started earlier in this pytest process sets to "0" (a server started
# with it inherited runs EngineCore on its event loop, and answers no scrape while it generates).
_ENV_PREFIXES = ("OTEL_", "SAGELLM_OBS_", "SAGELLM_ENGINE_ID", "VLLM_ENABLE_V1_MULTIPROCESSING")


IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need(condition: bool, what: str, how: str) -> None:
    """Skip (outside CI) or fail (in CI) when a component is missing, as tests/conftest.py does.

    (``tests.conftest`` is importable only when the checkout is on ``sys.path``.)
    """
    if condition:
        return
    msg = f"{what} is not available; install it with: {how}"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def child_env(**extra: str) -> dict[str, str]:
    """This environment without OTLP/sagellm settings and vLLM's multiprocessing switch (the
    child gets the default a user's shell gives), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
    env.update(extra)
    return env


def wait_until(probe: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``probe()`` until it is truthy; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def stop_process(proc: subprocess.Popen[Any], *, graceful: float = 30.0) -> int | None:
    """SIGTERM ``proc``, wait ``graceful`` s, then SIGKILL its process group; returns its code."""
    code: int | None = None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(graceful)
        except subprocess.TimeoutExpired:
            code = None
    else:
        code = proc.returncode
    kill_group(proc.pid)
    if proc.poll() is None:
        proc.wait(10)
    return code


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of the process group ``pgid`` (a group a test started)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LinePump:
    """Reads a child's output into a log file and a queue of ``(time.time(), line)``."""

    def __init__(self, stream: Any, log: Path) -> None:
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.log = log
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: Any) -> None:
        with open(self.log, "a", encoding="utf-8", errors="replace") as out:
            for line in stream:
                out.write(line)
                out.flush()
                self.lines.put((time.time(), line))
        self.done.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


# --- the server -----------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """``sagellm-obs serve --port 0`` as a real process, its run folder and its log."""

    proc: subprocess.Popen[str]
    url: str
    run_dir: Path
    log: Path
    pump: LinePump
    api_key: str | None = None
    exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, timeout: float = 60, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=timeout, **kw)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def metrics_text(self) -> str:
        resp = httpx.get(f"{self.url}/metrics", headers=self.headers(), timeout=30)
        assert resp.status_code == 200, resp.text[:500]
        return resp.text

    def stop(self) -> int | None:
        """Graceful stop (flushes telemetry into the run folder); SIGKILL after 60 s."""
        if self.exit_code is None:
            self.exit_code = stop_process(self.proc, graceful=60)
            self.pump.join(10)
        return self.exit_code


def start_server(
    work: Path,
    *,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> ServerProcess:
    """Start the server on a free port with its run folder under ``work``; wait until it serves.

    ``args``: more ``sagellm-obs serve`` options (e.g. ``("--data-parallel-size", "2")``).
    """
    work.mkdir(parents=True, exist_ok=True)
    run_dir = work / "run"
    log = work / "server.log"
    extra = {"SAGELLM_OBS_RUN_DIR": str(run_dir), **(env or {})}
    if api_key:
        extra["SAGELLM_OBS_API_KEY"] = api_key
    proc = subprocess.Popen(
        [sys.executable, "-m", "sagellm_obs.cli", "serve", "--port", "0", *args],
        env=child_env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so nothing it spawns outlives it
    )
    assert proc.stdout is not None
    pump = LinePump(proc.stdout, log)
    url = None
    deadline = time.monotonic() + SERVER_START_S
    try:
        while url is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not start in {SERVER_START_S} s")
            try:
                _, line = pump.lines.get(timeout=0.5)
            except queue.Empty:
                if proc.poll() is not None and pump.done.is_set():
                    raise AssertionError(
                        f"the server exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
                    ) from None
                continue
            if m := _SERVING.search(line):
                url = m.group(1)
    except BaseException:
        stop_process(proc, graceful=5)
        raise
    return ServerProcess(proc, url, run_dir, log, pump, api_key)


def start_servers(
    works: list[Path],
    *,
    env: Mapping[str, str] | None = None,
    envs: list[Mapping[str, str]] | None = None,
    **kw: Any,
) -> list[ServerProcess]:
    """:func:`start_server` for each of ``works`` at once (start-up is mostly one process's
    imports and compiling: two start in about the time of one on two cores); all or none.

    ``envs``: each server's own ``env``, in the order of ``works`` (else ``env`` for all).
    """
    each = envs if envs is not None else [env] * len(works)
    with ThreadPoolExecutor(len(works)) as pool:
        futures = [
            pool.submit(start_server, work, env=env, **kw)
            for work, env in zip(works, each, strict=True)
        ]
    started = [f.result() for f in futures if f.exception() is None]
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        for server in started:
            server.stop()
        raise failed[0]  # type: ignore[misc]
    return started


# --- Prometheus text ----------------------------------------------------------------------------


def metric_totals(text: str) -> dict[str, float]:
    """Prometheus text -> sample name -> sum over all label sets."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


# --- a raw OTLP/HTTP receiver -------------------------------------------------------------------


@dataclass
class RawReceived:
    """Every request body an OTLP/HTTP receiver got, decompressed, by path."""

    bodies: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def all_bytes(self) -> bytes:
        with self.lock:
            return b"".join(body for _, body in self.bodies)

    def paths(self) -> dict[str, int]:
        with self.lock:
            out: dict[str, int] = {}
            for path, _ in self.bodies:
                out[path] = out.get(path, 0) + 1
            return out

    def traces(self) -> list[Any]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        with self.lock:
            bodies = [b for p, b in self.bodies if p == "/v1/traces"]
        out = []
        for body in bodies:
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            out.append(req)
        return out

    def span_attributes(self) -> list[dict[str, Any]]:
        """The attributes of every span received, as ``{key: AnyValue}``."""
        return [
            {kv.key: kv.value for kv in span.attributes}
            for req in self.traces()
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]


def _raw_handler(received: RawReceived) -> type[BaseHTTPRequestHandler]:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceResponse,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    replies = {
        "/v1/traces": ExportTraceServiceResponse().SerializeToString(),
        "/v1/metrics": ExportMetricsServiceResponse().SerializeToString(),
        "/v1/logs": b"",
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            with received.lock:
                received.bodies.append((self.path, body))
            reply = replies.get(self.path, b"")
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def raw_receiver() -> Iterator[tuple[str, RawReceived]]:
    """An OTLP/HTTP receiver on 127.0.0.1 that keeps every raw body: ``(url, received)``."""
    received = RawReceived()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _raw_handler(received))
    thread = threading.Thread(target=server.serve_forever, name="raw-otlp-receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
