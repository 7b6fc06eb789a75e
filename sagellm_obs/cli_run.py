"""The main job behind ``sagellm-obs run`` and ``make run``: engine, workload, summary, report."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sagellm_obs.cli_options import one_line
from sagellm_obs.workload.generators import DEFAULT_WORKLOAD
from sagellm_obs.workload.item import WorkItem

if TYPE_CHECKING:
    from sagellm_obs.workload.runner import RunResult

TINY_RUN_KV_CACHE_BYTES = 20 * 2**20
"""The tiny model's KV cache in a run: 40 blocks of 128 tokens (4 KiB per token), room for the
default workload's shared prefixes and a few of its long prompts, so its pressure phase fills the
cache and makes requests wait (a larger cache would sit at a few percent all run long)."""


class EngineStartError(RuntimeError):
    """vLLM did not start (the message is one line; the cause is chained)."""


@dataclass
class MainJob:
    """One instrumented run. ``run()`` returns the process exit code."""

    model: str = "tiny"
    workload: str = DEFAULT_WORKLOAD
    requests: int = 200
    duration: float | None = None
    rate: float | None = None
    concurrency: int = 8
    max_tokens: int = 32
    prefix_caching: bool = True
    kv_cache_bytes: int | None = None
    out: Path | None = None
    otlp: str | None = None
    slo: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    in_process: bool = True
    endpoint: str | None = None
    route: str = "round-robin"
    api_key: str | None = None
    vllm_tracing: bool = False
    #: More :class:`~sagellm_obs.engine.EngineConfig` fields (``max_model_len``, ``extra``...).
    engine_options: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    _task: Any = None
    _loop: Any = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def items(self) -> list[WorkItem]:
        """The workload's items, with arrivals applied."""
        from sagellm_obs.workload import apply_arrivals, build_workload, load_replay, poisson

        path = Path(self.workload)
        if path.suffix in (".jsonl", ".json") or path.exists():
            result = load_replay(path)
            for bad in result.bad_lines:
                Console(stderr=True).print(f"[yellow]{path}:{bad.line}: skipped: {bad.message}[/]")
            items = list(result.items)[: self.requests]
        else:
            items = build_workload(
                self.workload, n_requests=self.requests, max_tokens=self.max_tokens, seed=self.seed
            )
        if self.rate:
            items = apply_arrivals(items, poisson(self.rate, seed=self.seed))
        return items

    def _kv_cache(self) -> dict[str, Any]:
        """The KV-cache size to ask for: the user's, or the story-telling one of the tiny model."""
        if self.kv_cache_bytes is not None:  # 0: vLLM sizes it (--kv-cache-memory auto)
            return {"kv_cache_memory_bytes": self.kv_cache_bytes or None}
        if self.model == "tiny":
            return {"kv_cache_memory_bytes": TINY_RUN_KV_CACHE_BYTES}
        return {}  # EngineConfig's default

    def stop(self) -> None:
        """Ask the run to stop (Ctrl-C): in-flight requests are aborted, the rest is kept."""
        self._stop.set()
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)

    def run(self, console: Console) -> int:
        """Run everything and print the summary."""
        from sagellm_obs.telemetry import configure

        items = self.items()
        if not items:
            console.print("[red]The workload has no requests.[/]")
            return 2
        tel = configure(
            run_dir=self.out or None,
            otlp_endpoint=self.otlp or None,
            vllm_tracing=self.vllm_tracing or None,
            # A client of remote replicas runs no engine: its own rows must not pose as one
            # (each client span carries the replica's engine id instead).
            engine_id=f"client-{os.getpid()}" if self.endpoint else None,
        )
        self.run_dir = tel.run_dir
        console.print(f"[bold]sagellm-obs run[/] -> {tel.run_dir}")
        if self.endpoint:
            return self._run_http(console, items, tel)
        self._write_manifest(tel, items)
        engine = self._start_engine(console, tel, items)
        result: RunResult | None = None
        try:
            result = self._drive(console, engine, items)
        finally:
            with console.status("flushing telemetry and stopping vLLM..."):
                engine.close()
                tel.shutdown()
        if result is not None and result.interrupted:
            console.print("[yellow]Interrupted: the run folder keeps every finished request.[/]")
        return self.report(console)

    def _start_engine(self, console: Console, tel: Any, items: list[WorkItem]) -> Any:
        """The instrumented engine of this run; :class:`EngineStartError` (telemetry shut
        down) when vLLM does not start."""
        from sagellm_obs.engine import Engine

        t0 = time.perf_counter()
        try:
            with console.status("starting vLLM (the tiny model is built offline on first use)..."):
                engine = Engine(
                    self.model,
                    telemetry=tel,
                    in_process=self.in_process,
                    enable_prefix_caching=self.prefix_caching,
                    **{**self._kv_cache(), **self.engine_options},
                )
        except Exception as exc:
            tel.shutdown()
            raise EngineStartError(f"vLLM did not start: {one_line(exc)}") from exc
        console.print(
            f"engine up in {time.perf_counter() - t0:.1f} s: model [cyan]{engine.model_name}[/], "
            f"{len(items)} requests of workload [cyan]{items[0].kind}[/]"
        )
        return engine

    def _drive(self, console: Console, engine: Any, items: list[WorkItem]) -> RunResult | None:
        """Run the workload on the engine's loop under a progress bar; None when cancelled."""
        from sagellm_obs.workload.runner import run_workload

        # Not a terminal (a pipe, a CI log): rich prints the line once, at 80 columns; the
        # bar would squeeze the counts into "200/…".
        bar_column = [BarColumn()] if console.is_terminal else []
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            *bar_column,
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[live]}"),
            console=console,
            transient=False,
        ) as bar:
            task_id = bar.add_task("requests", total=len(items), live="")

            def show(p: Any) -> None:
                bar.update(
                    task_id,
                    completed=p.done,
                    live=f"{p.tokens_per_s:7.0f} tok/s  KV {p.kv_usage:6.1%}  "
                    f"prefix hits {p.prefix_hit_rate:6.1%}  failed {p.failed}",
                )

            async def main() -> RunResult:
                self._loop = asyncio.get_running_loop()
                self._task = asyncio.current_task()
                return await run_workload(
                    engine.engine,
                    items,
                    concurrency=self.concurrency,
                    duration=self.duration,
                    on_progress=show,
                )

            future = engine.submit(main())
            while True:  # short waits: Ctrl-C reaches this thread between them
                try:
                    return future.result(timeout=0.25)  # type: ignore[no-any-return]
                except concurrent.futures.TimeoutError:
                    continue
                except concurrent.futures.CancelledError:
                    return None

    def _write_manifest(self, tel: Any, items: list[WorkItem]) -> None:
        if tel.store is not None:
            tel.store.update_manifest(
                workload={
                    "name": items[0].kind,
                    "requests": len(items),
                    "rate": self.rate,
                    "concurrency": self.concurrency,
                    "max_tokens": self.max_tokens,
                    "seed": self.seed,
                    "prefix_caching": self.prefix_caching,
                    "slo": self.slo,
                    "endpoint": self.endpoint,
                    **(self._fleet() if self.endpoint else {}),
                }
            )

    def _fleet(self) -> dict[str, Any]:
        """The manifest's replicas and routing policy of an ``--endpoint`` run."""
        from sagellm_obs.workload.routing import parse_endpoints

        return {"endpoints": parse_endpoints(self.endpoint or ""), "route": self.route}

    def _run_http(self, console: Console, items: list[WorkItem], tel: Any) -> int:
        """``--endpoint``: no local engine; the run folder gets the client rows and the manifest."""
        from sagellm_obs.workload.http_runner import run_http_workload
        from sagellm_obs.workload.routing import make_router, parse_endpoints
        from sagellm_obs.workload.server_counters import MANIFEST_KEY, CountersAround

        assert self.endpoint is not None
        try:
            endpoints = parse_endpoints(self.endpoint)
            make_router(self.route, [])
        except ValueError as exc:
            console.print(f"[red]{exc}[/]")
            tel.shutdown()
            return 2
        self._write_manifest(tel, items)
        replicas = self._record_replicas(console, tel, endpoints)
        to = ", ".join(endpoints)
        if len(endpoints) > 1:
            to += f" ({self.route})"
        kind = items[0].kind
        console.print(f"{len(items)} requests of workload [cyan]{kind}[/] to [cyan]{to}[/]")
        model = None if self.model == "tiny" else self.model

        async def main() -> Any:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            return await run_http_workload(
                endpoints,
                items,
                route=self.route,
                telemetry=tel,
                store=tel.store,
                concurrency=self.concurrency,
                duration=self.duration,
                api_key=self.api_key,
                model=model,
                engine_ids={r["endpoint"]: r["engine_id"] for r in replicas if r["engine_id"]},
            )

        counters = CountersAround(endpoints, api_key=self.api_key)  # the servers' own view
        try:
            with console.status("sending requests..."):
                counters.start()
                result = asyncio.run(main())
                if tel.store is not None:
                    tel.store.update_manifest(**{MANIFEST_KEY: counters.finish()})
        finally:
            tel.shutdown()
        if result.interrupted:
            console.print("[yellow]Interrupted: the run folder keeps every finished request.[/]")
        if len(result.replicas) > 1:
            for r in result.replicas.values():
                console.print(
                    f"  {r.endpoint}: {r.done} requests ({r.failed} failed), "
                    f"{r.output_tokens} output tokens"
                )
        assert self.run_dir is not None
        # The replicas still run: their last spans may not be in their folders yet.
        code = summarize_run(self.run_dir, console, replicas=False)
        if any(r["run_id"] for r in replicas):
            console.print(
                "the replicas' run folders join this run once they have flushed (stopped, or a "
                f"few seconds on): [cyan]sagellm-obs report {self.run_dir}[/]",
                highlight=False,
            )
        return code

    def _record_replicas(
        self, console: Console, tel: Any, endpoints: list[str]
    ) -> list[dict[str, Any]]:
        """Ask each replica where it records (``GET /v1/sagellm/run``); into the manifest."""
        from sagellm_obs.workload.replica_info import ask_replicas

        replicas = asyncio.run(ask_replicas(endpoints, api_key=self.api_key))
        tel.annotate_run(replicas=replicas)
        for entry in replicas:
            if entry.get("problem"):
                console.print(f"  {entry['endpoint']}: [yellow]{entry['problem']}[/]")
            else:
                console.print(
                    f"  {entry['endpoint']}: engine [cyan]{entry['engine_id']}[/], "
                    f"run folder {entry['run_dir']}",
                    highlight=False,
                )
        return replicas

    def report(self, console: Console) -> int:
        """Summarise the run folder: terminal tables, ``summary.json`` and ``report.html``."""
        assert self.run_dir is not None
        return summarize_run(self.run_dir, console)  # the manifest holds the SLOs


def summarize_run(
    run_dir: Path,
    console: Console,
    *,
    slo: dict[str, float] | None = None,
    also: list[Path] | None = None,
    replicas: bool = True,
) -> int:
    """Print the summary of a run folder and (re)write its ``summary.json`` and ``report.html``.

    ``slo`` None takes the SLOs the run recorded; given ones override them, and say so.
    ``also``: more run folders summarised with it as one fleet (the replicas' runs of an
    ``--endpoint`` run); the files are written into ``run_dir``. ``replicas``: join the replica
    folders a client run's manifest names (see :mod:`sagellm_obs.frames.replicas`); the ones
    joined and the ones not found are said once.
    """
    import warnings

    from sagellm_obs.frames.replicas import MissingReplicasWarning, missing_text, with_replicas

    extra = list(also or [])
    if replicas:
        fleet = with_replicas([run_dir, *extra])
        if fleet.found:
            shown = ", ".join(str(p) for p in fleet.found)
            console.print(f"replica run folders joined: {shown}", highlight=False)
        if fleet.missing:
            console.print(f"[yellow]{missing_text(fleet.missing)}[/]", highlight=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingReplicasWarning)  # said above, once
        return _summarize_run(run_dir, console, slo, extra, replicas)


def _summarize_run(
    run_dir: Path,
    console: Console,
    slo: dict[str, float] | None,
    extra: list[Path],
    replicas: bool,
) -> int:
    import json

    from sagellm_obs.run_setup import slo_text
    from sagellm_obs.run_summary import render_summary, summarize

    summary = summarize([run_dir, *extra], slo=slo, replicas=replicas)
    if slo is not None:
        recorded = summary.setup.slo
        was = f"the run recorded {slo_text(recorded)}" if recorded else "the run recorded none"
        now = slo_text(slo) or "none"
        console.print(f"goodput SLOs from --slo: {now} ({was})", highlight=False)
    (run_dir / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    console.print(render_summary(summary))
    try:
        from sagellm_obs.report import write_report
    except ImportError as exc:  # the notebook extra (altair) is missing
        console.print(f"[yellow]no report.html: {exc}[/]")
    else:
        with console.status("writing report.html..."):
            path = write_report(run_dir, slo=slo, also=extra, replicas=replicas)
        console.print(f"report: [green]{path}[/]")
    console.print(f"run folder: [green]{run_dir}[/]")
    return 0 if summary.requests else 1


def serve_and_summarize(console: Console, **options: Any) -> int:
    """``sagellm-obs serve``: :func:`sagellm_obs.server.serve` with ``options``; once it stops,
    the run folder's summary in the terminal, ``summary.json`` and ``report.html``, as ``run``
    writes them."""
    from sagellm_obs.server import serve

    try:
        return serve(on_stopped=lambda run_dir: summarize_run(run_dir, console), **options)
    except Exception as exc:
        raise EngineStartError(f"serve failed: {one_line(exc)}") from exc
