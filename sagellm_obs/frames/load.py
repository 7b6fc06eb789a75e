"""``load()``: a run folder, a JSON-lines file, a collector's output or a Parquet dir → frames.

Sources:

* a run folder (``manifest.json``, ``traces-*.jsonl``, ``metrics-*.jsonl``, ``steps-*.jsonl``,
  ``requests-client-*.jsonl``);
* a directory of OTLP/JSON files with any names (``*.json``/``*.jsonl``), e.g. what an
  OpenTelemetry Collector's file exporter writes: trace and metric lines may share a file;
* a single such file;
* a Parquet directory: one written by :meth:`Frames.save` (``spans.parquet``...) or a cache
  directory (``<run>/.cache``).

In a directory, only the top-level files are read. ``steps-*`` and ``requests-client-*`` files
are flat records (see :mod:`~sagellm_obs.frames.wire` for the client-timing line format); any
other file is OTLP/JSON unless its first line looks like a step or client record. The same span
loaded twice (e.g. a run folder that also holds a collector's copy) appears twice.
``source_file`` columns name files relative to the loaded directory, ``source_line`` is 1-based.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from sagellm_obs import semconv as sc
from sagellm_obs.frames import cache as cache_mod
from sagellm_obs.frames import wire
from sagellm_obs.frames.lines import LINE, TORN, Check, read_lines
from sagellm_obs.frames.metrics import build_metrics
from sagellm_obs.frames.schemas import (
    METRICS,
    REQUESTS,
    SCHEMAS,
    SPANS,
    STEPS,
    TIME,
    check_schema,
    conform,
)
from sagellm_obs.frames.spans import build_requests, build_spans
from sagellm_obs.store.reader import Errors, ReadReport, StoreFormatError
from sagellm_obs.store.run import MANIFEST

Source = str | os.PathLike[str]

OTLP, STEPS_KIND, CLIENT = "otlp", "steps", "requests-client"
_SNIFF_BYTES = 4096


@dataclass
class Frames:
    """The frames of one source. See :mod:`sagellm_obs.frames.schemas` for their columns.

    Attributes:
        spans: One row per span.
        requests: One row per request span, with client timings when recorded.
        steps: One row per engine step.
        metrics: One row per metric data point (long format).
        manifest: The run's ``manifest.json`` (empty when there is none).
        report: What was skipped: torn last lines, and bad lines with ``errors="skip"``.
        source: Where the frames were loaded from.
        from_cache: True when read from the Parquet cache.
    """

    spans: pl.DataFrame
    requests: pl.DataFrame
    steps: pl.DataFrame
    metrics: pl.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    report: ReadReport = field(default_factory=ReadReport)
    source: Path | None = None
    from_cache: bool = False

    def frames(self) -> dict[str, pl.DataFrame]:
        """The four frames by name."""
        return {
            "spans": self.spans,
            "requests": self.requests,
            "steps": self.steps,
            "metrics": self.metrics,
        }

    def save(self, directory: Source) -> Path:
        """Write ``<name>.parquet`` per frame and ``manifest.json`` into ``directory``.

        :func:`load` reads such a directory back.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name, df in self.frames().items():
            df.write_parquet(out / f"{name}.parquet")
        (out / MANIFEST).write_text(json.dumps(self.manifest, indent=2, default=str) + "\n")
        return out


def load(source: Source, *, errors: Errors = "raise", cache: bool = True) -> Frames:
    """Load the frames of a run folder, JSON-lines file(s) or Parquet directory.

    Args:
        source: See the module docstring for what is accepted.
        errors: On a malformed line, ``"raise"`` a :class:`~sagellm_obs.store.StoreFormatError`
            naming file and line, or ``"skip"`` it; skipped lines are counted in
            ``Frames.report`` and one :class:`~sagellm_obs.store.StoreWarning` says how many.
            A torn last line (a write cut short) is always skipped with a warning.
        cache: Reuse (or write) the Parquet cache in ``.cache`` next to the source.

    Returns:
        The :class:`Frames`; every frame matches its declared schema, empty ones included.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        StoreFormatError: A malformed line, with ``errors="raise"``.
    """
    if errors not in ("raise", "skip"):
        raise ValueError(f'errors must be "raise" or "skip", not {errors!r}')
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no such run folder or file: {path}")
    if path.is_dir():
        parquet = _parquet_files(path)
        if parquet is not None:
            return _from_parquet(path, parquet)
        root, files = path, _discover(path)
        cache_dir = path / cache_mod.CACHE_DIR
    else:
        root, files = path.parent, [(path, _classify(path))]
        cache_dir = path.parent / cache_mod.CACHE_DIR / path.name
    manifest = _manifest(root) if path.is_dir() else {}
    fp = ""
    if cache:
        fp = cache_mod.fingerprint([f for f, _ in files], root)
        hit = cache_mod.read(cache_dir, fp)
        if hit is not None:
            frames, meta = hit
            report = ReadReport([(str(f), int(n), str(m)) for f, n, m in meta.get("skipped", [])])
            # An entry built with errors="skip" that skipped bad lines cannot answer "raise":
            # read the sources again, which raises on the first bad line.
            if errors == "skip" or all(m == TORN for _, _, m in report.skipped):
                report.warn()
                return _frames(frames, manifest=manifest, report=report, source=path)
    report = ReadReport()
    out = _build(root, files, manifest, errors=errors, report=report)
    out.source = path
    if cache:
        cache_mod.write(cache_dir, fp, out.frames(), {"skipped": report.skipped})
    report.warn()
    return out


def load_spans(source: Source, **kwargs: Any) -> pl.DataFrame:
    """The ``spans`` frame of ``source`` (see :func:`load` for the options)."""
    return load(source, **kwargs).spans


def load_requests(source: Source, **kwargs: Any) -> pl.DataFrame:
    """The ``requests`` frame of ``source`` (see :func:`load` for the options)."""
    return load(source, **kwargs).requests


def load_steps(source: Source, **kwargs: Any) -> pl.DataFrame:
    """The ``steps`` frame of ``source`` (see :func:`load` for the options)."""
    return load(source, **kwargs).steps


def load_metrics(source: Source, **kwargs: Any) -> pl.DataFrame:
    """The ``metrics`` frame of ``source`` (see :func:`load` for the options)."""
    return load(source, **kwargs).metrics


# --- building ----------------------------------------------------------------------------------


def _build(
    root: Path,
    files: list[tuple[Path, str]],
    manifest: dict[str, Any],
    *,
    errors: Errors,
    report: ReadReport,
) -> Frames:
    def read(kind: str, schema: pl.Schema, check: Check, suspect: pl.Expr) -> pl.DataFrame:
        parts = [
            read_lines(
                f, schema, errors=errors, report=report, check=check, suspect=suspect
            ).with_columns(pl.lit(_relative(f, root)).alias("source_file"))
            for f, k in files
            if k == kind
        ]
        if not parts:
            return pl.DataFrame(schema={**schema, LINE: pl.Int64, "source_file": pl.String})
        return pl.concat(parts)

    def spans_of(path: Path) -> tuple[pl.DataFrame, pl.DataFrame, ReadReport]:
        """One OTLP file's spans, its metric lines, and what it skipped."""
        local = ReadReport()

        def on_bad(file: str, line: int, message: str) -> None:
            if errors == "raise":
                raise StoreFormatError(root / file, line, message)
            local.add(root / file, line, message)

        lines = read_lines(
            path,
            wire.OTLP_LINE,
            errors=errors,
            report=local,
            check=wire.check_otlp_object,
            suspect=pl.col("resourceSpans").is_null() & pl.col("resourceMetrics").is_null(),
        ).with_columns(pl.lit(_relative(path, root)).alias("source_file"))
        metric_lines = lines.filter(pl.col("resourceMetrics").list.len() > 0)
        return build_spans(lines, on_bad), metric_lines, local

    # Spans are built file by file, two files at a time: a file's decoded lines are dropped once
    # its spans are built (half the memory of flattening every file's lines at once), and the
    # decoder's and polars' single-threaded stretches of one file overlap the other's. A million
    # spans load ~25% faster than all at once. Metric lines are few: kept and built once.
    # ``map`` returns in file order, so reports, errors and rows stay in file order.
    otlp_files = [f for f, k in files if k == OTLP]
    pool = ThreadPoolExecutor(max_workers=max(1, min(2, len(otlp_files))))
    try:
        results = list(pool.map(spans_of, otlp_files))
    finally:  # after an error, files not started yet are not read
        pool.shutdown(wait=True, cancel_futures=True)
    for _, _, local in results:
        report.skipped.extend(local.skipped)
    empty = pl.DataFrame(schema={**wire.OTLP_LINE, LINE: pl.Int64, "source_file": pl.String})
    spans = pl.concat([r[0] for r in results]) if results else build_spans(empty, lambda *_: None)
    otlp = pl.concat([r[1] for r in results]) if results else empty
    steps_lines = read(
        STEPS_KIND,
        wire.STEP_LINE,
        _flat_check(STEPS_KIND),
        pl.col(sc.STEP_TIME_UNIX_NANO).is_null(),
    )
    client = read(CLIENT, wire.CLIENT_LINE, _flat_check(CLIENT), pl.col("request_id").is_null())

    run_id = None if manifest.get("run_id") is None else str(manifest["run_id"])
    frames = Frames(
        spans=check_schema(spans, SPANS, "spans"),
        requests=check_schema(build_requests(spans, client), REQUESTS, "requests"),
        steps=check_schema(build_steps(steps_lines, run_id), STEPS, "steps"),
        metrics=check_schema(build_metrics(otlp), METRICS, "metrics"),
        manifest=manifest,
        report=report,
    )
    return frames


def build_steps(lines: pl.DataFrame, run_id: str | None = None) -> pl.DataFrame:
    """The ``steps`` frame of decoded step lines, sorted by time."""
    queries, hits = pl.col(sc.STEP_PREFIX_QUERIES), pl.col(sc.STEP_PREFIX_HITS)
    out = lines.with_columns(
        pl.col(sc.STEP_TIME_UNIX_NANO).cast(TIME).alias("time"),
        pl.lit(run_id, dtype=pl.String).alias("run_id"),
        pl.when(queries > 0).then(hits / queries).alias("prefix_hit_rate"),
    ).sort("time", maintain_order=True)
    return conform(out, STEPS)


def _flat_check(kind: str) -> Check:
    required = wire.required_keys(kind)

    def check(obj: Any) -> None:
        missing = [key for key in required if obj.get(key) is None]
        if missing:
            raise wire.ShapeError(f"not a {kind} record: missing {', '.join(missing)}")

    return check


# --- sources ------------------------------------------------------------------------------------


# The files of a run folder; anything else there (summary.json, notes...) is not telemetry.
_RUN_FILE_PREFIXES = ("traces-", "metrics-", "steps-", "requests-client-")


def _discover(directory: Path) -> list[tuple[Path, str]]:
    run_folder = (directory / MANIFEST).is_file()
    files = sorted(
        p
        for p in directory.iterdir()
        if p.is_file()
        and p.suffix in (".json", ".jsonl")
        and p.name != MANIFEST
        and not p.name.startswith(".")
        and (not run_folder or p.name.startswith(_RUN_FILE_PREFIXES))
    )
    return [(p, _classify(p)) for p in files]


def _classify(path: Path) -> str:
    name = path.name
    if name.startswith("steps-"):
        return STEPS_KIND
    if name.startswith("requests-client-"):
        return CLIENT
    if name.startswith(("traces-", "metrics-")):
        return OTLP
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES).lstrip()
    if head.startswith(b'{"resource'):
        return OTLP
    first = head.split(b"\n", 1)[0]
    if b'"' + sc.STEP_TIME_UNIX_NANO.encode() + b'"' in first and b'"step"' in first:
        return STEPS_KIND
    if b'"request_id"' in first and b'"client_' in first:
        return CLIENT
    return OTLP


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def _manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise StoreFormatError(path, 1, f"manifest is not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def _parquet_files(directory: Path) -> dict[str, Path] | None:
    named = {name: directory / f"{name}.parquet" for name in cache_mod.FRAME_NAMES}
    if any(p.is_file() for p in named.values()):
        return named
    if directory.name == cache_mod.CACHE_DIR:
        return cache_mod.entry_files(directory)
    return None


def _from_parquet(directory: Path, files: dict[str, Path]) -> Frames:
    def read(name: str) -> pl.DataFrame:
        path = files[name]
        schema = SCHEMAS[name]
        if not path.is_file():
            return pl.DataFrame(schema=schema)
        return check_schema(pl.read_parquet(path), schema, f"{name} ({path})")

    manifest_dir = directory.parent if directory.name == cache_mod.CACHE_DIR else directory
    frames = {name: read(name) for name in cache_mod.FRAME_NAMES}
    return _frames(frames, manifest=_manifest(manifest_dir), report=ReadReport(), source=directory)


def _frames(
    frames: dict[str, pl.DataFrame],
    *,
    manifest: dict[str, Any],
    report: ReadReport,
    source: Path,
) -> Frames:
    """Frames read back from Parquet, each checked against its schema."""
    checked = {name: check_schema(df, SCHEMAS[name], name) for name, df in frames.items()}
    return Frames(
        spans=checked["spans"],
        requests=checked["requests"],
        steps=checked["steps"],
        metrics=checked["metrics"],
        manifest=manifest,
        report=report,
        source=source,
        from_cache=True,
    )
