"""One telemetry file → its rows of the frames: what a file is, and building its rows.

Every loader path goes through :func:`build_file`, one file at a time: the columnar copies of a
run folder (:mod:`~sagellm_obs.frames.columnar`) hold exactly what it returns, and a folder of
foreign files (a collector's export) is built from it too, so the two paths cannot drift apart.

A file's rows, by the name of the frame they belong to:

* an OTLP/JSON file → ``spans`` (sorted by start time) and ``metrics`` (one row per data point);
* a steps file → ``steps`` (sorted by time);
* a client-timing file → ``client`` (the raw :data:`~sagellm_obs.frames.wire.CLIENT_LINE` rows,
  joined to requests once every file is read);
* a kv-events file → ``kv_events`` (one row per line, sorted by time; ``Frames.kv_events``, not
  one of :meth:`~sagellm_obs.frames.Frames.frames`).

``source_file`` names the file relative to the loaded folder, ``source_line`` is 1-based.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from sagellm_obs import semconv as sc
from sagellm_obs.frames import wire
from sagellm_obs.frames.lines import LINE, Check, read_lines
from sagellm_obs.frames.metrics import build_metrics
from sagellm_obs.frames.schemas import KV_EVENTS, METRICS, SPANS, STEPS, TIME, conform
from sagellm_obs.frames.spans import build_spans
from sagellm_obs.store import layout
from sagellm_obs.store.reader import Errors, ReadReport, StoreFormatError

OTLP, STEPS_KIND, CLIENT, KV_EVENTS_KIND = "otlp", "steps", "requests-client", "kv-events"
"""How a file's lines are read: OTLP/JSON export requests, step records, client timings, KV
cache events."""

FRAMES_OF: Mapping[str, tuple[str, ...]] = {
    OTLP: ("spans", "metrics"),
    STEPS_KIND: ("steps",),
    CLIENT: ("client",),
    KV_EVENTS_KIND: ("kv_events",),
}
"""The frames a file of each kind contributes rows to."""

CLIENT_ROWS = pl.Schema(
    [*wire.CLIENT_LINE.items(), (LINE, pl.Int64()), ("source_file", pl.String())]
)
"""The schema of a client-timing file's rows."""

FILE_SCHEMAS: Mapping[str, pl.Schema] = {
    "spans": SPANS,
    "metrics": METRICS,
    "steps": STEPS,
    "client": CLIENT_ROWS,
    "kv_events": KV_EVENTS,
}

_SNIFF_BYTES = 4096


def classify(path: Path) -> str:
    """How ``path`` is read: by its run-folder name, else by its first line."""
    kind = layout.kind_of(path.name)
    if kind in layout.OTLP_KINDS:
        return OTLP
    if kind is not None:
        return kind
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES).lstrip()
    if head.startswith(b'{"resource'):
        return OTLP
    first = head.split(b"\n", 1)[0]
    if b'"' + sc.STEP_TIME_UNIX_NANO.encode() + b'"' in first and b'"step"' in first:
        return STEPS_KIND
    if b'"request_id"' in first and b'"client_' in first:
        return CLIENT
    if first.startswith(b'{"event"') and b'"kv_handle"' in first:
        return KV_EVENTS_KIND
    return OTLP


def discover(directory: Path) -> list[tuple[Path, str]]:
    """The telemetry files at the top of ``directory`` with their kinds, in name order.

    In a run folder only its data files count (summary.json, notes... are not telemetry); in
    any other folder every ``*.json``/``*.jsonl`` file does.
    """
    run_folder = layout.is_run_folder(directory)
    files = sorted(
        p
        for p in directory.iterdir()
        if p.is_file()
        and p.suffix in (".json", ".jsonl")
        and p.name != layout.MANIFEST
        and not p.name.startswith(".")
        and (not run_folder or layout.kind_of(p.name) is not None)
    )
    return [(p, classify(p)) for p in files]


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (its name when it is elsewhere)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def build_file(
    path: Path,
    kind: str,
    root: Path,
    *,
    run_id: str | None,
    errors: Errors,
    data: bytes | None = None,
    first_line: int = 1,
) -> tuple[dict[str, pl.DataFrame], ReadReport]:
    """The rows one file contributes to each frame of :data:`FRAMES_OF` ``[kind]``.

    Args:
        path: The file.
        kind: :data:`OTLP`, :data:`STEPS_KIND` or :data:`CLIENT` (see :func:`classify`).
        root: The loaded folder; ``source_file`` is relative to it.
        run_id: The run's id for the ``steps`` rows (step records do not carry it).
        errors: ``"raise"`` a :class:`~sagellm_obs.store.StoreFormatError` naming file and line
            on a malformed record, or ``"skip"`` it (recorded in the returned report).
        data: Part of the file already read (whole lines), numbered from ``first_line``;
            default the whole file.

    Returns:
        The frames by name, each matching :data:`FILE_SCHEMAS`, and what was skipped.
    """
    report = ReadReport()
    name = relative(path, root)
    if kind == OTLP:
        return _otlp(path, name, errors, report, data, first_line), report
    if kind == STEPS_KIND:
        lines = read_lines(
            path,
            wire.STEP_LINE,
            errors=errors,
            report=report,
            check=_flat_check(STEPS_KIND),
            suspect=pl.col(sc.STEP_TIME_UNIX_NANO).is_null(),
            data=data,
            first_line=first_line,
        )
        return {"steps": build_steps(lines, run_id)}, report
    if kind == KV_EVENTS_KIND:
        lines = read_lines(
            path,
            wire.KV_EVENT_LINE,
            errors=errors,
            report=report,
            check=_flat_check(KV_EVENTS_KIND),
            suspect=pl.col("event").is_null() | pl.col("metadata").is_null(),
            data=data,
            first_line=first_line,
        )
        return {"kv_events": build_kv_events(lines, name, run_id)}, report
    lines = read_lines(
        path,
        wire.CLIENT_LINE,
        errors=errors,
        report=report,
        check=_flat_check(CLIENT),
        suspect=pl.col("request_id").is_null(),
        data=data,
        first_line=first_line,
    )
    return {"client": lines.with_columns(pl.lit(name).alias("source_file"))}, report


def _otlp(
    path: Path, name: str, errors: Errors, report: ReadReport, data: bytes | None, first_line: int
) -> dict[str, pl.DataFrame]:
    def on_bad(file: str, line: int, message: str) -> None:
        if errors == "raise":
            raise StoreFormatError(path, line, message)
        report.add(path, line, message)

    lines = read_lines(
        path,
        wire.OTLP_LINE,
        errors=errors,
        report=report,
        check=wire.check_otlp_object,
        suspect=pl.col("resourceSpans").is_null() & pl.col("resourceMetrics").is_null(),
        data=data,
        first_line=first_line,
    ).with_columns(pl.lit(name).alias("source_file"))
    spans = build_spans(lines, on_bad).sort("start", maintain_order=True)
    metric_lines = lines.filter(pl.col("resourceMetrics").list.len() > 0)
    return {"spans": spans, "metrics": build_metrics(metric_lines)}


def build_steps(lines: pl.DataFrame, run_id: str | None = None) -> pl.DataFrame:
    """The ``steps`` frame of decoded step lines, sorted by time."""
    queries, hits = pl.col(sc.STEP_PREFIX_QUERIES), pl.col(sc.STEP_PREFIX_HITS)
    out = lines.with_columns(
        pl.col(sc.STEP_TIME_UNIX_NANO).cast(TIME).alias("time"),
        pl.lit(run_id, dtype=pl.String).alias("run_id"),
        pl.col(sc.STEP_ENGINE_IDX).fill_null(0),  # records before engine_idx: one engine
        pl.when(queries > 0).then(hits / queries).alias("prefix_hit_rate"),
    ).sort("time", maintain_order=True)
    return conform(out, STEPS)


def build_kv_events(lines: pl.DataFrame, source_file: str, run_id: str | None) -> pl.DataFrame:
    """The ``kv_events`` frame of decoded kv-events lines, sorted by time."""
    meta, handle = pl.col("metadata").struct, pl.col("kv_handle").struct
    out = lines.select(
        meta.field(sc.KV_TIME_UNIX_NANO).cast(TIME).alias("time"),
        meta.field(sc.KV_ENGINE_ID).alias("engine_id"),
        meta.field(sc.KV_ENGINE_IDX).fill_null(0).alias("engine_idx"),
        pl.lit(run_id, dtype=pl.String).alias("run_id"),
        pl.col("event"),
        meta.field(sc.KV_KIND).alias("kind"),
        pl.when(pl.col("request_id") != "").then(pl.col("request_id")).alias("request_id"),
        meta.field(sc.KV_BLOCK_HASH).alias("block_hash"),
        meta.field(sc.KV_PARENT_BLOCK_HASH).alias("parent_block_hash"),
        meta.field(sc.KV_PREFIX_HASH).alias("prefix_hash"),
        meta.field(sc.KV_BLOCK_SIZE).alias("block_size"),
        handle.field("num_tokens").fill_null(0).alias("num_tokens"),
        pl.col("evict_reason"),
        meta.field(sc.KV_MEDIUM).alias("medium"),
        meta.field(sc.KV_GROUP_IDX).alias("group_idx"),
        meta.field(sc.KV_BATCH_SEQ).alias("batch_seq"),
        pl.lit(source_file).alias("source_file"),
        pl.col(LINE).alias("source_line"),
    ).sort("time", maintain_order=True)
    return conform(out, KV_EVENTS)


def _flat_check(kind: str) -> Check:
    required = wire.required_keys(kind)

    def check(obj: Any) -> None:
        missing = [key for key in required if obj.get(key) is None]
        if missing:
            raise wire.ShapeError(f"not a {kind} record: missing {', '.join(missing)}")

    return check
