"""Columnar copies of a run folder's files: one Parquet file per data file and frame.

The store writes a copy of each JSON-lines file it is done with (:func:`write_copies`, called on
the store's sealing thread when a file rotates and when the run closes); the loader reads the
copies instead of parsing JSON, and builds any copy that is missing, stale or unreadable from the
JSON, which stays the source of truth. Where the copies live is :mod:`sagellm_obs.store.layout`.

A copy holds exactly the rows :func:`sagellm_obs.frames.files.build_file` returns for its file
(typed, sorted by time, zstd) and, in the Parquet footer, what it was built from: the format, the
file's size and a hash of its last bytes (so an append, a rewrite or a truncation makes it stale,
while copying the folder elsewhere does not), and the lines the build skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from sagellm_obs.frames import files
from sagellm_obs.frames.lines import TORN
from sagellm_obs.frames.schemas import check_schema
from sagellm_obs.store import layout
from sagellm_obs.store.reader import Errors, ReadReport

_log = logging.getLogger(__name__)

FORMAT = 4
"""Bump when the rows built from the same file change (schemas, derivations, dtypes).
4: low-cardinality text as Categorical."""

META_KEY = "sagellm-obs:columnar"
_TAIL_BYTES = 4096


@dataclass
class FileRows:
    """One data file's rows, lazily from its copies or eagerly built from its JSON.

    Attributes:
        frames: The file's rows by frame name (see :data:`~sagellm_obs.frames.files.FRAMES_OF`).
        report: What the build skipped (torn last lines; bad lines with ``errors="skip"``).
        rebuilt: Why the copies were (re)built from the JSON, or None when they were fresh.
    """

    frames: dict[str, pl.LazyFrame]
    report: ReadReport = field(default_factory=ReadReport)
    rebuilt: str | None = None


def signature(path: Path) -> dict[str, Any]:
    """What a copy must have been built from to be fresh: size and a hash of the last bytes."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        fh.seek(max(0, size - _TAIL_BYTES))
        tail = hashlib.blake2b(fh.read(), digest_size=12).hexdigest()
    return {"format": FORMAT, "size": size, "tail": tail}


def rows(
    path: Path,
    kind: str,
    root: Path,
    *,
    run_id: str | None,
    errors: Errors,
    cache: bool = True,
) -> FileRows:
    """The rows of one run-folder file: from its fresh copies, else built (and copies written).

    Args:
        path: A data file of a run folder.
        kind: Its kind (:func:`sagellm_obs.frames.files.classify`).
        root: The run folder.
        run_id: The run's id (for step rows).
        errors: As :func:`sagellm_obs.frames.load`. A copy whose build skipped bad lines is not
            used by an ``errors="raise"`` read: the JSON is read again and raises.
        cache: Use fresh copies and write the ones that had to be built. False: build from the
            JSON in memory, and neither read nor write copies.

    Raises:
        StoreFormatError: A malformed record, with ``errors="raise"``.
    """
    names = files.FRAMES_OF[kind]
    sig = signature(path)
    why = _stale(path, names, sig, errors) if cache else "not asked for"
    if why is None:
        meta = _meta(layout.columnar_copy(path, names[0]))
        report = ReadReport([(str(path), int(n), str(m)) for n, m in meta.get("skipped", [])])
        frames = {n: pl.scan_parquet(layout.columnar_copy(path, n)) for n in names}
        return FileRows(frames, report)
    built, report = files.build_file(path, kind, root, run_id=run_id, errors=errors)
    if cache:
        _write(path, built, sig, report)
    return FileRows({n: df.lazy() for n, df in built.items()}, report, rebuilt=why)


def write_copies(path: Path) -> None:
    """Write the columnar copies of one data file of a run folder (the store's sealer).

    Bad lines are skipped and recorded in the copies (a strict load reads the JSON again).
    """
    path = Path(path)
    kind = files.classify(path)
    manifest = _run_manifest(path.parent)
    run_id = manifest.get("run_id")
    built, report = files.build_file(
        path,
        kind,
        path.parent,
        run_id=None if run_id is None else str(run_id),
        errors="skip",
    )
    _write(path, built, signature(path), report)


def _stale(path: Path, names: tuple[str, ...], sig: dict[str, Any], errors: Errors) -> str | None:
    """Why the copies of ``path`` cannot be used, or None when they can."""
    for name in names:
        copy = layout.columnar_copy(path, name)
        if not copy.is_file():
            return "missing"
        try:
            meta = _meta(copy)
        except Exception as exc:  # damaged footer, not Parquet at all
            return f"unreadable ({type(exc).__name__})"
        if {k: meta.get(k) for k in sig} != sig:
            return "stale" if meta.get("format") == FORMAT else "older format"
        if errors == "raise" and any(m != TORN for _, m in meta.get("skipped", [])):
            return "built skipping bad lines"
        try:  # the schema is in the footer: reading it finds a damaged or foreign file
            check_schema(
                pl.DataFrame(schema=pl.read_parquet_schema(copy)),
                files.FILE_SCHEMAS[name],
                f"{name} ({copy})",
            )
        except Exception as exc:
            return f"unreadable ({exc})"
    return None


def _meta(copy: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(pl.read_parquet_metadata(copy)[META_KEY])
    return data


def _write(
    path: Path, built: dict[str, pl.DataFrame], sig: dict[str, Any], report: ReadReport
) -> None:
    """Write each frame's copy atomically; a folder that cannot be written is left alone."""
    skipped = [(line, msg) for _, line, msg in report.skipped]
    meta = {META_KEY: json.dumps({**sig, "source": path.name, "skipped": skipped})}
    for name, df in built.items():
        copy = layout.columnar_copy(path, name)
        tmp = copy.with_name(f".{copy.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        try:
            copy.parent.mkdir(exist_ok=True)
            df.write_parquet(tmp, compression="zstd", metadata=meta)
            os.replace(tmp, copy)
        except OSError as exc:  # read-only folder: loads keep building from the JSON
            _log.debug("sagellm-obs: no columnar copy of %s: %s", path, exc)
            return
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _run_manifest(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads((directory / layout.MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
