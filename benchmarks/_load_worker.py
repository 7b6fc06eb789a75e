"""One loader in a fresh process: ``python -m benchmarks._load_worker LOADER DIR``.

Prints one JSON object: ``seconds`` (wall time of the load call only, imports excluded),
``cpu_s`` (CPU time of the process over the same call, all threads), ``rows`` and
``maxrss_mb`` (peak resident memory of this process, imports included). Each loader imports
only what it needs, so the peak is that loader's. A loader that finds the run folder not as it
expects (``sagellm_first`` without the store's copies) exits non-zero with the reason.
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NOT_FROM_COPIES = "not from the columnar copies"
"""In the error of ``sagellm_first``/``sagellm_lazy_ttft`` when a copy had to be rebuilt."""

EXTRA: dict[str, Any] = {}
"""More figures for the output line (per-file seal times, stages, query results)."""

AFTER: list[Callable[[], None]] = []
"""Run after the timed call (restoring the folder a loader changed)."""


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("traces-*.jsonl"))


def _data_files(directory: Path) -> list[Path]:
    from sagellm_obs.store import layout

    return [p for kind in layout.KINDS for p in layout.data_files(directory, kind)]


def _sagellm_cold(directory: Path) -> Callable[[], int]:
    from sagellm_obs.frames import load

    def go() -> int:
        return load(directory, cache=False).spans.height

    return go


def _sagellm_seal(directory: Path) -> Callable[[], int]:
    """What the store's sealing thread does with each file: one after the other, its copies."""
    import polars as pl

    from sagellm_obs.frames.columnar import write_copies
    from sagellm_obs.store import layout

    data = _data_files(directory)
    shutil.rmtree(directory / layout.COLUMNAR_DIR, ignore_errors=True)

    def go() -> int:
        per_file = []
        for path in data:
            t0 = time.perf_counter()
            write_copies(path)
            per_file.append(time.perf_counter() - t0)
        EXTRA["files_s"] = per_file
        # Footers only: a few ms, so counted in the time rather than made a second step.
        copies = [layout.columnar_copy(p, "spans") for p in data]
        return int(
            pl.scan_parquet([c for c in copies if c.is_file()]).select(pl.len()).collect().item()
        )

    return go


def _check_fresh(rebuilt: list[tuple[str, str]], from_cache: bool) -> None:
    if rebuilt or not from_cache:
        raise RuntimeError(f"{NOT_FROM_COPIES}: rebuilt {rebuilt[:3]} (from_cache={from_cache})")


def _arrow_bytes(df: Any) -> dict[str, int]:
    """Bytes of each column's buffers as polars holds them (string views included, which
    ``estimated_size`` leaves out), read through zero-copy Arrow exports."""
    import polars as pl

    return {
        col: int(df[col].to_arrow(compat_level=pl.CompatLevel.newest()).get_total_buffer_size())
        for col in df.columns
    }


def _sagellm_first(directory: Path) -> Callable[[], int]:
    """The first load of a run folder the store sealed: every file from its copies, the spans
    frame deferred (``load``'s default: collected on first access of ``.spans``).

    After the timed call (and the peak taken), the spans are loaded and the bytes of the spans
    and requests frames per column go to the output line.
    """
    import polars as pl

    from sagellm_obs.frames import load

    held: list[Any] = []

    def sizes() -> None:
        if held:
            f = held.pop()
            EXTRA["frame_bytes"] = {
                name: _arrow_bytes(df)
                for name, df in (("spans", f.spans), ("requests", f.requests))
            }
            EXTRA["frame_rows"] = {"spans": f.spans.height, "requests": f.requests.height}

    AFTER.append(sizes)

    def go() -> int:
        frames = load(directory)
        _check_fresh(frames.rebuilt, frames.from_cache)
        if frames.spans_loaded:
            raise RuntimeError("load() collected the spans: this loader measures their deferral")
        held.append(frames)
        # Parquet footers only (a few ms): the spans the load covers, without loading them.
        return int(frames.scan_spans().select(pl.len()).collect().item())

    return go


def _sagellm_first_spans(directory: Path) -> Callable[[], int]:
    """The first load and then the first access of ``.spans`` (a drill-down): what a session
    that needs the spans pays, in time and peak memory."""
    from sagellm_obs.frames import load

    def go() -> int:
        frames = load(directory)
        _check_fresh(frames.rebuilt, frames.from_cache)
        return int(frames.spans.height)

    return go


def _sagellm_rebuild(directory: Path) -> Callable[[], int]:
    """A load that finds no copies (a run killed before sealing): builds and writes them all.

    The store's copies are moved aside first and put back afterwards, so the other loaders keep
    reading what the store wrote.
    """
    from sagellm_obs.frames import load
    from sagellm_obs.store import layout

    copies = directory / layout.COLUMNAR_DIR
    aside = directory / f".{layout.COLUMNAR_DIR}-sealed"
    if copies.is_dir():
        copies.rename(aside)

    def restore() -> None:
        if aside.is_dir():
            shutil.rmtree(copies, ignore_errors=True)
            aside.rename(copies)

    AFTER.append(restore)

    def go() -> int:
        frames = load(directory)
        EXTRA["rebuilt_files"] = len(frames.rebuilt)
        return frames.spans.height

    return go


def _sagellm_lazy_ttft(directory: Path) -> Callable[[], int]:
    """A notebook's aggregate over the copies: p50/p99 TTFT per minute of arrival, collected."""
    import polars as pl

    from sagellm_obs.frames import scan

    def go() -> int:
        s = scan(directory)
        _check_fresh(s.rebuilt, s.from_cache)
        per_minute = (
            s.requests.group_by(pl.col("arrival").dt.truncate("1m").alias("minute"))
            .agg(
                pl.col("ttft_s").quantile(0.5).alias("p50"),
                pl.col("ttft_s").quantile(0.99).alias("p99"),
                pl.len().alias("requests"),
            )
            .sort("minute")
            .collect()
        )
        EXTRA["requests"] = int(per_minute["requests"].sum())
        return per_minute.height

    return go


PHASES: dict[str, float] = {}


def _sagellm_phases(directory: Path) -> Callable[[], int]:
    """A cold load with the loader's stages timed (decode lines, build spans).

    Wraps functions as ``sagellm_obs.frames.files`` calls them; stages it cannot find are left
    out.
    """
    import importlib

    from sagellm_obs.frames import load

    module = importlib.import_module("sagellm_obs.frames.files")
    for name in ("read_lines", "build_spans"):
        inner = getattr(module, name, None)
        if inner is None:
            continue

        def timed(*args: Any, _inner: Any = inner, _name: str = name, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _inner(*args, **kwargs)
            finally:
                PHASES[_name] = PHASES.get(_name, 0.0) + time.perf_counter() - t0
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                PHASES[f"{_name}_peak_mb"] = rss

        setattr(module, name, timed)

    def go() -> int:
        return load(directory, cache=False).spans.height

    return go


def _polars_ndjson(directory: Path) -> Callable[[], int]:
    import polars as pl

    files = _files(directory)

    def go() -> int:
        # The floor: parsed into nested structs, one row per line, nothing flattened.
        return pl.read_ndjson(files).height

    return go


def _pyarrow_json(directory: Path) -> Callable[[], int]:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.json as pj  # type: ignore[import-untyped]

    files = _files(directory)

    def go() -> int:
        tables = [pj.read_json(f, read_options=pj.ReadOptions(block_size=1 << 26)) for f in files]
        return int(pa.concat_tables(tables).num_rows)

    return go


def _value(v: dict[str, Any]) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return v["doubleValue"]
    if "boolValue" in v:
        return v["boolValue"]
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    return None


def _pandas_json(directory: Path) -> Callable[[], int]:
    """What users write today: json.loads per line, walk the nesting, a list of dicts, pandas."""
    import pandas as pd  # type: ignore[import-untyped]

    files = _files(directory)

    def go() -> int:
        rows: list[dict[str, Any]] = []
        for path in files:
            with open(path) as fh:
                for line in fh:
                    obj = json.loads(line)
                    for rs in obj.get("resourceSpans", []):
                        res = {
                            a["key"]: _value(a["value"])
                            for a in rs.get("resource", {}).get("attributes", [])
                        }
                        for ss in rs.get("scopeSpans", []):
                            for sp in ss.get("spans", []):
                                row: dict[str, Any] = {
                                    "trace_id": sp["traceId"],
                                    "span_id": sp["spanId"],
                                    "parent_span_id": sp.get("parentSpanId"),
                                    "name": sp["name"],
                                    "kind": sp.get("kind"),
                                    "start": int(sp["startTimeUnixNano"]),
                                    "end": int(sp["endTimeUnixNano"]),
                                    "service_name": res.get("service.name"),
                                }
                                for a in sp.get("attributes", []):
                                    row[a["key"]] = _value(a["value"])
                                rows.append(row)
        df = pd.DataFrame(rows)
        df["start"] = pd.to_datetime(df["start"], unit="ns", utc=True)
        df["end"] = pd.to_datetime(df["end"], unit="ns", utc=True)
        df["duration_s"] = (df["end"] - df["start"]).dt.total_seconds()
        return len(df)

    return go


def _imports(directory: Path) -> Callable[[], int]:
    import pandas  # noqa: F401
    import polars  # noqa: F401
    import pyarrow.json  # noqa: F401

    import sagellm_obs.frames  # noqa: F401

    return lambda: 0


LOADERS: dict[str, Callable[[Path], Callable[[], int]]] = {
    "sagellm_cold": _sagellm_cold,
    "sagellm_seal": _sagellm_seal,
    "sagellm_first": _sagellm_first,
    "sagellm_first_spans": _sagellm_first_spans,
    "sagellm_rebuild": _sagellm_rebuild,
    "sagellm_lazy_ttft": _sagellm_lazy_ttft,
    "sagellm_phases": _sagellm_phases,
    "polars_ndjson": _polars_ndjson,
    "pyarrow_json": _pyarrow_json,
    "pandas_json": _pandas_json,
    "imports": _imports,
}


def main(argv: list[str]) -> int:
    name, directory = argv[0], Path(argv[1])
    go = LOADERS[name](directory)
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        rows = go()
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
    finally:
        # The peak of the load itself, before what runs after it.
        maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for undo in AFTER:
            undo()
    out: dict[str, Any] = {
        "loader": name,
        "seconds": seconds,
        "cpu_s": cpu,
        "rows": rows,
        "maxrss_mb": maxrss_mb,
    }
    if PHASES:
        out["phases"] = PHASES
    out.update(EXTRA)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
