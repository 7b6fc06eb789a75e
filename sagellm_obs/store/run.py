"""The local store: a run folder of OTLP-JSON-lines files, step records and a manifest.

Layout of a run folder::

    <run>/manifest.json           run id, start/end, config, versions, engine args
    <run>/traces-00001.jsonl      one OTLP/JSON ExportTraceServiceRequest per line
    <run>/metrics-00001.jsonl     one OTLP/JSON ExportMetricsServiceRequest per line
    <run>/steps-00001.jsonl       one engine-step record per line (keys in semconv.STEP_*)
    <run>/requests-client-00001.jsonl  client-side timings, when a client measured them

Each batch is written as whole lines in one ``write`` and flushed, so a crash loses at most the
batch being written, and a torn last line is the only damage a reader can meet (it skips it).
Files rotate when they pass ``max_bytes``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
KINDS = ("traces", "metrics", "steps", "requests-client")
DEFAULT_MAX_BYTES = 64 * 2**20


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a short random suffix."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)


class _RotatingLines:
    """Append-only JSON-lines files ``<kind>-NNNNN.jsonl`` that rotate by size."""

    def __init__(self, directory: Path, kind: str, max_bytes: int, fsync: bool) -> None:
        self._dir = directory
        self._kind = kind
        self._max_bytes = max_bytes
        self._fsync = fsync
        self._lock = threading.Lock()
        existing = sorted(directory.glob(f"{kind}-*.jsonl"))
        self._index = int(existing[-1].stem.rsplit("-", 1)[1]) if existing else 1
        self._file: Any = None
        self._size = 0
        self.lines_written = 0

    @property
    def path(self) -> Path:
        return self._dir / f"{self._kind}-{self._index:05d}.jsonl"

    def write(self, objects: Iterable[Any]) -> int:
        data = "".join(_dumps(o) + "\n" for o in objects)
        if not data:
            return 0
        return self.write_bytes(data.encode())

    def write_bytes(self, encoded: bytes) -> int:
        """Append already-encoded whole lines (each ending in a newline)."""
        if not encoded:
            return 0
        with self._lock:
            if self._file is None:
                self._open()
            elif self._size and self._size + len(encoded) > self._max_bytes:
                self._file.close()
                self._index += 1
                self._open()
            self._file.write(encoded)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self._size += len(encoded)
            n = encoded.count(b"\n")
            self.lines_written += n
            return n

    def _open(self) -> None:
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across batches
        self._size = self._file.tell()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class RunStore:
    """Writer of one run folder. Thread-safe; every write is whole lines.

    Args:
        path: The run folder (created if missing).
        run_id: Id recorded in the manifest; a new one by default.
        max_bytes: Rotate a file when it would grow past this size.
        fsync: ``fsync`` after every batch (durable across power loss, slower).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        run_id: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id or new_run_id()
        self._files = {k: _RotatingLines(self.path, k, max_bytes, fsync) for k in KINDS}
        self._manifest: dict[str, Any] = {
            "run_id": self.run_id,
            "format": "sagellm-obs/run@1",
            "started_at": time.time(),
            "ended_at": None,
        }
        self._manifest_lock = threading.Lock()
        self._write_manifest()

    def write(self, kind: str, objects: Iterable[Mapping[str, Any]]) -> int:
        """Append objects (one line each) to the ``kind`` files; returns the lines written."""
        return self._files[kind].write(objects)

    def write_lines(self, kind: str, data: bytes) -> int:
        """Append pre-encoded JSON lines (UTF-8, each ending in ``\\n``) to the ``kind`` files.

        For writers that build the JSON text themselves (the telemetry thread's span lines).
        """
        if data and not data.endswith(b"\n"):
            raise ValueError("data must be whole lines ending in a newline")
        return self._files[kind].write_bytes(data)

    def lines_written(self, kind: str) -> int:
        """Lines this writer has appended to ``kind`` files."""
        return self._files[kind].lines_written

    def update_manifest(self, **fields: Any) -> None:
        """Merge fields into ``manifest.json`` (written atomically)."""
        with self._manifest_lock:
            self._manifest.update(fields)
            self._write_manifest()

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the manifest as last written."""
        with self._manifest_lock:
            return dict(self._manifest)

    def _write_manifest(self) -> None:
        tmp = self.path / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self._manifest, indent=2, default=str) + "\n")
        os.replace(tmp, self.path / MANIFEST)

    def close(self) -> None:
        """Close the files and stamp the end time in the manifest."""
        for f in self._files.values():
            f.close()
        self.update_manifest(ended_at=time.time())
