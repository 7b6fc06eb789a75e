"""A run as a timeline for ui.perfetto.dev and chrome://tracing (the JSON trace-event format).

One process per engine. Requests are slices on lanes: each request takes the first lane free at
its arrival, so concurrent requests sit on separate rows and a lane shows one request after
another; a request is a ``request`` slice (arrival to its last output) with its ``queue``,
``prefill`` and ``decode`` phases nested under it, arguments carrying its id, tokens and
latencies. Engine steps become counter tracks: KV-cache usage (percent), running and waiting
requests, and the prefix-cache hit rate of each step. Timestamps are microseconds since the
epoch (the format's unit), so the timeline shows wall-clock times.

The format: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
(``ph`` "X" complete events with ``ts``/``dur``, "C" counters, "M" metadata names).
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from sagellm_obs import semconv as sc
from sagellm_obs.frames.loaded import Frames

PHASES = ("queue", "prefill", "decode")
"""The request phases drawn as slices, in order (their ``<phase>_s`` request columns)."""
_PHASE_SPAN = dict(zip(PHASES, sc.PHASE_SPANS, strict=True))


def trace_events(frames: Frames) -> dict[str, Any]:
    """The JSON trace-event document of a run's frames (``{"traceEvents": [...]}``)."""
    events: list[dict[str, Any]] = []
    engines = _engines(frames)
    for engine, pid in engines.items():
        events.append(_meta("process_name", pid, 0, f"engine {engine}"))
    requests = frames.requests.filter(pl.col("arrival").is_not_null()).sort("arrival")
    phases = _phase_spans(frames.scan_spans())  # only the phase spans: not the whole frame
    named: set[tuple[int, int]] = set()
    for row, lane in _lanes(requests):
        pid = engines[_engine_of(row)]
        events.extend(_request_events(row, pid, lane, phases.get(row["span_id"], {})))
        if (pid, lane) not in named:
            named.add((pid, lane))
            events.append(_meta("thread_name", pid, lane, f"requests {lane}"))
    events.extend(_step_counters(frames.steps, engines))
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": _other(frames)}


def write_perfetto(frames: Frames, out: str | os.PathLike[str]) -> Path:
    """Write :func:`trace_events` of ``frames`` to ``out`` (JSON); returns the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(trace_events(frames), fh, separators=(",", ":"), allow_nan=False)
    return path


def _engines(frames: Frames) -> dict[str, int]:
    """Engine ids (requests' and steps') → process ids 1, 2, ... in name order."""
    ids = set(frames.requests["engine_id"].fill_null("unknown").to_list())
    ids |= set(frames.steps["engine_id"].fill_null("unknown").to_list())
    return {engine: i + 1 for i, engine in enumerate(sorted(ids or {"unknown"}))}


def _engine_of(row: dict[str, Any]) -> str:
    return str(row.get("engine_id") or "unknown")


def _us(t: Any) -> float:
    """A UTC datetime as epoch microseconds (the format's unit), nanoseconds kept as decimals."""
    return float(t.timestamp() * 1e6)


def _lanes(requests: pl.DataFrame) -> Iterator[tuple[dict[str, Any], int]]:
    """Each request with the lowest lane free at its arrival (per engine), in arrival order."""
    free: dict[str, list[int]] = {}
    busy: dict[str, list[tuple[float, int]]] = {}
    count: dict[str, int] = {}
    for row in requests.iter_rows(named=True):
        engine = _engine_of(row)
        start = _us(row["arrival"])
        end = start + 1e6 * float(row.get("e2e_s") or 0.0)
        ended, idle = busy.setdefault(engine, []), free.setdefault(engine, [])
        while ended and ended[0][0] <= start:
            heapq.heappush(idle, heapq.heappop(ended)[1])
        if idle:
            lane = heapq.heappop(idle)
        else:
            lane = count[engine] = count.get(engine, 0) + 1
        heapq.heappush(ended, (end, lane))
        yield row, lane


def _phase_spans(spans: pl.LazyFrame) -> dict[str, dict[str, tuple[float, float]]]:
    """Request span id → phase → (start µs, duration µs) of its phase child spans."""
    found = (
        spans.filter(
            pl.col("name").is_in(list(sc.PHASE_SPANS)) & pl.col("parent_span_id").is_not_null()
        )
        .select("parent_span_id", "name", "start", "duration_s")
        .collect()
    )
    out: dict[str, dict[str, tuple[float, float]]] = {}
    by_span = {span: phase for phase, span in _PHASE_SPAN.items()}
    for parent, name, start, seconds in found.iter_rows():
        out.setdefault(parent, {})[by_span[name]] = (_us(start), 1e6 * max(seconds or 0.0, 0.0))
    return out


def _request_events(
    row: dict[str, Any], pid: int, lane: int, spans: dict[str, tuple[float, float]]
) -> list[dict[str, Any]]:
    """The request's slice and its phases: where its phase spans say, else laid back to back
    so that decode ends with the request (the frontend's own time comes first)."""
    start = _us(row["arrival"])
    args = {
        key: row.get(key)
        for key in (
            "request_id",
            "trace_id",
            "model",
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "ttft_s",
            "tpot_s",
            "e2e_s",
            "finish_reason",
            "error_type",
        )
        if row.get(key) is not None
    }
    out = [
        {
            "name": "request",
            "cat": "request",
            "ph": "X",
            "ts": start,
            "dur": 1e6 * float(row.get("e2e_s") or 0.0),
            "pid": pid,
            "tid": lane,
            "args": args,
        }
    ]
    end = start + 1e6 * float(row.get("e2e_s") or 0.0)
    durations = {p: 1e6 * max(float(row[f"{p}_s"]), 0.0) for p in PHASES if row.get(f"{p}_s")}
    at = end - sum(durations.values())
    for phase in PHASES:
        if phase in spans:
            ts, dur = spans[phase]
        elif phase in durations:
            ts, dur = at, durations[phase]
        else:
            continue
        at = ts + dur
        out.append(
            {
                "name": phase,
                "cat": "phase",
                "ph": "X",
                "ts": ts,
                "dur": dur,
                "pid": pid,
                "tid": lane,
                "args": {"request_id": row.get("request_id")},
            }
        )
    return out


def _step_counters(steps: pl.DataFrame, engines: dict[str, int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in steps.sort("time").iter_rows(named=True):
        pid = engines[_engine_of(row)]
        ts = _us(row["time"])
        kv = row.get("kv_cache_usage")
        if kv is not None:
            out.append(_counter("KV-cache usage (%)", pid, ts, {"used": 100.0 * kv}))
        out.append(
            _counter(
                "requests",
                pid,
                ts,
                {"running": row.get("running") or 0, "waiting": row.get("waiting") or 0},
            )
        )
        rate = row.get("prefix_hit_rate")
        if rate is not None:
            out.append(_counter("prefix hit rate (%)", pid, ts, {"hit": 100.0 * rate}))
    return out


def _counter(name: str, pid: int, ts: float, values: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "cat": "engine", "ph": "C", "ts": ts, "pid": pid, "args": values}


def _meta(kind: str, pid: int, tid: int, name: str) -> dict[str, Any]:
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}


def _other(frames: Frames) -> dict[str, Any]:
    m = frames.manifest
    return {
        key: str(m[key]) for key in ("run_id", "model", "service_name") if m.get(key) is not None
    }
