"""Reading a run folder while it is written: only the complete lines added since the last read.

:class:`Tail` keeps one cursor per data file (bytes consumed, next line number). Each
:meth:`Tail.poll` reads what was appended after the cursor up to the last newline, so a line
being written (a torn last line) waits for the next poll; a file that has rotated away is read to
its end, from its columnar copy when the store has sealed it. The rows land in a sliding window
(by time and by row count), so a day-long server can be watched in bounded memory. The run has
ended once its manifest says so; the poll that sees it reads the last lines.

>>> tail = Tail("sagellm-runs/<run id>", window_s=120)  # doctest: +SKIP
>>> tail.poll()  # rows added  # doctest: +SKIP
>>> tail.frames.steps  # the window's steps  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from sagellm_obs.frames import columnar, files
from sagellm_obs.frames.loaded import Frames
from sagellm_obs.frames.schemas import METRICS, SPANS, STEPS, TIME
from sagellm_obs.frames.sources import read_manifest
from sagellm_obs.frames.spans import requests_of
from sagellm_obs.store import layout
from sagellm_obs.store.reader import Errors, ReadReport

# The column a window is measured on, per part.
_TIME = {"spans": "start", "steps": "time", "metrics": "time", "client": "client_start_unix_nano"}
_SCHEMAS = {"spans": SPANS, "steps": STEPS, "metrics": METRICS, "client": files.CLIENT_ROWS}


STEP_TOTALS = ("prefix_queries", "prefix_hits", "preemptions", "generation_tokens")
"""Step counters :attr:`Tail.totals` sums since the start."""
_TOTALS = ("requests", "errors", *STEP_TOTALS)


@dataclass
class _Cursor:
    offset: int = 0  # bytes consumed: up to the end of the last complete line read
    line: int = 1  # number of the next line


class Tail:
    """The frames of a run folder that is still being written, read incrementally.

    Args:
        run_dir: The run folder (it may not hold any data file yet).
        window_s: Keep rows whose time is at most this many seconds before the newest row's
            (None: keep everything).
        max_rows: Keep at most this many rows of each frame (the newest).
        errors: ``"skip"`` (default: a live view must not stop on one bad line) or ``"raise"``.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        window_s: float | None = 300.0,
        max_rows: int | None = 500_000,
        errors: Errors = "skip",
    ) -> None:
        self.path = Path(run_dir)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no such run folder: {self.path}")
        self.window_s = window_s
        self.max_rows = max_rows
        self.errors: Errors = errors
        self.report = ReadReport()
        self.manifest: dict[str, Any] = {}
        self.ended = False
        """True once the manifest says the run closed and its last lines were read."""
        self.rows_read = 0
        """Rows read since the start (before the window dropped any)."""
        self.totals: dict[str, int] = dict.fromkeys(_TOTALS, 0)
        """Since the start (whatever the window kept): ``requests`` finished, ``errors`` (failed
        or cancelled) and the sums of the step counters in :data:`STEP_TOTALS`."""
        self.versions: dict[str, int] = dict.fromkeys(_SCHEMAS, 0)
        """Per frame of the window (``spans``, ``steps``…), a count bumped whenever its rows
        changed (rows added or dropped): a view redraws only what depends on a changed one."""
        self._cursors: dict[Path, _Cursor] = {}
        self._parts = {name: pl.DataFrame(schema=schema) for name, schema in _SCHEMAS.items()}
        self._frames: Frames | None = None
        self._requests: tuple[tuple[int, int], pl.DataFrame] | None = None

    def poll(self) -> int:
        """Read what was appended since the last poll; returns the number of rows added."""
        manifest = read_manifest(self.path) if layout.is_run_folder(self.path) else {}
        # Read after the manifest: once it says "ended", every line is on disk already.
        ended = manifest.get("ended_at") is not None
        self.manifest = manifest
        run_id = None if manifest.get("run_id") is None else str(manifest["run_id"])
        added = 0
        new: dict[str, list[pl.DataFrame]] = {name: [] for name in self._parts}
        for kind in layout.KINDS:
            if kind == layout.KV_EVENTS:  # not one of the window's frames
                continue
            found = layout.data_files(self.path, kind)
            for i, path in enumerate(found):
                rotated = i < len(found) - 1
                for name, df in self._read(path, rotated or ended, run_id).items():
                    if df.height:
                        new[name].append(df)
                        added += df.height
        if added:
            self._count(new)
            for name, parts in new.items():
                if parts:
                    self._parts[name] = pl.concat([self._parts[name], *parts], how="vertical")
                    self.versions[name] += 1
            # Steps in time order, as a load gives them (each file's chunk is sorted already).
            self._parts["steps"] = self._parts["steps"].sort("time", maintain_order=True)
            heights = {name: df.height for name, df in self._parts.items()}
            self._trim()
            for name, df in self._parts.items():
                if df.height != heights[name] and not new[name]:
                    self.versions[name] += 1
            self._frames = None
        self.rows_read += added
        self.ended = ended
        return added

    @property
    def frames(self) -> Frames:
        """The window's frames (``requests`` built from its spans and client rows)."""
        if self._frames is None:
            spans = self._parts["spans"]
            client = self._parts["client"]
            key = (self.versions["spans"], self.versions["client"])
            if self._requests is None or self._requests[0] != key:  # not when only steps moved
                lf = requests_of(spans.lazy(), client.lazy() if client.height else None)
                self._requests = (key, lf.collect())
            self._frames = Frames(
                spans=spans,
                requests=self._requests[1],
                steps=self._parts["steps"],
                metrics=self._parts["metrics"],
                manifest=self.manifest,
                report=self.report,
                source=self.path,
            )
        return self._frames

    def _count(self, new: dict[str, list[pl.DataFrame]]) -> None:
        if new["spans"]:
            # vLLM's llm_request span under another span (ours, whose chunk may be another)
            # is that request's, already counted: requests_of folds it into our row.
            nested = (pl.col("source") == "vllm") & pl.col("parent_span_id").is_not_null()
            req = requests_of(pl.concat(new["spans"]).lazy()).filter(~nested)
            done = req.select("error_type", "cancelled").collect()
            failed = pl.col("error_type").is_not_null() | pl.col("cancelled").fill_null(False)
            self.totals["requests"] += done.height
            self.totals["errors"] += done.filter(failed).height
        if new["steps"]:
            steps = pl.concat(new["steps"])
            for key in STEP_TOTALS:
                self.totals[key] += int(steps[key].sum() or 0)

    def _read(self, path: Path, complete: bool, run_id: str | None) -> dict[str, pl.DataFrame]:
        """The rows of ``path`` after its cursor (to its end when ``complete``)."""
        cursor = self._cursors.setdefault(path, _Cursor())
        size = path.stat().st_size
        if size <= cursor.offset:
            return {}
        kind = files.classify(path)
        if cursor.offset == 0 and complete:
            # A whole finished file: its columnar copy (built now if the store has not yet).
            rows = columnar.rows(path, kind, self.path, run_id=run_id, errors=self.errors)
            self.report.skipped.extend(rows.report.skipped)
            cursor.offset = size
            return {name: lf.collect() for name, lf in rows.frames.items()}
        with open(path, "rb") as fh:
            fh.seek(cursor.offset)
            data = fh.read(size - cursor.offset)
        if not complete:
            data = data[: data.rfind(b"\n") + 1]  # a line still being written waits
            if not data:
                return {}
        built, report = files.build_file(
            path,
            kind,
            self.path,
            run_id=run_id,
            errors=self.errors,
            data=data,
            first_line=cursor.line,
        )
        self.report.skipped.extend(report.skipped)
        cursor.offset += len(data)
        cursor.line += data.count(b"\n")
        return built

    def _trim(self) -> None:
        """Drop rows outside the window, and the oldest past ``max_rows``."""
        if self.window_s is not None:
            newest = [
                df[_TIME[name]].max()
                for name, df in self._parts.items()
                if df.height and name != "client"
            ]
            latest = max((t for t in newest if t is not None), default=None)
            if latest is not None:
                cut = latest - timedelta(seconds=self.window_s)  # type: ignore[operator]
                for name, col in _TIME.items():
                    self._parts[name] = self._parts[name].filter(pl.col(col).cast(TIME) >= cut)
        if self.max_rows is not None:
            for name, df in self._parts.items():
                if df.height > self.max_rows:
                    self._parts[name] = df.tail(self.max_rows)
