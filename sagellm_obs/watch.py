"""``sagellm-obs watch RUN_DIR``: a terminal live view of a run folder while it is written.

A :class:`~sagellm_obs.frames.tail.Tail` reads what the run appended since the last refresh;
:func:`snapshot` turns its window into the numbers shown (pure, tested on their values) and
:func:`render` lays them out with rich: KV-cache usage as a bar, running/waiting, requests done,
latency percentiles over the window, the prefix-cache hit rate (over the window and since the
start) and a sparkline of generated tokens per second. The view ends by itself when the run
closes (keeping the final picture) and on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from sagellm_obs import semconv as sc
from sagellm_obs.frames.tail import Tail

SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 40  # seconds of throughput in the sparkline


@dataclass(frozen=True)
class Snapshot:
    """What the live view shows at one refresh (latencies in seconds, rates as fractions)."""

    run_id: str
    model: str | None
    ended: bool
    requests: int  # requests finished since the start
    errors: int  # of them, failed or cancelled
    window_s: float | None
    window_requests: int
    ttft_p50: float | None
    ttft_p99: float | None
    e2e_p50: float | None
    e2e_p99: float | None
    kv_usage: float | None  # of the newest step
    running: int | None
    waiting: int | None
    preemptions: int  # since the start
    hit_rate_window: float | None
    hit_rate_run: float | None
    tokens_per_s: list[float]  # generated tokens in each of the last seconds, oldest first


def snapshot(tail: Tail) -> Snapshot:
    """The numbers of the live view, from the tail's window and running totals."""
    frames = tail.frames
    req, steps, totals = frames.requests, frames.steps, tail.totals
    ok = req.filter(pl.col("error_type").is_null() & ~pl.col("cancelled").fill_null(False))

    def q(column: str, p: float) -> float | None:
        values = ok[column].drop_nulls()
        return float(values.quantile(p, "linear")) if values.len() else None  # type: ignore[arg-type]

    last = steps.row(-1, named=True) if steps.height else {}
    queries = int(steps["prefix_queries"].sum() or 0) if steps.height else 0
    hits = int(steps["prefix_hits"].sum() or 0) if steps.height else 0
    run_id = tail.manifest.get("run_id")
    return Snapshot(
        run_id=str(run_id) if run_id is not None else tail.path.name,
        model=tail.manifest.get("model"),
        ended=tail.ended,
        requests=totals["requests"],
        errors=totals["errors"],
        window_s=tail.window_s,
        window_requests=req.height,
        ttft_p50=q("ttft_s", 0.5),
        ttft_p99=q("ttft_s", 0.99),
        e2e_p50=q("e2e_s", 0.5),
        e2e_p99=q("e2e_s", 0.99),
        kv_usage=last.get("kv_cache_usage"),
        running=last.get("running"),
        waiting=last.get("waiting"),
        preemptions=totals["preemptions"],
        hit_rate_window=hits / queries if queries else None,
        hit_rate_run=(
            totals["prefix_hits"] / totals["prefix_queries"] if totals["prefix_queries"] else None
        ),
        tokens_per_s=_tokens_per_second(steps),
    )


class EndpointError(RuntimeError):
    """A server's run folder cannot be watched from here (the message says why and what to do)."""


API_KEY_ENV = "SAGELLM_OBS_API_KEY"
"""Where the bearer key comes from when none is given (as for ``run --endpoint``)."""


def is_url(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` names a server (``http://``/``https://``) rather than a run folder."""
    return isinstance(target, str) and target.startswith(("http://", "https://"))


def server_run_dir(url: str, *, api_key: str | None = None, timeout: float = 5.0) -> Path:
    """The run folder a ``sagellm-obs serve`` at ``url`` records to (asked once; bounded by
    ``timeout`` seconds).

    Args:
        url: The server's base URL, e.g. ``http://127.0.0.1:8000``.
        api_key: Its bearer key; default ``$SAGELLM_OBS_API_KEY``.
        timeout: Seconds for connecting and for the answer.

    Raises:
        EndpointError: The server does not answer, refuses the key, is not ``sagellm-obs serve``,
            keeps no run folder, or its folder is not on this machine.
    """
    from sagellm_obs.workload.replica_info import ask_replicas

    base = url.rstrip("/")
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    # On a thread of its own: a notebook's kernel already runs an event loop on this one.
    with ThreadPoolExecutor(1) as pool:
        (entry,) = pool.submit(
            asyncio.run, ask_replicas([base], api_key=key, timeout=timeout)
        ).result()
    problem = entry.get("problem")
    give_path = "pass the run folder's path instead (serve --out DIR, or the folder it prints)"
    if problem is None:
        path = Path(str(entry["run_dir"]))
        if not path.is_dir():
            raise EndpointError(
                f"{base} records to {path}, which is not a folder on this machine; {give_path}"
            )
        return path
    if "HTTP 401" in problem or "HTTP 403" in problem:
        raise EndpointError(
            f"{base} refused the key ({problem}): pass --api-key KEY or set ${API_KEY_ENV}"
        )
    if "HTTP " in problem or "JSON" in problem:
        raise EndpointError(
            f"{base} is not a sagellm-obs serve ({problem}): the live views read a run folder, "
            f"not /metrics; {give_path}"
        )
    if problem.startswith(sc.RUN_INFO_ROUTE):  # the request itself failed
        raise EndpointError(f"no server answers at {base} within {timeout:g} s ({problem})")
    if entry.get("run_id") is None:
        raise EndpointError(
            f"{base} keeps no run folder (its store is off), so there is nothing to watch; "
            "restart it with a store (serve --out DIR)"
        )
    raise EndpointError(
        f"{base}: {problem}; the live views watch a server on this machine only; {give_path}"
    )


def _tokens_per_second(steps: pl.DataFrame) -> list[float]:
    """Generated tokens in each wall-clock second of the newest :data:`SPARK_WIDTH` seconds
    (from the first step's second on: no zeros before the run began)."""
    if steps.height == 0:
        return []
    per_s = steps.group_by(pl.col("time").dt.truncate("1s")).agg(pl.col("generation_tokens").sum())
    first, newest = per_s["time"].min(), per_s["time"].max()
    assert isinstance(first, datetime) and isinstance(newest, datetime)
    start = max(first, newest - timedelta(seconds=SPARK_WIDTH - 1))
    seconds = pl.datetime_range(
        start, newest, "1s", eager=True, time_unit="ns", time_zone="UTC"
    ).alias("time")
    filled = pl.DataFrame(seconds).join(per_s, on="time", how="left").sort("time")
    return [float(v or 0) for v in filled["generation_tokens"]]


def sparkline(values: list[float]) -> str:
    """``values`` as block characters scaled to their maximum (an empty string for none)."""
    top = max(values, default=0.0)
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)))] for v in values)


def _ms(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value * 1000:,.1f} ms"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def render(s: Snapshot) -> Panel:
    """The live view of one snapshot."""
    state = "[green]ended[/]" if s.ended else "[yellow]running[/]"
    title = f"sagellm-obs watch · {s.run_id}" + (f" · {s.model}" if s.model else "")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    kv = Table.grid(padding=(0, 1))
    kv.add_row(
        ProgressBar(total=1.0, completed=s.kv_usage or 0.0, width=30),
        Text(_pct(s.kv_usage)),
        Text(f"running {s.running if s.running is not None else '–'}"),
        Text(f"waiting {s.waiting if s.waiting is not None else '–'}"),
        Text(f"preemptions {s.preemptions:,}"),
    )
    grid.add_row("KV cache", kv)
    grid.add_row("requests", f"{s.requests:,} finished, {s.errors:,} failed or cancelled")
    window = "all" if s.window_s is None else f"last {s.window_s:g} s"
    grid.add_row(
        f"latency ({window})",
        f"TTFT p50 {_ms(s.ttft_p50)}  p99 {_ms(s.ttft_p99)}   "
        f"E2E p50 {_ms(s.e2e_p50)}  p99 {_ms(s.e2e_p99)}   ({s.window_requests:,} requests)",
    )
    grid.add_row(
        "prefix hit rate", f"{_pct(s.hit_rate_window)} ({window}), {_pct(s.hit_rate_run)} (run)"
    )
    now = s.tokens_per_s[-1] if s.tokens_per_s else None
    grid.add_row(
        "tokens/s",
        Text(sparkline(s.tokens_per_s), style="cyan")
        + Text(f"  {now:,.0f} tok/s" if now is not None else "  –"),
    )
    return Panel(Group(grid), title=title, subtitle=state, expand=False)


def watch(
    run_dir: str | os.PathLike[str],
    *,
    every: float = 1.0,
    window_s: float | None = 60.0,
    console: Console | None = None,
    wait_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    once: bool = False,
) -> Snapshot:
    """Show the live view until the run ends (or Ctrl-C); returns the last snapshot.

    Args:
        run_dir: The run folder; it may not exist yet (waits up to ``wait_s`` for it).
        every: Seconds between refreshes.
        window_s: Latencies and the window hit rate cover this many seconds.
        console: Where to draw (default: the terminal).
        wait_s: How long to wait for the folder to appear.
        clock: Monotonic clock (a test seam).
        once: Print one picture and return (scripts, a glance at a server).
    """
    console = console or Console()
    path = Path(run_dir)
    deadline = clock() + wait_s
    while not path.is_dir():
        if clock() > deadline:
            raise FileNotFoundError(f"no such run folder: {path}")
        time.sleep(min(every, 0.5))
    tail = Tail(path, window_s=window_s)
    tail.poll()
    shot = snapshot(tail)
    if once:
        console.print(render(shot))
        return shot
    try:
        with Live(render(shot), console=console, auto_refresh=False) as live:
            while not shot.ended:
                time.sleep(every)
                tail.poll()
                shot = snapshot(tail)
                live.update(render(shot), refresh=True)
    except KeyboardInterrupt:
        console.print("[dim]stopped watching (the run goes on)[/]")
    return shot


def as_dict(s: Snapshot) -> dict[str, Any]:
    """The snapshot as plain values (for ``--json``)."""
    return dict(s.__dict__)
