"""``sagellm-obs export clickhouse``: the command's body, with a progress bar per table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from sagellm_obs.clickhouse.connect import ClickHouseError
from sagellm_obs.clickhouse.write import export_clickhouse, summary


def export_command(
    run_dir: Path,
    *,
    dsn: str | None,
    chdb: Path | None,
    database: str | None,
    ttl_days: int,
    console: Console,
    typed_columns: bool = True,
) -> int:
    """Export ``run_dir`` to a server (``dsn``) or a chdb folder; the exit code."""
    if (dsn is None) == (chdb is None):
        console.print("[red]give exactly one of --dsn or --chdb[/]")
        return 2
    target = dsn if dsn is not None else f"chdb:{chdb}"
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=total or 1)
            bar.update(tasks[table], completed=done if total else 1)

        try:
            result = export_clickhouse(
                run_dir,
                target,
                database=database,
                ttl_days=ttl_days,
                progress=progress,
                typed_columns=typed_columns,
            )
        except (ClickHouseError, FileNotFoundError, ValueError, ImportError) as exc:
            console.print(f"[red]export failed:[/] {exc}")
            return 1
    console.print(summary(result))
    return 0


def columns_command(
    *,
    dsn: str | None,
    chdb: Path | None,
    database: str | None,
    traces_table: str | None,
    materialize: bool,
    console: Console,
) -> int:
    """Add the typed columns to an existing traces table; the exit code."""
    from sagellm_obs.clickhouse.typed import add_typed_columns

    if (dsn is None) == (chdb is None):
        console.print("[red]give exactly one of --dsn or --chdb[/]")
        return 2
    target = dsn if dsn is not None else f"chdb:{chdb}"
    try:
        added = add_typed_columns(
            target, database=database, traces_table=traces_table, materialize=materialize
        )
    except (ClickHouseError, FileNotFoundError, ImportError) as exc:
        console.print(f"[red]adding the typed columns failed:[/] {exc}")
        return 1
    done = "added" + (" and materialized" if materialize else "")
    console.print(f"{done}: {', '.join(added)}" if added else "the typed columns were all there")
    return 0
