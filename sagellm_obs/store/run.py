"""The local store's writer: a run folder of OTLP-JSON-lines files, step records and a manifest.

The folder's layout is :mod:`sagellm_obs.store.layout`. Each batch is written as whole lines
and flushed before the call returns, so a crash loses at most the batch being written, and a
torn last line is the only damage a reader can meet (it skips it). Files rotate when they pass
``max_bytes``. A file the writer is done with (rotated away, or open at
:meth:`RunStore.close`) is handed to the ``seal`` callback on a background thread of its own,
never the writer's: the telemetry set-up passes :func:`sagellm_obs.frames.columnar.write_copies`,
which writes the file's columnar copy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sagellm_obs.store.layout import KINDS, MANIFEST, RUN_FORMAT, data_file, data_files

_log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 2**20
_BUFFER = 2**20
SEAL_TIMEOUT_S = 300.0
"""How long :meth:`RunStore.close` waits for the last files' copies (a load rebuilds any left)."""

Sealer = Callable[[Path], object]
"""Called with a data file the store will not append to again (on the sealing thread)."""


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a short random suffix."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)


class _RotatingLines:
    """Append-only JSON-lines files ``<kind>-NNNNN.jsonl`` that rotate by size."""

    def __init__(
        self,
        directory: Path,
        kind: str,
        max_bytes: int,
        fsync: bool,
        on_rotate: Callable[[Path], None],
    ) -> None:
        self._dir = directory
        self._kind = kind
        self._max_bytes = max_bytes
        self._fsync = fsync
        self._on_rotate = on_rotate
        self._lock = threading.Lock()
        existing = data_files(directory, kind)
        # A reopened folder appends to its last file of each kind.
        self._index = int(existing[-1].stem.rsplit("-", 1)[1]) if existing else 1
        self._file: Any = None
        self._size = 0
        self.lines_written = 0

    @property
    def path(self) -> Path:
        return data_file(self._dir, self._kind, self._index)

    def write(self, objects: Iterable[Any]) -> int:
        texts = [_dumps(o) for o in objects]  # json escapes newlines: one line each
        if not texts:
            return 0
        texts.append("")
        return self.write_bytes("\n".join(texts).encode(), len(texts) - 1)

    def write_bytes(self, encoded: bytes | Sequence[bytes], lines: int | None = None) -> int:
        """Append already-encoded whole lines (each ending in a newline), as one buffer or as
        pieces that make them up; ``lines``: how many, when the caller knows (else counted)."""
        pieces = (encoded,) if isinstance(encoded, bytes) else encoded
        size = sum(map(len, pieces))
        if not size:
            return 0
        with self._lock:
            if self._file is None:
                self._open()
            elif self._size and self._size + size > self._max_bytes:
                self._file.close()
                self._on_rotate(self.path)
                self._index += 1
                self._open()
            self._file.writelines(pieces)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self._size += size
            n = sum(p.count(b"\n") for p in pieces) if lines is None else lines
            self.lines_written += n
            return n

    def _open(self) -> None:
        # The buffer takes a batch's pieces (the span lines' ~3 KB a request) without a
        # write call each; one big join of them instead costs ~1.5 µs a KB in fresh pages.
        self._file = open(self.path, "ab", buffering=_BUFFER)  # noqa: SIM115 - kept open
        self._size = self._file.tell()

    def close(self) -> Path | None:
        """Close the open file; returns it when this writer wrote to it."""
        with self._lock:
            if self._file is None:
                return None
            self._file.close()
            self._file = None
            return self.path


class _SealingThread:
    """Runs the ``seal`` callback on files one at a time, off the writer's threads.

    Sealing is telemetry work: it runs at the lowest CPU priority Linux gives a thread, and a
    failure is logged, never raised (the next load rebuilds a copy that is missing).
    """

    def __init__(self, seal: Sealer) -> None:
        self._seal = seal
        self._queue: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0  # files put and not yet sealed (or failed)
        self.sealed = 0
        self._thread = threading.Thread(target=self._work, name="sagellm-obs-seal", daemon=True)
        self._thread.start()

    def put(self, path: Path) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(path)

    def wait(self, timeout: float | None) -> bool:
        """Wait until every file put so far is sealed; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def finish(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            _log.warning(
                "sagellm-obs: columnar copies still being written after %.0f s; the next "
                "load builds any that are missing",
                timeout,
            )

    def _work(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # per-thread nice: Linux only
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while (path := self._queue.get()) is not None:
            try:
                self._seal(path)
                self.sealed += 1
            except Exception:
                _log.exception("sagellm-obs: sealing %s failed", path)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


class RunStore:
    """Writer of one run folder. Thread-safe; every write is whole lines.

    Args:
        path: The run folder (created if missing).
        run_id: Id recorded in the manifest; a new one by default.
        max_bytes: Rotate a file when it would grow past this size.
        fsync: ``fsync`` after every batch (durable across power loss, slower).
        seal: Called on a background thread with each data file once the store is done with it
            (rotated away, or at :meth:`close`), e.g. to write its columnar copy.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        run_id: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        fsync: bool = False,
        seal: Sealer | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id or new_run_id()
        self._sealer = _SealingThread(seal) if seal is not None else None
        self._files = {
            k: _RotatingLines(self.path, k, max_bytes, fsync, self._rotated) for k in KINDS
        }
        self._manifest: dict[str, Any] = {
            "run_id": self.run_id,
            "format": RUN_FORMAT,
            "started_at": time.time(),
            "ended_at": None,
        }
        self._manifest_lock = threading.Lock()
        self._write_manifest()

    def write(self, kind: str, objects: Iterable[Mapping[str, Any]]) -> int:
        """Append objects (one line each) to the ``kind`` files; returns the lines written."""
        return self._files[kind].write(objects)

    def write_lines(
        self, kind: str, data: bytes | Sequence[bytes], lines: int | None = None
    ) -> int:
        """Append pre-encoded JSON lines (UTF-8, each ending in ``\\n``) to the ``kind`` files.

        For writers that build the JSON text themselves (the telemetry thread's span lines).
        ``data`` is the lines' bytes, or pieces that joined make them up (written without
        joining them); ``lines`` is how many it holds when the writer knows (else they are
        counted).
        """
        last = data if isinstance(data, bytes) else next((p for p in reversed(data) if p), b"")
        if last and not last.endswith(b"\n"):
            raise ValueError("data must be whole lines ending in a newline")
        return self._files[kind].write_bytes(data, lines)

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

    def _rotated(self, path: Path) -> None:
        if self._sealer is not None:
            self._sealer.put(path)

    @property
    def files_sealed(self) -> int:
        """Data files whose ``seal`` callback has returned (0 without one)."""
        return self._sealer.sealed if self._sealer is not None else 0

    def wait_sealed(self, timeout: float | None = None) -> bool:
        """Wait until every file rotated away so far is sealed; False on timeout.

        The files still open are sealed at :meth:`close`. True at once without a ``seal``.
        """
        return self._sealer.wait(timeout) if self._sealer is not None else True

    def close(self, seal_timeout: float = SEAL_TIMEOUT_S) -> None:
        """Close the files, stamp the end time in the manifest and seal the last files.

        Waits up to ``seal_timeout`` seconds for their columnar copies (if ``seal`` was given).
        """
        last = [f.close() for f in self._files.values()]
        self.update_manifest(ended_at=time.time())
        if self._sealer is not None:
            for path in last:
                if path is not None:
                    self._sealer.put(path)
            self._sealer.finish(seal_timeout)
