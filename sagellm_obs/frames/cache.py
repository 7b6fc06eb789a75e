"""The Parquet cache of loaded frames, next to the source, keyed by a fingerprint of its files.

Layout (``<fp>`` is the fingerprint)::

    <run>/.cache/<fp>.spans.parquet     one file per frame
    <run>/.cache/<fp>.requests.parquet
    <run>/.cache/<fp>.steps.parquet
    <run>/.cache/<fp>.metrics.parquet
    <run>/.cache/<fp>.kv_events.parquet  (entries of format 5 on)
    <run>/.cache/<fp>.json              written last: the entry is complete when it exists

The fingerprint hashes the cache format and every source file's name, size and modification
time, so appending to or touching a file invalidates
the entry. Each file is written to a temporary name and renamed into place; older entries are
removed after a new one is complete. A cache that cannot be written (read-only folder) or read
(damaged file) is ignored: the loader then reads the sources.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from sagellm_obs.frames.schemas import SAVED_SCHEMAS

_log = logging.getLogger(__name__)

CACHE_DIR = ".cache"
FORMAT = 6  # 6: Categorical text; 5: kv_events.parquet; 4: requests.frontend_s, ...
"""Bump when the frames built from the same files change (schemas, derivations)."""

SAVED_NAMES = tuple(SAVED_SCHEMAS)
"""The frames of an entry: the four and ``kv_events``."""


def fingerprint(files: Sequence[Path], root: Path, options: str = "") -> str:
    """A short hash of the cache format, ``options`` and each file's name, size and mtime."""
    h = hashlib.sha256(f"sagellm-obs-frames/{FORMAT}/{options}\n".encode())
    for path in sorted(files):
        st = path.stat()
        try:
            name = str(path.relative_to(root))
        except ValueError:
            name = str(path)
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def read(directory: Path, fp: str) -> tuple[dict[str, pl.DataFrame], dict[str, Any]] | None:
    """The frames and metadata of entry ``fp``, or None when absent or unreadable."""
    meta_path = directory / f"{fp}.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        frames = {name: pl.read_parquet(directory / f"{fp}.{name}.parquet") for name in SAVED_NAMES}
    except Exception as exc:  # damaged or concurrently replaced: rebuild from the sources
        _log.debug("sagellm-obs: ignoring unreadable frames cache %s: %s", meta_path, exc)
        return None
    return frames, meta


def write(
    directory: Path, fp: str, frames: Mapping[str, pl.DataFrame], meta: Mapping[str, Any]
) -> bool:
    """Write entry ``fp`` atomically and remove older entries; False if it could not be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name in SAVED_NAMES:
            _atomic(
                directory / f"{fp}.{name}.parquet", lambda p, n=name: frames[n].write_parquet(p)
            )
        _atomic(directory / f"{fp}.json", lambda p: p.write_text(json.dumps(dict(meta))))
    except (OSError, pl.exceptions.PolarsError) as exc:
        _log.debug("sagellm-obs: not caching frames in %s: %s", directory, exc)
        return False
    for old in directory.iterdir():
        if not old.name.startswith(f"{fp}.") and old.suffix in (".parquet", ".json"):
            with contextlib.suppress(OSError):
                old.unlink()
    return True


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def entry_files(directory: Path) -> dict[str, Path] | None:
    """The parquet files of the newest complete entry in a cache directory, if any.

    An entry of an older format has no ``kv_events`` file: its path is returned all the same
    (the reader gives an empty frame for a missing file).
    """
    metas = sorted(
        (p for p in directory.glob("*.json") if not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime_ns,
        reverse=True,
    )
    for meta in metas:
        files = {name: directory / f"{meta.stem}.{name}.parquet" for name in SAVED_NAMES}
        if all(p.is_file() for n, p in files.items() if n != "kv_events"):
            return files
    return None
