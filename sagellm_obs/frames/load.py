"""``load()`` and ``scan()``: one or many sources → the frames, eager or lazy.

A source is a run folder, a directory of OTLP/JSON files (a collector's export), a single such
file, or a Parquet directory (see :mod:`~sagellm_obs.frames.sources`); ``load`` and ``scan`` take
one, a list of them, or a glob (``"sagellm-runs/*"``). A run folder is read from its columnar
copies, so a scan's filters on time, model, engine or run and its choice of columns reach the
Parquet reader.

``source_file`` columns name files relative to their source, ``source_line`` is 1-based. With
several sources every frame's ``run_id`` is filled (the manifest's run id, else the source's
name) and ``runs`` has one row per source: join it on ``run_id`` for the run's set-up.

A fleet: the run folders of several replicas (and of the client that spread a workload over them,
``sagellm-obs run --endpoint URL1,URL2``) load into one set of frames; the client rows of one
source are joined to the request spans of another on ``request_id``, and every row keeps its
``engine_id``/``engine_idx`` (see :mod:`sagellm_obs.frames.fleet`). A client run names its
replicas' folders in its manifest: they load with it without being listed, when they are readable
on this machine (:mod:`sagellm_obs.frames.replicas`; ``replicas=False`` loads the client alone).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from sagellm_obs.clickhouse.source import ClickHouseSource, is_clickhouse
from sagellm_obs.frames.loaded import Frames
from sagellm_obs.frames.replicas import with_replicas
from sagellm_obs.frames.schemas import (
    FRAME_NAMES,
    KV_EVENTS,
    RUNS,
    SAVED_SCHEMAS,
    SCHEMAS,
    check_schema,
)
from sagellm_obs.frames.sources import SourceScan, runs_row, scan_source
from sagellm_obs.frames.spans import CLIENT_COLUMNS, client_columns
from sagellm_obs.store.reader import Errors, ReadReport

Source = str | os.PathLike[str]
Sources = Source | Sequence[Source]

SpansMode = Literal["lazy", "eager"]
"""When :meth:`Scan.collect` (and :func:`load`) collect the spans frame: on first access of
``Frames.spans``, or at once."""

_GLOB_CHARS = frozenset("*?[")


@dataclass
class Scan:
    """Lazy frames of one or many sources: :func:`scan`. ``collect()`` gives
    :class:`~sagellm_obs.frames.Frames`.

    Attributes:
        spans, requests, steps, metrics: ``pl.LazyFrame`` over the sources' rows.
        manifest, report, source, from_cache, runs, rebuilt, kv_events: As :class:`Frames`
            (``kv_events`` lazy).
    """

    spans: pl.LazyFrame
    requests: pl.LazyFrame
    steps: pl.LazyFrame
    metrics: pl.LazyFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    report: ReadReport = field(default_factory=ReadReport)
    source: Path | None = None
    from_cache: bool = False
    runs: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=RUNS))
    rebuilt: list[tuple[str, str]] = field(default_factory=list)
    kv_events: pl.LazyFrame = field(default_factory=lambda: pl.LazyFrame(schema=KV_EVENTS))

    def frames(self) -> dict[str, pl.LazyFrame]:
        """The four lazy frames by name."""
        return {name: getattr(self, name) for name in FRAME_NAMES}

    def collect(self, *, spans: SpansMode = "lazy") -> Frames:
        """The frames, collected in one go (shared scans are read once).

        Args:
            spans: ``"lazy"``: the spans frame is collected on first access of
                ``Frames.spans`` (see :class:`Frames`); ``"eager"``: now, with the others.
        """
        if spans not in ("lazy", "eager"):
            raise ValueError(f'spans must be "lazy" or "eager", not {spans!r}')
        names = [n for n in FRAME_NAMES if spans == "eager" or n != "spans"]
        *eager, kv = pl.collect_all([self.frames()[name] for name in names] + [self.kv_events])
        checked = {
            name: check_schema(df, SCHEMAS[name], name)
            for name, df in zip(names, eager, strict=True)
        }
        return Frames(
            spans=checked.get("spans", self.spans),
            requests=checked["requests"],
            steps=checked["steps"],
            metrics=checked["metrics"],
            manifest=self.manifest,
            report=self.report,
            source=self.source,
            from_cache=self.from_cache,
            runs=self.runs,
            rebuilt=self.rebuilt,
            kv_events=check_schema(kv, KV_EVENTS, "kv_events"),
        )


def scan(
    source: Sources | ClickHouseSource,
    *,
    errors: Errors = "raise",
    cache: bool = True,
    replicas: bool = True,
    _depth: int = 1,
) -> Scan:
    """Lazy frames of one or many run folders, JSON-lines files or Parquet directories.

    A run folder's rows are read from its columnar copies (built from the JSON when missing,
    stale or unreadable, and written back when ``cache``); filters and column choices on the
    returned LazyFrames are pushed down to the Parquet reader.

    Args:
        source: A source, a list of sources, or a glob matching several (see the module
            docstring for what a source is); or a ClickHouse source: a DSN
            (``clickhouse://...``, ``chdb:PATH``), a client, or
            :func:`~sagellm_obs.clickhouse.source.clickhouse_source` (see docs/clickhouse.md).
        errors: On a malformed line, ``"raise"`` a :class:`~sagellm_obs.store.StoreFormatError`
            naming file and line, or ``"skip"`` it; skipped lines are counted in ``report`` and
            one :class:`~sagellm_obs.store.StoreWarning` says how many. A torn last line (a
            write cut short) is always skipped with a warning. With several sources, a source
            that cannot be read at all raises too, or (``"skip"``) is left out, reported and
            named in ``runs.problem``; the other sources are kept.
        cache: Use and write the columnar copies of run folders and the Parquet cache of other
            files (in ``.cache`` next to them). False reads every JSON file and writes nothing.
        replicas: Also load the replica run folders that client runs among the sources name
            (``sagellm-obs run --endpoint``), when readable here; the ones not found are named
            in one :class:`~sagellm_obs.frames.replicas.MissingReplicasWarning` and in ``runs``
            (``problem``). False loads the sources alone.

    Raises:
        FileNotFoundError: A source (or every match of a glob) does not exist.
        StoreFormatError: A malformed line, with ``errors="raise"``.
    """
    if errors not in ("raise", "skip"):
        raise ValueError(f'errors must be "raise" or "skip", not {errors!r}')
    if is_clickhouse(source):
        from sagellm_obs.clickhouse.read import scan_clickhouse

        return scan_clickhouse(source, errors=errors)
    assert not isinstance(source, ClickHouseSource)
    paths = expand_sources(source)
    given = len(paths)
    not_found: list[pl.DataFrame] = []
    if replicas:
        fleet = with_replicas(paths)
        paths = fleet.paths
        fleet.warn(stacklevel=_depth + 1)  # at the user's call of scan() or load()
        not_found = [
            runs_row(None, path, f"replica run folder not found: {text}").with_columns(
                run_id=pl.lit(run_id, dtype=RUNS["run_id"])
            )
            for (run_id, path), text in zip(fleet.missing_runs, fleet.missing, strict=True)
        ]
    report = ReadReport()
    scans: list[SourceScan] = []
    rows: list[pl.DataFrame] = []
    for path in paths:
        try:
            one = scan_source(path, errors=errors, cache=cache)
        except Exception as exc:
            if errors == "raise" or len(paths) == 1:
                raise
            report.add(path, 0, f"not loaded: {type(exc).__name__}: {exc}")
            rows.append(runs_row(None, path, f"{type(exc).__name__}: {exc}"))
            continue
        scans.append(one)
        report.skipped.extend(one.report.skipped)
        rows.append(runs_row(one, path))
    rows += not_found
    report.warn()
    frames = _combine(scans)
    # One source given (its replicas implied): its manifest is the frames' manifest.
    single = given == 1 and bool(scans) and scans[0].path == paths[0]
    return Scan(
        **frames,
        manifest=scans[0].manifest if single else {},
        report=report,
        source=paths[0],
        from_cache=bool(scans) and all(s.from_cache for s in scans),
        runs=pl.concat(rows) if rows else pl.DataFrame(schema=RUNS),
        rebuilt=[(str(s.path / f), why) for s in scans for f, why in s.rebuilt],
    )


def load(
    source: Sources | ClickHouseSource,
    *,
    errors: Errors = "raise",
    cache: bool = True,
    replicas: bool = True,
    spans: SpansMode = "lazy",
) -> Frames:
    """The frames of one or many sources, collected: :func:`scan` then :meth:`Scan.collect`.

    Args:
        source, errors, cache, replicas: As :func:`scan`.
        spans: ``"lazy"`` (default): ``requests``, ``steps``, ``metrics`` and ``kv_events`` are
            collected now and the spans frame on first access of ``Frames.spans`` (a run's
            largest frame, needed for drill-down); ``"eager"``: now too. Files are read and
            malformed lines raise here either way.

    Returns:
        The :class:`~sagellm_obs.frames.Frames`; every frame matches its declared schema, empty
        ones included (the deferred spans when collected).

    Raises:
        FileNotFoundError: A source does not exist.
        StoreFormatError: A malformed line, with ``errors="raise"``.
    """
    lazy = scan(source, errors=errors, cache=cache, replicas=replicas, _depth=2)
    return lazy.collect(spans=spans)


def load_spans(source: Sources, **kwargs: Any) -> pl.DataFrame:
    """The ``spans`` frame of ``source`` (see :func:`load` for the options)."""
    return scan(source, **kwargs).spans.collect()


def load_requests(source: Sources, **kwargs: Any) -> pl.DataFrame:
    """The ``requests`` frame of ``source`` (see :func:`load` for the options)."""
    return scan(source, **kwargs).requests.collect()


def load_steps(source: Sources, **kwargs: Any) -> pl.DataFrame:
    """The ``steps`` frame of ``source`` (see :func:`load` for the options)."""
    return scan(source, **kwargs).steps.collect()


def load_metrics(source: Sources, **kwargs: Any) -> pl.DataFrame:
    """The ``metrics`` frame of ``source`` (see :func:`load` for the options)."""
    return scan(source, **kwargs).metrics.collect()


def expand_sources(source: Sources) -> list[Path]:
    """The sources as paths: a glob expanded (sorted), a list kept in its order.

    Raises:
        FileNotFoundError: A path does not exist, or a glob matches nothing loadable.
    """
    items = [source] if isinstance(source, str | os.PathLike) else list(source)
    if not items:
        raise ValueError("no source given")
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.exists():
            paths.append(path)
            continue
        text = str(path)
        if _GLOB_CHARS & set(text):
            matches = [Path(m) for m in sorted(glob.glob(text)) if _loadable(Path(m))]
            if matches:
                paths.extend(matches)
                continue
            raise FileNotFoundError(f"no run folder or file matches {text}")
        raise FileNotFoundError(f"no such run folder or file: {path}")
    return paths


def _loadable(path: Path) -> bool:
    return path.is_dir() or path.suffix in (".json", ".jsonl")


def _combine(scans: list[SourceScan]) -> dict[str, pl.LazyFrame]:
    """The sources' frames end to end; with several, each row's ``run_id`` filled."""
    if not scans:
        return {name: pl.LazyFrame(schema=schema) for name, schema in SAVED_SCHEMAS.items()}

    def frame(s: SourceScan, name: str) -> pl.LazyFrame:
        return s.frames.get(name, pl.LazyFrame(schema=SAVED_SCHEMAS[name]))

    if len(scans) == 1:
        return {name: frame(scans[0], name) for name in SAVED_SCHEMAS}
    out = {}
    for name in SAVED_SCHEMAS:
        parts = [
            frame(s, name).with_columns(pl.col("run_id").fill_null(pl.lit(s.run_id))) for s in scans
        ]
        out[name] = pl.concat(parts, how="vertical")
    clients = [s.client for s in scans if s.client is not None]
    if clients:
        out["requests"] = _join_client(out["requests"], pl.concat(clients, how="vertical"))
    return out


def _join_client(requests: pl.LazyFrame, client: pl.LazyFrame) -> pl.LazyFrame:
    """``requests`` with the client columns filled from any source's client rows (the last row
    of a repeated request id wins); values a source already joined are kept."""
    rows = client_columns(client).rename({col: f"_{col}" for col in CLIENT_COLUMNS})
    return (
        requests.join(rows, on="request_id", how="left", maintain_order="left")
        .with_columns(pl.coalesce(col, f"_{col}").alias(col) for col in CLIENT_COLUMNS)
        .drop([f"_{col}" for col in CLIENT_COLUMNS])
    )
