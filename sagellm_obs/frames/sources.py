"""One source → lazy frames: a run folder (its columnar copies), other JSON files, Parquet.

* A run folder (``manifest.json`` and the data files of :mod:`sagellm_obs.store.layout`): each
  file's rows come from its columnar copies, built from the JSON (and written) when missing,
  stale or unreadable (:mod:`~sagellm_obs.frames.columnar`).
* A directory of OTLP/JSON files with any names (``*.json``/``*.jsonl``), e.g. what an
  OpenTelemetry Collector's file exporter writes (trace and metric lines may share a file), or a
  single such file: built from the JSON, with the whole-frames Parquet cache of
  :mod:`~sagellm_obs.frames.cache` next to it.
* A Parquet directory: one written by ``Frames.save`` (``spans.parquet``...,
  ``kv_events.parquet``) or a cache directory (``<dir>/.cache``).

``kv_events`` comes from kv-events files (a run folder's, or one among other JSON files) and
from Parquet directories; a folder without such files (an OTLP export) gives it empty, as does
a Parquet directory saved before ``kv_events.parquet`` was written.

In a directory only the top-level files are read. The same span loaded twice (e.g. a run folder
that also holds a collector's copy) appears twice.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from sagellm_obs.frames import cache as cache_mod
from sagellm_obs.frames import columnar, files
from sagellm_obs.frames.lines import TORN
from sagellm_obs.frames.schemas import RUNS, SAVED_SCHEMAS, as_text, check_schema, conform
from sagellm_obs.frames.spans import requests_of
from sagellm_obs.store import layout
from sagellm_obs.store.reader import Errors, ReadReport, StoreFormatError

_log = logging.getLogger(__name__)

ADDED_COLUMNS: dict[str, tuple[str, ...]] = dict.fromkeys(
    ("spans", "requests", "steps", "metrics"), ("engine_idx",)
)
"""Columns added to a frame's schema after Parquet frames were first saved: a saved frame
without them loads with them as nulls (any other missing column is a schema error)."""


@dataclass
class SourceScan:
    """The lazy frames of one source and what reading it found."""

    path: Path
    kind: str  # "run", "otlp" or "parquet"
    frames: dict[str, pl.LazyFrame]
    manifest: dict[str, Any] = field(default_factory=dict)
    report: ReadReport = field(default_factory=ReadReport)
    rebuilt: list[tuple[str, str]] = field(default_factory=list)
    from_cache: bool = False
    #: The source's client rows (``requests-client``), for joining them to other sources'
    #: request spans (a client run and its replicas' runs); None when it has none.
    client: pl.LazyFrame | None = None

    @property
    def run_id(self) -> str:
        """The manifest's run id, else the folder's (or file's) name."""
        rid = self.manifest.get("run_id")
        return str(rid) if rid is not None else self.path.name


def scan_source(path: Path, *, errors: Errors, cache: bool) -> SourceScan:
    """The lazy frames of one existing source (see the module docstring)."""
    if path.is_dir():
        parquet = _parquet_files(path)
        if parquet is not None:
            return _parquet(path, parquet)
        if layout.is_run_folder(path):
            return _run_folder(path, errors=errors, cache=cache)
        return _json_files(path, files.discover(path), path, errors=errors, cache=cache)
    return _json_files(
        path, [(path, files.classify(path))], path.parent, errors=errors, cache=cache
    )


def read_manifest(directory: Path) -> dict[str, Any]:
    """A folder's ``manifest.json`` ({} when there is none)."""
    path = directory / layout.MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise StoreFormatError(path, 1, f"manifest is not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def runs_row(scan: SourceScan | None, path: Path, problem: str | None = None) -> pl.DataFrame:
    """The ``runs`` row of a source (``scan`` None: a source that could not be read)."""
    m = scan.manifest if scan is not None else {}
    workload = m.get("workload") if isinstance(m.get("workload"), dict) else {}
    assert isinstance(workload, dict)

    def when(key: str) -> datetime | None:
        value = m.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, timezone.utc)
        return None

    row = {
        "run_id": scan.run_id if scan is not None else path.name,
        "path": str(path),
        "kind": scan.kind if scan is not None else None,
        "model": m.get("model"),
        "engine_id": m.get("engine_id"),
        "workload": workload.get("name"),
        "requests": workload.get("requests"),
        "concurrency": workload.get("concurrency"),
        "rate": workload.get("rate"),
        "max_tokens": workload.get("max_tokens"),
        "prefix_caching": workload.get("prefix_caching"),
        "started_at": when("started_at"),
        "ended_at": when("ended_at"),
        "problem": problem,
    }
    cols = {
        name: pl.Series(name, [row[name]], strict=False).cast(dtype, strict=False)
        for name, dtype in RUNS.items()
    }
    return pl.DataFrame(cols)


# --- run folders -------------------------------------------------------------------------------


def _run_folder(path: Path, *, errors: Errors, cache: bool) -> SourceScan:
    manifest = read_manifest(path)
    run_id = None if manifest.get("run_id") is None else str(manifest["run_id"])
    found = files.discover(path)

    def one(item: tuple[Path, str]) -> columnar.FileRows:
        f, kind = item
        return columnar.rows(f, kind, path, run_id=run_id, errors=errors, cache=cache)

    # Files whose copies must be built are parsed two at a time: the JSON decoder's and polars'
    # single-threaded stretches of one file overlap the other's. ``map`` keeps file order.
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        results = list(pool.map(one, found))
    finally:  # after an error, files not started yet are not read
        pool.shutdown(wait=True, cancel_futures=True)
    report = ReadReport([s for r in results for s in r.report.skipped])
    rebuilt = [
        (files.relative(f, path), r.rebuilt)
        for (f, _), r in zip(found, results, strict=True)
        if r.rebuilt is not None and cache
    ]
    if rebuilt:
        _log.info(
            "sagellm-obs: built the columnar copies of %d file(s) in %s (%s)",
            len(rebuilt),
            path,
            ", ".join(f"{name}: {why}" for name, why in rebuilt),
        )
    parts: dict[str, list[pl.LazyFrame]] = {name: [] for name in files.FILE_SCHEMAS}
    for r in results:
        for name, lf in r.frames.items():
            parts[name].append(lf)
    frames = _assemble(parts)
    client = parts.get("client")
    return SourceScan(
        path,
        "run",
        frames,
        manifest=manifest,
        report=report,
        rebuilt=rebuilt,
        from_cache=cache and not rebuilt,
        client=pl.concat(client, how="vertical") if client else None,
    )


def _assemble(parts: dict[str, list[pl.LazyFrame]]) -> dict[str, pl.LazyFrame]:
    """The four frames and ``kv_events`` from per-file rows (in file order)."""

    def cat(name: str) -> pl.LazyFrame:
        found = parts.get(name, [])
        if not found:
            return pl.LazyFrame(schema=files.FILE_SCHEMAS[name])
        return pl.concat(found, how="vertical") if len(found) > 1 else found[0]

    spans = cat("spans")
    client = cat("client") if parts.get("client") else None
    return {
        "spans": spans,
        "requests": requests_of(spans, client),
        "steps": cat("steps").sort("time", maintain_order=True),
        "metrics": cat("metrics"),
        "kv_events": cat("kv_events").sort("time", maintain_order=True),
    }


# --- other JSON files ----------------------------------------------------------------------------


def _json_files(
    source: Path, found: list[tuple[Path, str]], root: Path, *, errors: Errors, cache: bool
) -> SourceScan:
    """Files that are not a run folder's: built from the JSON, with the whole-frames cache."""
    cache_dir = root / cache_mod.CACHE_DIR
    if source.is_file():
        cache_dir = cache_dir / source.name
    manifest = read_manifest(source) if source.is_dir() else {}
    fp = cache_mod.fingerprint([f for f, _ in found], root) if cache else ""
    if cache:
        hit = cache_mod.read(cache_dir, fp)
        if hit is not None:
            frames, meta = hit
            report = ReadReport([(str(f), int(n), str(m)) for f, n, m in meta.get("skipped", [])])
            # An entry built with errors="skip" that skipped bad lines cannot answer "raise":
            # read the sources again, which raises on the first bad line.
            if errors == "skip" or all(m == TORN for _, _, m in report.skipped):
                checked = {
                    n: check_schema(df, SAVED_SCHEMAS[n], n).lazy() for n, df in frames.items()
                }
                return SourceScan(source, "otlp", checked, manifest, report, from_cache=True)
    report = ReadReport()
    parts: dict[str, list[pl.LazyFrame]] = {name: [] for name in files.FILE_SCHEMAS}

    def one(item: tuple[Path, str]) -> tuple[dict[str, pl.DataFrame], ReadReport]:
        return files.build_file(item[0], item[1], root, run_id=_run_id(manifest), errors=errors)

    pool = ThreadPoolExecutor(max_workers=2)
    try:
        results = list(pool.map(one, found))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for built, local in results:
        report.skipped.extend(local.skipped)
        for name, df in built.items():
            parts[name].append(df.lazy())
    lazy = _assemble(parts)
    names = list(SAVED_SCHEMAS)
    eager = dict(zip(names, pl.collect_all([lazy[n] for n in names]), strict=True))
    if cache:
        cache_mod.write(cache_dir, fp, eager, {"skipped": report.skipped})
    return SourceScan(source, "otlp", {n: df.lazy() for n, df in eager.items()}, manifest, report)


def _run_id(manifest: dict[str, Any]) -> str | None:
    return None if manifest.get("run_id") is None else str(manifest["run_id"])


# --- Parquet ------------------------------------------------------------------------------------


def _parquet_files(directory: Path) -> dict[str, Path] | None:
    named = {name: directory / f"{name}.parquet" for name in SAVED_SCHEMAS}
    if any(p.is_file() for p in named.values()):
        return named
    if directory.name == cache_mod.CACHE_DIR:
        return cache_mod.entry_files(directory)
    return None


def _was_text(have: pl.DataType, declared: pl.DataType) -> bool:
    """A saved column's dtype is the declared one with String for Categorical (cast on load)."""
    return have != declared and have == as_text(declared)


def _parquet(directory: Path, found: dict[str, Path]) -> SourceScan:
    def scan(name: str) -> pl.LazyFrame:
        path = found[name]
        schema = SAVED_SCHEMAS[name]
        if not path.is_file():  # e.g. kv_events.parquet of frames saved before it was written
            return pl.LazyFrame(schema=schema)
        have = pl.read_parquet_schema(path)
        added = [c for c in ADDED_COLUMNS.get(name, ()) if c not in have]
        # Frames saved before low-cardinality text was Categorical have it as String.
        text = [c for c, dtype in schema.items() if c in have and _was_text(have[c], dtype)]
        # Frames saved before a column was added load with it as nulls.
        check_schema(
            pl.DataFrame(schema={**have, **{c: schema[c] for c in [*added, *text]}}),
            schema,
            f"{name} ({path})",
        )
        scan = pl.scan_parquet(path)
        return conform(scan, schema) if added or text else scan

    manifest_dir = directory.parent if directory.name == cache_mod.CACHE_DIR else directory
    frames = {name: scan(name) for name in SAVED_SCHEMAS}
    return SourceScan(
        directory, "parquet", frames, manifest=read_manifest(manifest_dir), from_cache=True
    )
