"""The explorer's data side: runs, filters and the tables of one request, in Polars only.

Nothing here imports ipywidgets or Altair, so the filtering and the request tables can be used
(and tested) on their own. Times in filters are seconds since the start of the run: the earliest
request arrival or engine step, whichever comes first.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from sagellm_obs.frames import Frames, load
from sagellm_obs.frames.load import expand_sources
from sagellm_obs.store.layout import MANIFEST

__all__ = [
    "SORT_COLUMNS",
    "Filters",
    "RunData",
    "RunInput",
    "RunsInput",
    "html_table",
    "normalize_runs",
    "request_attributes",
    "request_spans",
    "slowest",
]

RunInput = Frames | str | os.PathLike[str]
"""One run: its frames, or a run folder (any source :func:`sagellm_obs.frames.load` reads)."""

RunsInput = RunInput | Mapping[str, RunInput] | Sequence[RunInput]
"""One run, runs by name, or a list of runs (named after their folders)."""

SORT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("slowest E2E", "e2e_s"),
    ("slowest TTFT", "ttft_s"),
    ("longest queue", "queue_s"),
    ("longest prefill", "prefill_s"),
    ("longest decode", "decode_s"),
)
"""``(label, requests column)`` orders the request list can take (slowest first)."""


@dataclass(frozen=True)
class Filters:
    """What the explorer shows of a run. None means "no limit" / "all".

    Attributes:
        model: Only requests of this model.
        engine: Only requests and steps of this engine id.
        start_s: Earliest arrival (and step time), seconds since the run start.
        end_s: Latest arrival (and step time), seconds since the run start.
        ttft_max_ms: Only requests with a TTFT at or below this.
        e2e_max_ms: Only requests with an E2E latency at or below this.
    """

    model: str | None = None
    engine: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    ttft_max_ms: float | None = None
    e2e_max_ms: float | None = None


def _offset_s(column: str, t0: datetime) -> pl.Expr:
    return (pl.col(column) - pl.lit(t0)).dt.total_microseconds().cast(pl.Float64) / 1e6


@dataclass
class RunData:
    """One loaded run and the facts the pickers and sliders need.

    Attributes:
        name: The run's name in the run picker.
        frames: Its frames.
        t0: Start of the run (first arrival or step), None when it has neither.
        duration_s: Seconds from ``t0`` to the last request end or step.
        models: Models of its requests, sorted.
        engines: Engine ids of its requests and steps, sorted.
        max_ttft_ms: Largest TTFT (0 without requests).
        max_e2e_ms: Largest E2E latency (0 without requests).
        fleet: More than one engine (``engine_id``/``engine_idx``) served it: the explorer
            shows its "Engines" tab (see :mod:`sagellm_obs.frames.fleet`).
    """

    name: str
    frames: Frames
    t0: datetime | None = None
    duration_s: float = 0.0
    models: list[str] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)
    max_ttft_ms: float = 0.0
    max_e2e_ms: float = 0.0
    fleet: bool = False

    @classmethod
    def of(cls, name: str, frames: Frames) -> RunData:
        """Reads the time span, models, engines and latency ranges of ``frames``."""
        req, steps = frames.requests, frames.steps
        starts = [req["arrival"].min(), steps["time"].min() if steps.height else None]
        times = [t for t in starts if isinstance(t, datetime)]
        out = cls(name=name, frames=frames)
        if times:
            t0 = min(times)
            ends: list[float] = []
            if req.height:
                end = req.select(
                    (_offset_s("arrival", t0) + pl.col("e2e_s").fill_null(0.0).fill_nan(0.0)).max()
                ).item()
                ends.append(float(end or 0.0))
            if steps.height:
                ends.append(float(steps.select(_offset_s("time", t0).max()).item() or 0.0))
            out.t0 = t0
            out.duration_s = max([0.0, *ends])
        out.models = sorted({m for m in req["model"].to_list() if m})
        engines = set(req["engine_id"].to_list()) | set(steps["engine_id"].to_list())
        out.engines = sorted(e for e in engines if e)
        out.max_ttft_ms = _max_ms(req, "ttft_s")
        out.max_e2e_ms = _max_ms(req, "e2e_s")
        from sagellm_obs.frames.fleet import is_fleet

        out.fleet = is_fleet(req, steps)
        return out

    def requests(self, filters: Filters) -> pl.DataFrame:
        """The requests that pass ``filters``, by arrival, with an ``offset_s`` column added."""
        req = self.frames.requests
        if self.t0 is None or req.height == 0:
            return req.with_columns(pl.lit(None, pl.Float64).alias("offset_s")).clear()
        cond = pl.lit(True)
        if filters.model is not None:
            cond &= pl.col("model") == filters.model
        if filters.engine is not None:
            cond &= pl.col("engine_id") == filters.engine
        offset = _offset_s("arrival", self.t0)
        if filters.start_s is not None:
            cond &= offset >= filters.start_s
        if filters.end_s is not None:
            cond &= offset <= filters.end_s
        if filters.ttft_max_ms is not None:
            cond &= (pl.col("ttft_s") * 1000.0) <= filters.ttft_max_ms
        if filters.e2e_max_ms is not None:
            cond &= (pl.col("e2e_s") * 1000.0) <= filters.e2e_max_ms
        return (
            req.filter(cond.fill_null(False))
            .with_columns(offset.alias("offset_s"))
            .sort("arrival", maintain_order=True)
        )

    def steps(self, filters: Filters) -> pl.DataFrame:
        """The engine steps inside the time window (and of the engine) of ``filters``."""
        steps = self.frames.steps
        if self.t0 is None or steps.height == 0:
            return steps
        cond = pl.lit(True)
        if filters.engine is not None:
            cond &= pl.col("engine_id") == filters.engine
        offset = _offset_s("time", self.t0)
        if filters.start_s is not None:
            cond &= offset >= filters.start_s
        if filters.end_s is not None:
            cond &= offset <= filters.end_s
        return steps.filter(cond.fill_null(False))


def _max_ms(frame: pl.DataFrame, column: str) -> float:
    values = frame[column].drop_nulls().drop_nans()
    top = values.max() if values.len() else None
    return float(top) * 1000.0 if isinstance(top, (int, float)) and math.isfinite(top) else 0.0


def _run_folders(directory: Path) -> list[Path]:
    """Run folders inside ``directory`` (newest name last), when it is not a run itself."""
    if (directory / MANIFEST).is_file() or not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if (p / MANIFEST).is_file())


def _name_of(run: RunInput, index: int) -> str:
    if isinstance(run, Frames):
        run_id = run.manifest.get("run_id")
        if run_id:
            return str(run_id)
        if run.source is not None:
            return run.source.name
        return f"run {index + 1}"
    return Path(run).name or f"run {index + 1}"


def normalize_runs(runs: RunsInput) -> dict[str, RunInput]:
    """Runs by unique name, in the order given.

    A single folder that holds run folders (e.g. ``sagellm-runs/``) stands for all of them.

    Raises:
        ValueError: No run was given.
        FileNotFoundError: A path does not exist.
    """
    if isinstance(runs, Mapping):
        named: list[tuple[str, RunInput]] = [(str(k), v) for k, v in runs.items()]
    else:
        items: Iterable[RunInput]
        if isinstance(runs, Frames):
            items = [runs]
        elif isinstance(runs, (str, os.PathLike)):
            # A glob ("sagellm-runs/2026*") stands for its matches.
            paths = expand_sources(runs)
            folders = _run_folders(paths[0]) if len(paths) == 1 else []
            items = folders or list(paths)
        else:
            items = runs
        named = [(_name_of(r, i), r) for i, r in enumerate(items)]
    out: dict[str, RunInput] = {}
    for name, run in named:
        if not isinstance(run, Frames) and not Path(run).exists():
            raise FileNotFoundError(f"no such run folder or file: {run}")
        unique, k = name, 2
        while unique in out:
            unique, k = f"{name} ({k})", k + 1
        out[unique] = run
    if not out:
        raise ValueError("explore() needs at least one run (a run folder or loaded Frames)")
    return out


def load_run(name: str, run: RunInput) -> RunData:
    """Loads (when needed) and describes one run; malformed lines are skipped."""
    frames = run if isinstance(run, Frames) else load(run, errors="skip")
    return RunData.of(name, frames)


def slowest(requests: pl.DataFrame, by: str = "e2e_s", n: int = 100) -> pl.DataFrame:
    """The ``n`` requests with the largest ``by`` (nulls last), slowest first."""
    if by not in requests.columns:
        raise ValueError(f"unknown sort column {by!r}")
    return requests.sort(by, descending=True, nulls_last=True).head(max(n, 0))


_SPAN_DETAILS = (
    ("input_tokens", "in {} tok"),
    ("cached_tokens", "cached {} tok"),
    ("output_tokens", "out {} tok"),
    ("finish_reason", "finish {}"),
    ("error_type", "error {}"),
)


def request_spans(spans: pl.DataFrame, request: Mapping[str, Any]) -> pl.DataFrame:
    """The spans of a request's trace: name, kind, start after arrival, duration, key attributes.

    Args:
        spans: The run's ``spans`` frame.
        request: One row of the ``requests`` frame (``trace_id``, ``span_id``, ``arrival``).

    Returns:
        Columns ``name``, ``kind``, ``start_ms`` (after the request's arrival), ``duration_ms``,
        ``status``, ``details`` and ``is_request`` (the request's own span), by start time.
    """
    trace = spans.filter(pl.col("trace_id") == request.get("trace_id"))
    arrival = request.get("arrival")
    start_ms = (
        (pl.col("start") - pl.lit(arrival)).dt.total_microseconds().cast(pl.Float64) / 1000.0
        if isinstance(arrival, datetime)
        else pl.lit(None, pl.Float64)
    )
    parts = [
        pl.when(pl.col(col).is_not_null()).then(pl.format(fmt, pl.col(col)))
        for col, fmt in _SPAN_DETAILS
    ]
    return trace.sort("start", maintain_order=True).select(
        "name",
        "kind",
        start_ms.alias("start_ms"),
        (pl.col("duration_s") * 1000.0).alias("duration_ms"),
        pl.col("status_code").alias("status"),
        pl.concat_str(parts, separator=", ", ignore_nulls=True).alias("details"),
        (pl.col("span_id") == request.get("span_id")).fill_null(False).alias("is_request"),
    )


# Typed request columns shown first in the attribute table, with their units.
_REQUEST_FIELDS = (
    ("request_id", "request id", ""),
    ("protocol_trace_id", "protocol trace id", ""),
    ("trace_id", "trace id", ""),
    ("model", "model", ""),
    ("engine_id", "engine", ""),
    ("operation", "operation", ""),
    ("source", "recorded by", ""),
    ("arrival", "arrival", ""),
    ("ttft_s", "TTFT", "ms"),
    ("client_ttft_s", "client TTFT", "ms"),
    ("frontend_s", "frontend (TTFT - queue - prefill)", "ms"),
    ("queue_s", "queue", "ms"),
    ("prefill_s", "prefill", "ms"),
    ("decode_s", "decode", "ms"),
    ("tpot_s", "TPOT", "ms"),
    ("e2e_s", "E2E", "ms"),
    ("client_e2e_s", "client E2E", "ms"),
    ("input_tokens", "prompt tokens", ""),
    ("cached_tokens", "cached prompt tokens", ""),
    ("cached_prompt_share", "cached share of the prompt", "%"),
    ("output_tokens", "output tokens", ""),
    ("finish_reason", "finish reason", ""),
    ("error_type", "error", ""),
    ("stream", "streamed", ""),
    ("cancelled", "cancelled", ""),
)


def _show(value: Any, unit: str) -> str:
    if unit == "ms" and isinstance(value, (int, float)):
        return f"{value * 1000.0:,.2f} ms"
    if unit == "%" and isinstance(value, (int, float)):
        return f"{value:.1%}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def request_attributes(spans: pl.DataFrame, request: Mapping[str, Any]) -> pl.DataFrame:
    """Key/value table of one request: its typed columns, then its span's other attributes.

    Args:
        spans: The run's ``spans`` frame.
        request: One row of the ``requests`` frame.

    Returns:
        Columns ``key`` and ``value`` (text); null values are left out.
    """
    rows = [
        (label, _show(request[col], unit))
        for col, label, unit in _REQUEST_FIELDS
        if request.get(col) is not None
    ]
    own = spans.filter(
        (pl.col("trace_id") == request.get("trace_id"))
        & (pl.col("span_id") == request.get("span_id"))
    )
    if own.height:
        attrs: list[dict[str, Any]] = own["attributes"].to_list()[0] or []
        extra = sorted((str(a["key"]), str(a["value"])) for a in attrs)
        rows.extend(extra)
    return pl.DataFrame(rows, schema={"key": pl.String, "value": pl.String}, orient="row")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}" if math.isfinite(value) else ""
    return html.escape(_show(value, ""))


def html_table(
    frame: pl.DataFrame,
    *,
    caption: str = "",
    headers: Mapping[str, str] | None = None,
    highlight: str | None = None,
    max_rows: int = 60,
) -> str:
    """A small escaped HTML table of ``frame`` (at most ``max_rows`` rows).

    Args:
        frame: The rows.
        caption: Table caption.
        headers: Column titles by column name (default: the names).
        highlight: A boolean column whose true rows are shown in bold (not shown itself).
        max_rows: Most rows shown; a last line says how many were left out.
    """
    headers = headers or {}
    columns = [c for c in frame.columns if c != highlight]
    head = "".join(
        f'<th style="text-align:left;padding:2px 8px">{html.escape(headers.get(c, c))}</th>'
        for c in columns
    )
    body = []
    for row in frame.head(max_rows).iter_rows(named=True):
        style = "padding:2px 8px;vertical-align:top"
        if highlight is not None and row.get(highlight):
            style += ";font-weight:600"
        cells = "".join(f'<td style="{style}">{_cell(row[c])}</td>' for c in columns)
        body.append(f"<tr>{cells}</tr>")
    if frame.height > max_rows:
        more = frame.height - max_rows
        body.append(f'<tr><td colspan="{len(columns)}">… {more:,} more rows</td></tr>')
    cap = (
        f'<caption style="text-align:left;font-weight:600;padding:4px 0">'
        f"{html.escape(caption)}</caption>"
        if caption
        else ""
    )
    style = "border-collapse:collapse;font-size:12px;line-height:1.35"
    return (
        f'<table class="sagellm-explore-table" style="{style}">'
        f"{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
