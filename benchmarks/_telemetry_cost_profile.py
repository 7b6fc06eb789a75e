"""Where the CPU of :mod:`benchmarks.telemetry_cost`'s paths goes: one thread under cProfile.

:func:`profile_ours` profiles one drain of the full variant's pipeline, :func:`profile_vllm` the
vLLM-style span path; both summarise inclusive times of named parts and the top functions per
request.
"""

from __future__ import annotations

import cProfile
import gc
import pstats
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from benchmarks._records import make_record
from benchmarks._telemetry_cost_variants import SPANS_PER_BATCH, VllmStyle
from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.telemetry import AdvancedOptions, configure


class _Collect(SpanProcessor):
    """Keeps ended spans so they can be exported in the profiled thread."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


# (label, file suffix, function name): inclusive times; "  of which" rows are part of the row
# above, a row with an empty label adds to the one before it.
_OURS_PARTS: list[tuple[str, str, str]] = [
    ("attribute text (`request_attributes_text`)", "telemetry/attributes.py",
     "request_attributes_text"),
    ("  of which the template (`AttributesTemplate.fill`)", "store/otlp_text.py", "fill"),
    ("  of which prefix-block hashes", "telemetry/attributes.py", "prefix_block_hashes"),
    ("attribute dict (`request_attributes`; only as the fallback)", "telemetry/attributes.py",
     "request_attributes"),
    ("spans, direct (`RequestSpans._direct`)", "telemetry/direct_spans.py", "_direct"),
    ("  of which ids (`generate_*_id`)", "telemetry/ids.py", "generate_span_id"),
    ("", "telemetry/ids.py", "generate_trace_id"),
    ("  of which the spans' OTLP/JSON text (`RequestSpans._store`)", "telemetry/direct_spans.py",
     "_store"),
    ("metric points, pre-aggregated (`RequestMetrics.record`, 9 points)", "telemetry/aggregate.py",
     "record"),
    ("  of which histogram points (`_Hist.add`, 8)", "telemetry/aggregate.py", "add"),
    ("store line write (`SpanLines._write`: buffered pieces)", "store/otlp_text.py", "_write"),
]  # fmt: skip
_VLLM_PARTS: list[tuple[str, str, str]] = [
    ("context from os.environ (`_get_smart_context`)", "_telemetry_cost_variants.py",
     "_vllm_smart_context"),
    ("SDK span creation (`Tracer.start_span`)", "sdk/trace/__init__.py", "start_span"),
    ("`Span.set_attributes` (cleaning)", "sdk/trace/__init__.py", "set_attributes"),
    ("SDK span end (`Span.end`)", "sdk/trace/__init__.py", "end"),
    ("OTLP protobuf encoding (`encode_spans`)", "trace_encoder/__init__.py", "encode_spans"),
    ("`SerializeToString` (upb)", "~", "SerializeToString"),
]  # fmt: skip


def _cum(stats: dict[Any, Any], suffix: str, func: str) -> float:
    """Inclusive seconds of ``func`` in a file ending with ``suffix`` (``~``: a C function whose
    name contains ``func``). Same-named functions of one file nest in our list (``RunStore.write``
    calls ``_RotatingLines.write``), so the largest is taken rather than the sum."""
    best = 0.0
    for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.items():
        if (name == func and file.endswith(suffix)) or (file == suffix == "~" and func in name):
            best = max(best, ct)
    return best


def _short(key: tuple[str, int, str]) -> str:
    file, line, name = key
    if file == "~":
        return name
    parts = Path(file).parts
    tail = "/".join(parts[-2:]) if len(parts) >= 2 else file
    return f"{tail}:{line}({name})"


def _summarise(prof: cProfile.Profile, n: int, parts: list[tuple[str, str, str]]) -> dict[str, Any]:
    stats: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())
    rows: list[dict[str, Any]] = []
    for label, suffix, func in parts:
        us = _cum(stats, suffix, func) / n * 1e6
        if not label and rows:  # continuation: add to the previous row
            rows[-1]["us_profiled"] += us
            continue
        rows.append({"part": label, "us_profiled": us})
    for row in rows:
        row["share"] = row["us_profiled"] / (total / n * 1e6) if total else 0.0
    top = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:15]
    return {
        "requests": n,
        "profiled_us_per_request": total / n * 1e6,
        "parts": rows,
        "top_tottime": [
            {
                "function": _short(k),
                "calls_per_request": v[1] / n,
                "tottime_us": v[2] / n * 1e6,
                "cumtime_us": v[3] / n * 1e6,
            }
            for k, v in top
        ],
    }


def profile_ours(n: int, tmp: Path, anchor: ClockAnchor) -> dict[str, Any]:
    """The full variant's work in one thread under cProfile: one drain of ``n`` records.

    The store is on (its span lines are written by the drain); the periodic metric export is
    pushed out of the run (it is measured apart).
    """
    tel = configure(
        run_dir=tmp / "profile",
        otlp_endpoint=False,
        prometheus_port=False,
        engine_id="vllm-bench",
        make_current=False,
        advanced=AdvancedOptions(
            pipeline_interval=3600.0, metric_export_interval=3600.0, columnar_copies=False
        ),
    )
    try:
        for i in range(n):
            tel.pipeline.submit_request(make_record(anchor, i, tag="profile"))
        gc.collect()
        prof = cProfile.Profile()
        prof.enable()
        tel.pipeline._drain(write_all=True)
        prof.disable()
        if not tel.pipeline.spans.direct:
            raise RuntimeError("the profiled pipeline did not take its direct way")
    finally:
        tel.shutdown()
    return _summarise(prof, n, _OURS_PARTS)


def profile_vllm(n: int, anchor: ClockAnchor) -> dict[str, Any]:
    """The vLLM-style path in one thread under cProfile: ``n`` spans, exported in full batches."""
    collect = _Collect()
    v = VllmStyle(collect)
    records = [make_record(anchor, i, tag="profile-vllm") for i in range(n)]
    try:
        gc.collect()
        prof = cProfile.Profile()
        prof.enable()
        for r in records:
            v.submit(r)
        for k in range(0, len(collect.spans), SPANS_PER_BATCH):
            v.exporter.export(collect.spans[k : k + SPANS_PER_BATCH])
        prof.disable()
    finally:
        v.close()
    return _summarise(prof, n, _VLLM_PARTS)
