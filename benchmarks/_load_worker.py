"""One loader in a fresh process: ``python -m benchmarks._load_worker LOADER DIR``.

Prints one JSON object: ``seconds`` (wall time of the load call only, imports excluded),
``cpu_s`` (CPU time of the process over the same call, all threads), ``rows`` and
``maxrss_mb`` (peak resident memory of this process, imports included). Each loader imports
only what it needs, so the peak is that loader's.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("traces-*.jsonl"))


def _sagellm(directory: Path, cache: bool) -> Callable[[], int]:
    from sagellm_obs.frames import load

    def go() -> int:
        frames = load(directory, cache=cache)
        if cache and not frames.from_cache:
            # A cold read that wrote the cache: a different measurement, flag it.
            print("not-from-cache", file=sys.stderr)
        return frames.spans.height

    return go


PHASES: dict[str, float] = {}


def _sagellm_phases(directory: Path) -> Callable[[], int]:
    """A cold load with the loader's stages timed (decode lines, build spans, build requests).

    Wraps private functions of ``sagellm_obs.frames.load``; stages it cannot find are left out.
    """
    import importlib

    from sagellm_obs.frames import load

    module = importlib.import_module("sagellm_obs.frames.load")
    for name in ("read_lines", "build_spans", "build_requests", "build_steps", "build_metrics"):
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


def _sagellm_cached(directory: Path) -> Callable[[], int]:
    from sagellm_obs.frames import load

    def go() -> int:
        frames = load(directory)
        if not frames.from_cache:
            raise RuntimeError("the Parquet cache was not used")
        return frames.spans.height

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
    "sagellm_cold": lambda d: _sagellm(d, cache=False),
    "sagellm_cache_write": lambda d: _sagellm(d, cache=True),
    "sagellm_cached": _sagellm_cached,
    "sagellm_phases": _sagellm_phases,
    "polars_ndjson": _polars_ndjson,
    "pyarrow_json": _pyarrow_json,
    "pandas_json": _pandas_json,
    "imports": _imports,
}


def main(argv: list[str]) -> int:
    name, directory = argv[0], Path(argv[1])
    go = LOADERS[name](directory)
    c0, t0 = time.process_time(), time.perf_counter()
    rows = go()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out: dict[str, Any] = {
        "loader": name,
        "seconds": seconds,
        "cpu_s": cpu,
        "rows": rows,
        "maxrss_mb": maxrss_mb,
    }
    if PHASES:
        out["phases"] = PHASES
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
