"""``sagellm-obs``: run | report | compare | model | protocol."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

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
console = Console(stderr=False)
err = Console(stderr=True)


def _quiet_vllm() -> None:
    # vLLM logs every start-up step at INFO; the run's own display is what users want to see.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger("vllm").setLevel(logging.WARNING)


def _parse_slo(text: str | None) -> dict[str, float]:
    """``ttft=0.5,tpot=0.05`` -> ``{"ttft_s": 0.5, "tpot_s": 0.05}`` (seconds)."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip().lower().removesuffix("_s")
        if key not in ("ttft", "tpot", "e2e", "queue", "itl") or not value:
            raise typer.BadParameter(f"bad SLO {part!r}: use e.g. ttft=0.5,tpot=0.05 (seconds)")
        try:
            out[f"{key}_s"] = float(value.strip().removesuffix("s"))
        except ValueError:
            raise typer.BadParameter(f"bad SLO value in {part!r}") from None
    return out


@app.command()
def run(
    model: Annotated[str, typer.Option(help="Model folder, or 'tiny' (built offline).")] = "tiny",
    workload: Annotated[
        str, typer.Option(help="Workload name (shared_prefix, chat_sessions, ...) or a JSONL file.")
    ] = "shared_prefix",
    requests: Annotated[int, typer.Option(help="Number of requests.")] = 200,
    duration: Annotated[float | None, typer.Option(help="Stop sending after S seconds.")] = None,
    rate: Annotated[float | None, typer.Option(help="Poisson arrivals at R requests/s.")] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight (closed loop).")] = 8,
    max_tokens: Annotated[int, typer.Option(help="Output tokens per request.")] = 32,
    prefix_caching: Annotated[bool, typer.Option(help="vLLM automatic prefix caching.")] = True,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default ./sagellm-runs/<id>).")
    ] = None,
    otlp: Annotated[str | None, typer.Option(help="Also export to this OTLP endpoint.")] = None,
    slo: Annotated[str | None, typer.Option(help="Goodput SLOs, e.g. ttft=0.5,tpot=0.05")] = None,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 0,
    multiprocess: Annotated[
        bool, typer.Option(help="Run vLLM's worker in its own process (vLLM's default).")
    ] = False,
) -> None:
    """Run a workload through the instrumented engine; print a summary, keep a run folder."""
    slos = _parse_slo(slo)
    from sagellm_obs.workload.main_job import MainJob

    _quiet_vllm()
    job = MainJob(
        model=model,
        workload=workload,
        requests=requests,
        duration=duration,
        rate=rate,
        concurrency=concurrency,
        max_tokens=max_tokens,
        prefix_caching=prefix_caching,
        out=out,
        otlp=otlp,
        slo=slos,
        seed=seed,
        in_process=not multiprocess,
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


@model_app.command("build")
def model_build(
    preset: Annotated[str, typer.Option(help="tiny or small.")] = "tiny",
    out: Annotated[Path | None, typer.Option(help="Folder (default: the user cache).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if present.")] = False,
) -> None:
    """Build (or reuse) a random-weight Llama and its tokenizer, offline."""
    from sagellm_obs.models import PRESETS, build_model, describe

    if preset not in PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
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
        raise typer.BadParameter(str(exc)) from None


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
