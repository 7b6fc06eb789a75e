"""Fixture builders for the frames tests: real-writer runs and hand-made OTLP/JSON lines."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagellm_obs import semconv as sc
from sagellm_obs.store.otlp_json import any_value
from sagellm_obs.telemetry import AdvancedOptions, RequestRecord, Telemetry, configure
from sagellm_obs.testing import make_record as make_record

T0 = 1_700_000_000_000_000_000  # an epoch in nanoseconds for hand-made lines


# --- real writer ------------------------------------------------------------------------------


def step_record(
    i: int, time_ns: int, *, queries: int = 100, hits: int = 25, engine_id: str = "engine-test"
) -> dict[str, Any]:
    """One engine-step record with the keys of ``semconv.STEP_*``."""
    return {
        sc.STEP_TIME_UNIX_NANO: time_ns,
        sc.STEP_ENGINE_ID: engine_id,
        sc.STEP_INDEX: i,
        sc.STEP_RUNNING: 2,
        sc.STEP_WAITING: i % 3,
        sc.STEP_KV_USAGE: 0.25,
        sc.STEP_PREFIX_QUERIES: queries,
        sc.STEP_PREFIX_HITS: hits,
        sc.STEP_PROMPT_TOKENS: queries,
        sc.STEP_CACHED_PROMPT_TOKENS: hits,
        sc.STEP_GENERATION_TOKENS: 1,
        sc.STEP_PREEMPTIONS: 0,
        sc.STEP_FINISHED: 0,
    }


@dataclass
class WrittenRun:
    """A run folder written by the real telemetry, and what was submitted to it."""

    path: Path
    run_id: str
    records: dict[str, RequestRecord] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)


def write_run(
    path: Path,
    batches: Sequence[Sequence[Mapping[str, Any]]],
    *,
    store_max_bytes: int | None = None,
    engine_id: str = "engine-test",
    columnar_copies: bool = True,
) -> WrittenRun:
    """Drive the real writer: one flush (one metrics line) per batch of record overrides.

    Each batch is a list of ``make_record`` keyword overrides (``i`` required). Three step
    records are submitted per batch. ``engine_id`` names the engine of the spans and steps.
    """
    advanced = AdvancedOptions(
        simple_processors=True, metric_export_interval=3600.0, columnar_copies=columnar_copies
    )
    if store_max_bytes is not None:
        advanced.store_max_bytes = store_max_bytes
    tel = configure(
        run_dir=path,
        make_current=False,
        otlp_endpoint=False,
        engine_id=engine_id,
        advanced=advanced,
    )
    assert tel.store is not None
    run = WrittenRun(path=path, run_id=tel.store.run_id)
    anchor = tel.pipeline.anchor
    step = 0
    try:
        for batch in batches:
            for overrides in batch:
                kw = dict(overrides)
                record = make_record(anchor, kw.pop("i"), **kw)
                run.records[record.request_id] = record
                tel.pipeline.submit_request(record)
            for _ in range(3):
                step += 1
                s = step_record(
                    step, int(anchor.wall_s * 1e9) + step * 10_000_000, engine_id=engine_id
                )
                run.steps.append(s)
                tel.pipeline.submit_step(s)
            assert tel.flush(timeout=10)
    finally:
        tel.shutdown()
    return run


@dataclass
class LiveRun:
    """A run being written: ``batch()`` submits requests and steps and flushes them."""

    tel: Telemetry
    path: Path
    requests: int = 0
    steps: int = 0
    ids: list[str] = field(default_factory=list)

    def batch(self, n: int = 2, *, steps: int = 3) -> None:
        anchor = self.tel.pipeline.anchor
        for _ in range(n):
            record = make_record(anchor, self.requests)
            self.ids.append(record.request_id)
            self.tel.pipeline.submit_request(record)
            self.requests += 1
        for _ in range(steps):
            self.steps += 1
            t = int(anchor.wall_s * 1e9) + self.steps * 10_000_000
            self.tel.pipeline.submit_step(step_record(self.steps, t))
        assert self.tel.flush(timeout=10)


def live_run(path: Path, *, store_max_bytes: int | None = None) -> LiveRun:
    """Start writing a run folder with the real writer (shut ``.tel`` down to end it)."""
    options: dict[str, Any] = {"store_max_bytes": store_max_bytes} if store_max_bytes else {}
    tel = configure(
        run_dir=path,
        make_current=False,
        otlp_endpoint=False,
        advanced=AdvancedOptions(simple_processors=True, metric_export_interval=3600.0, **options),
    )
    assert tel.run_dir is not None
    return LiveRun(tel, tel.run_dir)


# --- hand-made OTLP/JSON lines ------------------------------------------------------------------


def kvs(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OTLP KeyValue list of ``attributes``."""
    return [{"key": k, "value": any_value(v)} for k, v in attributes.items()]


def span(
    trace_id: str,
    span_id: str,
    name: str,
    *,
    parent: str | None = None,
    kind: int = 1,
    start_ns: int = T0,
    duration_ns: int = 1_000_000,
    attributes: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One OTLP/JSON span."""
    out: dict[str, Any] = {"traceId": trace_id, "spanId": span_id}
    if parent is not None:
        out["parentSpanId"] = parent
    out.update(
        name=name,
        kind=kind,
        startTimeUnixNano=str(start_ns),
        endTimeUnixNano=str(start_ns + duration_ns),
        attributes=kvs(attributes or {}),
        status=dict(status or {}),
    )
    out.update(extra)
    return out


def resource(
    service: str = "svc", engine_id: str | None = "engine-x", run_id: str | None = None
) -> dict[str, Any]:
    attrs: dict[str, Any] = {"service.name": service}
    if engine_id is not None:
        attrs[sc.RESOURCE_ENGINE_ID] = engine_id
    if run_id is not None:
        attrs[sc.RESOURCE_RUN_ID] = run_id
    return {"attributes": kvs(attrs)}


def traces_line(
    spans: Iterable[dict[str, Any]], *, res: dict[str, Any] | None = None, scope: str = "test"
) -> dict[str, Any]:
    """An ExportTraceServiceRequest with one resource and one scope."""
    return {
        "resourceSpans": [
            {
                "resource": res or resource(),
                "scopeSpans": [{"scope": {"name": scope}, "spans": list(spans)}],
            }
        ]
    }


def sum_metric(
    name: str,
    points: Iterable[tuple[int, float]],
    *,
    start_ns: int = T0,
    attributes: Mapping[str, Any] | None = None,
    monotonic: bool = True,
    temporality: int | str = 2,
) -> dict[str, Any]:
    """A sum metric with ``(time_ns, value)`` points (integers as asInt, floats as asDouble)."""
    dps = []
    for t, v in points:
        dp: dict[str, Any] = {
            "startTimeUnixNano": str(start_ns),
            "timeUnixNano": str(t),
            "attributes": kvs(attributes or {}),
        }
        if isinstance(v, int):
            dp["asInt"] = str(v)
        else:
            dp["asDouble"] = v
        dps.append(dp)
    return {
        "name": name,
        "unit": "1",
        "sum": {
            "dataPoints": dps,
            "aggregationTemporality": temporality,
            "isMonotonic": monotonic,
        },
    }


def histogram_metric(
    name: str,
    points: Iterable[tuple[int, Sequence[int], float]],
    bounds: Sequence[float],
    *,
    start_ns: int = T0,
    attributes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A cumulative histogram with ``(time_ns, bucket_counts, sum)`` points."""
    dps = [
        {
            "startTimeUnixNano": str(start_ns),
            "timeUnixNano": str(t),
            "count": str(sum(counts)),
            "sum": total,
            "bucketCounts": [str(c) for c in counts],
            "explicitBounds": list(bounds),
            "attributes": kvs(attributes or {}),
        }
        for t, counts, total in points
    ]
    return {
        "name": name,
        "unit": "s",
        "histogram": {"dataPoints": dps, "aggregationTemporality": 2},
    }


def metrics_line(
    metrics: Iterable[dict[str, Any]], *, res: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An ExportMetricsServiceRequest with one resource and one scope."""
    return {
        "resourceMetrics": [
            {
                "resource": res or resource(),
                "scopeMetrics": [{"scope": {"name": "test"}, "metrics": list(metrics)}],
            }
        ]
    }


def write_lines(path: Path, objects: Iterable[Any], *, end: str = "\n") -> Path:
    """Write one compact JSON line per object (strings are written as given)."""
    text = "".join(
        (o if isinstance(o, str) else json.dumps(o, separators=(",", ":"))) + "\n" for o in objects
    )
    path.write_text(text if end == "\n" else text[:-1] + end)
    return path


def hex_id(i: int, digits: int) -> str:
    return f"{i:0{digits}x}"
