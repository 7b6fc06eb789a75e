""":class:`Frames`: the collected frames of a load, with the spans frame collected on first use.

The spans frame is the largest (one row per span, four per request: about 80% of a loaded run's
memory) and the least used (drill-down into one request's trace), so :meth:`Scan.collect
<sagellm_obs.frames.load.Scan.collect>` leaves it as a LazyFrame until ``frames.spans`` is first
read. Frames built from DataFrames behave as before.
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any

import polars as pl

from sagellm_obs.frames.schemas import FRAME_NAMES, KV_EVENTS, RUNS, SPANS, check_schema
from sagellm_obs.store.layout import MANIFEST
from sagellm_obs.store.reader import ReadReport


class _DeferredSpans:
    """A spans LazyFrame collected (and schema-checked) once, on first use.

    Shared by the :class:`Frames` made from one another (:meth:`Frames.replace`), so a view of a
    run never reads its spans a second time.
    """

    def __init__(self, lazy: pl.LazyFrame) -> None:
        self.lazy: pl.LazyFrame | None = lazy
        self.df: pl.DataFrame | None = None
        # A notebook may touch .spans from a widget's thread and a cell at once: one collect.
        self.lock = threading.Lock()

    def get(self) -> pl.DataFrame:
        with self.lock:
            if self.df is None:
                assert self.lazy is not None
                self.df = check_schema(self.lazy.collect(), SPANS, "spans")
                # The plan may hold in-memory per-file frames (a JSON source): let them go.
                self.lazy = None
            return self.df

    def scan(self) -> pl.LazyFrame:
        with self.lock:
            if self.df is not None:
                return self.df.lazy()
            assert self.lazy is not None
            return self.lazy


class Frames:
    """The frames of one or many sources. See :mod:`sagellm_obs.frames.schemas` for columns.

    :func:`~sagellm_obs.frames.load` collects ``requests``, ``steps``, ``metrics`` and
    ``kv_events`` at once; ``spans`` is read from the sources when first accessed (then kept),
    unless loaded with ``spans="eager"``. ``Frames(spans=<DataFrame>, ...)`` holds the spans
    given; a ``pl.LazyFrame`` there is deferred the same way.

    Attributes:
        spans: One row per span (collected on first access when deferred; see
            :attr:`spans_loaded` and :meth:`scan_spans`).
        requests: One row per request span, with client timings when recorded.
        steps: One row per engine step.
        metrics: One row per metric data point (long format).
        manifest: The run's ``manifest.json`` (empty when there is none, or several sources).
        report: What was skipped: torn last lines, bad lines and sources with ``errors="skip"``.
        source: Where the frames were loaded from (the first source of several).
        from_cache: True when every source was read from Parquet (columnar copies or cache).
        runs: One row per source (:data:`~sagellm_obs.frames.schemas.RUNS`).
        rebuilt: ``(file, why)`` for each columnar copy this load had to build from the JSON.
        kv_events: One row per block per vLLM KV cache event
            (:data:`~sagellm_obs.frames.schemas.KV_EVENTS`): from the kv-events files of run
            folders (engines started with ``kv_events=True``) and of other JSON folders, and
            from Parquet directories written by :meth:`save`. An OTLP export or a ClickHouse
            source has no KV events: the frame is empty (typed). Not in :meth:`frames`.
    """

    __hash__ = None  # type: ignore[assignment]  # mutable, and compared by content

    def __init__(
        self,
        spans: pl.DataFrame | pl.LazyFrame,
        requests: pl.DataFrame,
        steps: pl.DataFrame,
        metrics: pl.DataFrame,
        manifest: dict[str, Any] | None = None,
        report: ReadReport | None = None,
        source: Path | None = None,
        from_cache: bool = False,
        runs: pl.DataFrame | None = None,
        rebuilt: list[tuple[str, str]] | None = None,
        kv_events: pl.DataFrame | None = None,
    ) -> None:
        self._spans: pl.DataFrame | _DeferredSpans
        self.spans = spans
        self.requests = requests
        self.steps = steps
        self.metrics = metrics
        self.manifest: dict[str, Any] = {} if manifest is None else manifest
        self.report = ReadReport() if report is None else report
        self.source = source
        self.from_cache = from_cache
        self.runs = pl.DataFrame(schema=RUNS) if runs is None else runs
        self.rebuilt: list[tuple[str, str]] = [] if rebuilt is None else rebuilt
        self.kv_events = pl.DataFrame(schema=KV_EVENTS) if kv_events is None else kv_events

    @property
    def spans(self) -> pl.DataFrame:
        """One row per span; a deferred frame is collected here, once (several GB at 10M spans)."""
        if isinstance(self._spans, _DeferredSpans):
            return self._spans.get()
        return self._spans

    @spans.setter
    def spans(self, value: pl.DataFrame | pl.LazyFrame) -> None:
        self._spans = _DeferredSpans(value) if isinstance(value, pl.LazyFrame) else value

    @property
    def spans_loaded(self) -> bool:
        """False while the spans frame is deferred (not read from the sources yet)."""
        return not isinstance(self._spans, _DeferredSpans) or self._spans.df is not None

    def scan_spans(self) -> pl.LazyFrame:
        """The spans as a LazyFrame, without loading them: a query on it reads only the rows and
        columns it needs (pushed down to the Parquet reader), and loads nothing into ``spans``.
        Once the spans are loaded, it is a LazyFrame over them."""
        if isinstance(self._spans, _DeferredSpans):
            return self._spans.scan()
        return self._spans.lazy()

    def replace(self, **changes: Any) -> Frames:
        """A copy with some attributes replaced (as ``dataclasses.replace``); deferred spans are
        shared with the copy: whichever reads them first, both keep the one frame."""
        unknown = set(changes) - set(_ATTRIBUTES)
        if unknown:
            raise TypeError(f"Frames has no attribute(s) {sorted(unknown)}")
        out = copy.copy(self)  # shallow, as dataclasses.replace: shares the deferred spans
        for name, value in changes.items():
            setattr(out, name, value)
        return out

    def frames(self) -> dict[str, pl.DataFrame]:
        """The four frames by name (loads the spans when deferred)."""
        return {name: getattr(self, name) for name in FRAME_NAMES}

    def save(self, directory: str | Path) -> Path:
        """Write ``<name>.parquet`` per frame (the four and ``kv_events``) and ``manifest.json``
        into ``directory``.

        :func:`~sagellm_obs.frames.load` reads such a directory back.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name, df in {**self.frames(), "kv_events": self.kv_events}.items():
            df.write_parquet(out / f"{name}.parquet")
        (out / MANIFEST).write_text(json.dumps(self.manifest, indent=2, default=str) + "\n")
        return out

    def __eq__(self, other: object) -> bool:
        """Same frames (by content; loads deferred spans) and the same load details."""
        if not isinstance(other, Frames):
            return NotImplemented
        for name in _ATTRIBUTES:
            a, b = getattr(self, name), getattr(other, name)
            same = a.equals(b) if isinstance(a, pl.DataFrame) else a == b
            if not same:
                return False
        return True

    def __repr__(self) -> str:
        # Never collects: a repr in a notebook must not read gigabytes of spans.
        if self.spans_loaded:
            spans = f"{self.spans.height:,} rows"
        else:
            spans = "not loaded yet (read on first access of .spans)"
        parts = [
            f"source={str(self.source)!r}",
            f"spans: {spans}",
            *(f"{n}: {getattr(self, n).height:,} rows" for n in _COUNTED),
            f"runs: {self.runs.height}",
            f"from_cache={self.from_cache}",
        ]
        return f"Frames({', '.join(parts)})"


_COUNTED = ("requests", "steps", "metrics", "kv_events")
_ATTRIBUTES = (
    *FRAME_NAMES,
    "manifest",
    "report",
    "source",
    "from_cache",
    "runs",
    "rebuilt",
    "kv_events",
)
"""The constructor's arguments, in order (what :meth:`Frames.replace` and ``==`` go over)."""
