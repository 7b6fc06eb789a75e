"""``sagellm-obs``: run | report | compare | serve | watch | export | model | protocol."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from sagellm_obs.cli_export import export_app
from sagellm_obs.cli_options import (
    ENGINE_PANEL,
    BlockSize,
    EngineArg,
    KvCacheMemory,
    LogLevel,
    MaxModelLen,
    MaxNumSeqs,
    PrefixCaching,
    RunKvCacheMemory,
    Verbose,
    check_workload,
    engine_options,
    err,
    fail,
    one_line,
    set_log_level,
    verbose_requested,
    workload_help,
)
from sagellm_obs.workload.generators import DEFAULT_WORKLOAD

app = typer.Typer(
    help="Observability for LLM inference: instrumented vLLM runs, traces, reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
model_app = typer.Typer(help="The offline tiny model (no hub access).", no_args_is_help=True)
protocol_app = typer.Typer(help="sageLLM protocol types.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(protocol_app, name="protocol")
app.add_typer(export_app, name="export")
console = Console(stderr=False)


def _parse_slo(text: str | None) -> dict[str, float]:
    """``ttft=0.5,tpot=0.05`` -> ``{"ttft_s": 0.5, "tpot_s": 0.05}`` (seconds)."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip().lower().removesuffix("_s")
        if key not in ("ttft", "tpot", "e2e", "queue", "itl") or not value:
            fail(f"--slo: bad SLO {part!r}: use e.g. ttft=0.5,tpot=0.05 (seconds)")
        try:
            out[f"{key}_s"] = float(value.strip().removesuffix("s"))
        except ValueError:
            fail(f"--slo: bad SLO value in {part!r}: a number of seconds, e.g. ttft=0.5")
    return out


def _check_model(model: str) -> None:
    """A model that names a local path must exist (a hub id is left to vLLM)."""
    if model == "tiny" or Path(model).exists():
        return
    if model.startswith(("/", ".", "~")) or model.count("/") != 1:
        fail(f"no model folder {model}: give a model folder or 'tiny' (built offline)")


@app.command()
def run(
    model: Annotated[str, typer.Option(help="Model folder, or 'tiny' (built offline).")] = "tiny",
    workload: Annotated[str, typer.Option(help=workload_help())] = DEFAULT_WORKLOAD,
    requests: Annotated[int, typer.Option(help="Number of requests.")] = 200,
    duration: Annotated[float | None, typer.Option(help="Stop sending after S seconds.")] = None,
    rate: Annotated[float | None, typer.Option(help="Poisson arrivals at R requests/s.")] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight (closed loop).")] = 8,
    max_tokens: Annotated[int, typer.Option(help="Output tokens per request.")] = 32,
    prefix_caching: PrefixCaching = True,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default ./sagellm-runs/<id>).")
    ] = None,
    otlp: Annotated[str | None, typer.Option(help="Also export to this OTLP endpoint.")] = None,
    slo: Annotated[str | None, typer.Option(help="Goodput SLOs, e.g. ttft=0.5,tpot=0.05")] = None,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 0,
    multiprocess: Annotated[
        bool,
        typer.Option(
            help="Run vLLM's worker in its own process (vLLM's default).",
            rich_help_panel=ENGINE_PANEL,
        ),
    ] = False,
    endpoint: Annotated[
        str | None,
        typer.Option(
            help="Send to this OpenAI-compatible server (e.g. http://127.0.0.1:8000) instead of "
            "starting an engine; --model then names the served model ('tiny': its default). "
            "Several, comma-separated (URL1,URL2,...): replicas the workload is spread over."
        ),
    ] = None,
    route: Annotated[
        str,
        typer.Option(help="How --endpoint replicas share the workload: round-robin|least-loaded."),
    ] = "round-robin",
    api_key: Annotated[
        str | None, typer.Option(help="Bearer key for --endpoint.", envvar="SAGELLM_OBS_API_KEY")
    ] = None,
    vllm_tracing: Annotated[
        bool,
        typer.Option(
            "--vllm-tracing",
            help="Also turn on vLLM's own tracing: its llm_request span of each request joins "
            "ours in the same trace, in the run folder and the collector.",
        ),
    ] = False,
    max_model_len: MaxModelLen = None,
    max_num_seqs: MaxNumSeqs = None,
    kv_cache_memory: RunKvCacheMemory = None,
    block_size: BlockSize = None,
    engine_arg: EngineArg = None,
    log_level: LogLevel = None,
    verbose: Verbose = False,
) -> None:
    """Run a workload through the instrumented engine; print a summary, keep a run folder."""
    set_log_level(log_level, verbose)
    slos = _parse_slo(slo)
    check_workload(workload)
    engine = engine_options(
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        kv_cache_memory=kv_cache_memory,
        block_size=block_size,
        engine_arg=engine_arg,
    )
    if endpoint:
        if engine:
            fail("engine options configure a local engine; with --endpoint the server's own apply")
    else:
        _check_model(model)
    prefix_caching = bool(engine.pop("enable_prefix_caching", prefix_caching))
    kv_cache_bytes = None  # the run's default (MainJob._kv_cache)
    if "kv_cache_memory_bytes" in engine:
        kv_cache_bytes = engine.pop("kv_cache_memory_bytes") or 0  # 0: vLLM sizes it ('auto')
    from sagellm_obs.cli_run import MainJob

    job = MainJob(
        model=model,
        workload=workload,
        requests=requests,
        duration=duration,
        rate=rate,
        concurrency=concurrency,
        max_tokens=max_tokens,
        prefix_caching=prefix_caching,
        kv_cache_bytes=kv_cache_bytes,
        out=out,
        otlp=otlp,
        slo=slos,
        seed=seed,
        in_process=not multiprocess,
        endpoint=endpoint,
        route=route,
        api_key=api_key,
        vllm_tracing=vllm_tracing,
        engine_options=engine,
    )
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        err.print("[yellow]Stopping: finishing what is in flight is skipped; keeping what ran.[/]")
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C kills
        job.stop()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        code = job.run(console)
    finally:
        signal.signal(signal.SIGINT, previous)
    raise typer.Exit(code)


def _run_folder(run_dir: Path) -> None:
    if not run_dir.is_dir():
        fail(f"{run_dir} is not a run folder")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    also: Annotated[
        list[Path] | None,
        typer.Argument(
            help="More run folders of the same fleet (e.g. the replicas' runs of an "
            "--endpoint run), summarised with it; the files go into RUN_DIR."
        ),
    ] = None,
    slo: Annotated[
        str | None,
        typer.Option(help="Goodput SLOs, e.g. ttft=0.5,tpot=0.05 (default: the run's own)."),
    ] = None,
) -> None:
    """(Re)build a run's summary and its self-contained report.html (split by engine when more
    than one engine served it)."""
    from sagellm_obs.cli_run import summarize_run

    for path in [run_dir, *(also or [])]:
        _run_folder(path)
    slos = _parse_slo(slo) if slo else None
    raise typer.Exit(summarize_run(run_dir, console, slo=slos, also=also))


@app.command()
def compare(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folders, the baseline first (two or more).")
    ],
    out: Annotated[Path | None, typer.Option(help="Comparison report path.")] = None,
) -> None:
    """Print runs' summaries side by side with deltas against the first and write a report."""
    from sagellm_obs.run_comparison import render_comparison
    from sagellm_obs.run_summary import summarize

    if len(runs) < 2:
        fail("give two run folders or more (the baseline first)")
    for run in runs:
        _run_folder(run)
    summaries = [summarize(run) for run in runs]
    console.print(render_comparison(*summaries))
    try:
        from sagellm_obs.report import write_run_comparison
    except ImportError as exc:
        console.print(f"[yellow]no comparison report: {exc}[/]")
        return
    path = write_run_comparison(runs, out or runs[-1] / "compare.html")
    console.print(f"comparison report: [green]{path}[/]")


@app.command()
def serve(
    model: Annotated[str, typer.Option(help="Model folder, or 'tiny' (built offline).")] = "tiny",
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 8000,
    api_key: Annotated[
        str | None, typer.Option(help="Require 'Authorization: Bearer KEY' ($SAGELLM_OBS_API_KEY).")
    ] = None,
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process/--multiprocess",
            help="vLLM's worker in this process.",
            rich_help_panel=ENGINE_PANEL,
        ),
    ] = True,
    engine_id: Annotated[
        str | None,
        typer.Option(
            help="This replica's sagellm.engine_id ($SAGELLM_ENGINE_ID; default HOST:PORT).",
            envvar="SAGELLM_ENGINE_ID",
        ),
    ] = None,
    data_parallel_size: Annotated[
        int,
        typer.Option(
            "--data-parallel-size",
            "-dp",
            help="vLLM data-parallel ranks: one EngineCore process each, balanced by vLLM; "
            "records carry the rank as sagellm.engine_idx (on CPU the ranks share the cores).",
            rich_help_panel=ENGINE_PANEL,
        ),
    ] = 1,
    vllm_tracing: Annotated[
        bool,
        typer.Option(
            "--vllm-tracing",
            help="Also turn on vLLM's own tracing: its llm_request span of each request joins "
            "ours in the same trace, in the run folder and the collector.",
        ),
    ] = False,
    per_request_metrics: Annotated[
        bool,
        typer.Option(
            "--enable-per-request-metrics",
            help="Every completion carries vLLM's per-request 'metrics' object, as vLLM's own "
            "flag of that name does.",
        ),
    ] = False,
    loop: Annotated[
        str,
        typer.Option(
            help="Event loop of the server and the engine: auto (uvloop when installed, as "
            "vLLM's own server), uvloop or asyncio.",
        ),
    ] = "auto",
    out: Annotated[
        Path | None,
        typer.Option(help="Run folder (default $SAGELLM_OBS_RUN_DIR, else ./sagellm-runs/<id>)."),
    ] = None,
    otlp: Annotated[str | None, typer.Option(help="Also export to this OTLP endpoint.")] = None,
    prefix_caching: PrefixCaching = True,
    max_model_len: MaxModelLen = None,
    max_num_seqs: MaxNumSeqs = None,
    kv_cache_memory: KvCacheMemory = None,
    block_size: BlockSize = None,
    engine_arg: EngineArg = None,
    log_level: LogLevel = None,
    verbose: Verbose = False,
) -> None:
    """Serve the instrumented engine over an OpenAI-compatible HTTP API until SIGTERM/Ctrl-C;
    then print the summary and write the run folder's summary.json and report.html.

    Several replicas: start one per port (--port 8001, --port 8002...), each with its own run
    folder (--out) and/or all exporting to one collector (--otlp); each replica's engine id is
    its HOST:PORT. GET /v1/sagellm/run tells a client on this machine where it records, so
    `run --endpoint` and `report CLIENT_RUN` find the replicas' folders (docs/fleet.md).
    """
    from sagellm_obs import semconv as sc
    from sagellm_obs.server import ServerOptions
    from sagellm_obs.server.serve import DataParallelError, check_data_parallel, loop_runner

    set_log_level(log_level, verbose)
    try:
        check_data_parallel(data_parallel_size)
        loop_runner(loop)
    except (DataParallelError, ValueError) as exc:
        fail(str(exc))
    _check_model(model)
    if vllm_tracing:
        os.environ[sc.ENV_VLLM_TRACING] = "true"  # read by the server's configure()
    engine = {
        "enable_prefix_caching": prefix_caching,
        **engine_options(
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            kv_cache_memory=kv_cache_memory,
            block_size=block_size,
            engine_arg=engine_arg,
        ),
    }
    from sagellm_obs.cli_run import serve_and_summarize

    raise typer.Exit(
        serve_and_summarize(
            console,
            model=model,
            host=host,
            port=port,
            api_key=api_key,
            in_process=in_process,
            engine_id=engine_id,
            data_parallel_size=data_parallel_size,
            options=ServerOptions(per_request_metrics=per_request_metrics, loop=loop),
            run_dir=out,
            otlp_endpoint=otlp,
            **engine,
        )
    )


@app.command()
def watch(
    run_dir: Annotated[
        Path | None, typer.Argument(help="The run folder (it may still be starting).")
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            help="Watch a running 'sagellm-obs serve' on this machine instead (e.g. "
            "http://127.0.0.1:8000): the folder it records to, asked via /v1/sagellm/run."
        ),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Bearer key for --endpoint.", envvar="SAGELLM_OBS_API_KEY")
    ] = None,
    every: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
    window: Annotated[
        float, typer.Option(help="Latencies and the window hit rate cover this many seconds.")
    ] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="Print one picture and exit.")] = False,
) -> None:
    """Watch a run live: KV-cache usage, queue, latency percentiles, hit rate, tokens/s."""
    from sagellm_obs.watch import EndpointError, server_run_dir
    from sagellm_obs.watch import watch as watch_run

    if (run_dir is None) == (endpoint is None):
        fail("give a run folder or --endpoint URL (one of them)", 2)
    try:
        if endpoint is not None:
            run_dir = server_run_dir(endpoint, api_key=api_key or "")
            console.print(f"[dim]{endpoint} records to {run_dir}[/]")
        assert run_dir is not None
        watch_run(run_dir, every=every, window_s=window, console=console, once=once)
    except (FileNotFoundError, EndpointError) as exc:
        fail(str(exc), 1)


@model_app.command("build")
def model_build(
    preset: Annotated[str, typer.Option(help="tiny or small.")] = "tiny",
    out: Annotated[Path | None, typer.Option(help="Folder (default: the user cache).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if present.")] = False,
) -> None:
    """Build (or reuse) a random-weight Llama and its tokenizer, offline."""
    from sagellm_obs.models import PRESETS, build_model, describe

    if preset not in PRESETS:
        fail(f"unknown preset {preset!r}; choose from {', '.join(sorted(PRESETS))}")
    t0 = time.perf_counter()
    with console.status(f"building {preset} model..."):
        path = build_model(PRESETS[preset], out, force=force)
    info = describe(path)
    console.print(f"[green]{path}[/] ({time.perf_counter() - t0:.1f} s)")
    console.print_json(json.dumps(info, default=str))


@model_app.command("info")
def model_info(path: Path) -> None:
    """Describe a model folder."""
    from sagellm_obs.models import describe

    console.print_json(json.dumps(describe(path), default=str))


@protocol_app.command("schema")
def protocol_schema(
    name: Annotated[
        str | None, typer.Argument(help="One type (e.g. Request); all by default.")
    ] = None,
) -> None:
    """Print the JSON Schema of the sageLLM protocol types."""
    from sagellm_obs.protocol import schema_json

    try:
        sys.stdout.write(schema_json(name) + "\n")
    except KeyError as exc:
        fail(str(exc))


def main() -> None:
    """Console-script entry point: usage errors as click prints them, any other error as one
    line (its traceback with ``--verbose``)."""
    try:
        typer.main.get_command(app).main(prog_name="sagellm-obs")
    except Exception as exc:
        if verbose_requested():
            raise
        err.print(
            f"[red]error:[/] {one_line(exc)} [dim](--verbose shows the traceback)[/]",
            highlight=False,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
