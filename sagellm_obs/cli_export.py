"""``sagellm-obs export``: a run in other tools' formats (Perfetto, ClickHouse)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sagellm_obs.cli_options import fail

export_app = typer.Typer(help="A run in other tools' formats.", no_args_is_help=True)
console = Console(stderr=False)


@export_app.command("perfetto")
def export_perfetto(
    run_dir: Annotated[Path, typer.Argument(help="The run folder.")],
    out: Annotated[Path, typer.Option(help="The trace file to write.")] = Path("trace.json"),
) -> None:
    """A timeline for ui.perfetto.dev or chrome://tracing: requests, phases, KV and queue."""
    from sagellm_obs.export.perfetto import write_perfetto
    from sagellm_obs.frames import load

    if not run_dir.exists():
        fail(f"no such run folder: {run_dir}", 1)
    frames = load(run_dir, errors="skip")
    path = write_perfetto(frames, out)
    console.print(
        f"{path}: {frames.requests.height:,} requests, {frames.steps.height:,} engine steps; "
        "open it in ui.perfetto.dev (Open trace file) or chrome://tracing"
    )


@export_app.command("clickhouse")
def export_clickhouse(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    dsn: Annotated[str | None, typer.Option(help="clickhouse://user:pass@host:8123/db")] = None,
    chdb: Annotated[Path | None, typer.Option(help="A chdb database folder (embedded).")] = None,
    database: Annotated[str | None, typer.Option(help="Database (default: the DSN's).")] = None,
    ttl_days: Annotated[int, typer.Option(help="TTL of tables this creates (0: none).")] = 0,
    typed_columns: Annotated[
        bool, typer.Option(help="Add the optional typed columns (docs/clickhouse.md).")
    ] = True,
) -> None:
    """Insert a run into the OpenTelemetry Collector ClickHouse exporter's tables (idempotent)."""
    from sagellm_obs.clickhouse.cli import export_command

    raise typer.Exit(
        export_command(
            run_dir,
            dsn=dsn,
            chdb=chdb,
            database=database,
            ttl_days=ttl_days,
            console=console,
            typed_columns=typed_columns,
        )
    )


@export_app.command("clickhouse-columns")
def export_clickhouse_columns(
    dsn: Annotated[str | None, typer.Option(help="clickhouse://user:pass@host:8123/db")] = None,
    chdb: Annotated[Path | None, typer.Option(help="A chdb database folder (embedded).")] = None,
    database: Annotated[str | None, typer.Option(help="Database (default: the DSN's).")] = None,
    traces_table: Annotated[str | None, typer.Option(help="Default: otel_traces.")] = None,
    materialize: Annotated[
        bool, typer.Option(help="Compute them for the rows already there (a mutation).")
    ] = True,
) -> None:
    """Add typed columns for the attributes the summaries read to a collector's traces table."""
    from sagellm_obs.clickhouse.cli import columns_command

    raise typer.Exit(
        columns_command(
            dsn=dsn,
            chdb=chdb,
            database=database,
            traces_table=traces_table,
            materialize=materialize,
            console=console,
        )
    )
