"""The run-folder format: file kinds, names, rotation and the columnar copies.

The one place that knows how a run folder is laid out; the writer (:mod:`~sagellm_obs.store.run`)
and every reader (frames, explore, summary, CLI) import these names instead of spelling them::

    <run>/manifest.json                  run id, start/end, config, versions, engine args
    <run>/traces-00001.jsonl             one OTLP/JSON ExportTraceServiceRequest per line
    <run>/metrics-00001.jsonl            one OTLP/JSON ExportMetricsServiceRequest per line
    <run>/steps-00001.jsonl              one engine-step record per line (keys in semconv.STEP_*)
    <run>/requests-client-00001.jsonl    client-side timings, when a client measured them
    <run>/kv-events-00001.jsonl          vLLM KV cache events, one sageLLM KVHookPayload per line
                                         (when the engine runs with kv_events on)
    <run>/columnar/traces-00001.spans.parquet    the frames' rows of one JSON-lines file
    <run>/columnar/traces-00001.metrics.parquet  (see sagellm_obs.frames.columnar)

The JSON-lines files are the source of truth (any OTLP tool reads them); the columnar copies are
derived from them and rebuilt when missing, stale or unreadable.
"""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST = "manifest.json"
"""The run's manifest, written atomically by the store."""

RUN_FORMAT = "sagellm-obs/run@1"
"""The ``format`` field of a manifest."""

TRACES, METRICS, STEPS, CLIENT = "traces", "metrics", "steps", "requests-client"
KV_EVENTS = "kv-events"
"""vLLM's KV cache events as sageLLM hook payloads (``metadata`` keys in ``semconv.KV_*``)."""
KINDS = (TRACES, METRICS, STEPS, CLIENT, KV_EVENTS)
"""The kinds of JSON-lines file a run folder holds, each rotating on its own."""

OTLP_KINDS = (TRACES, METRICS)
"""Kinds whose lines are OTLP/JSON export requests (the others are flat records)."""

SUFFIX = ".jsonl"
COLUMNAR_DIR = "columnar"
"""Sub-folder of the columnar (Parquet) copies."""

_NAME = re.compile(r"^(traces|metrics|steps|requests-client|kv-events)-(\d+)\.jsonl$")


def data_file(directory: Path, kind: str, index: int) -> Path:
    """The ``index``-th (1-based) file of ``kind`` in a run folder."""
    return directory / f"{kind}-{index:05d}{SUFFIX}"


def parse_name(name: str) -> tuple[str, int] | None:
    """``(kind, index)`` of a run-folder data file name, or None for any other name."""
    m = _NAME.match(name)
    return (m.group(1), int(m.group(2))) if m else None


def kind_of(name: str) -> str | None:
    """The kind of a run-folder data file name (by prefix, any suffix), or None."""
    for kind in sorted(KINDS, key=len, reverse=True):  # "requests-client" before shorter ones
        if name.startswith(f"{kind}-"):
            return kind
    return None


def data_files(directory: Path, kind: str) -> list[Path]:
    """The ``kind`` files of a run folder in write (rotation) order."""
    found = sorted(
        (parsed[1], p)
        for p in directory.glob(f"{kind}-*{SUFFIX}")
        if (parsed := parse_name(p.name))
    )
    return [p for _, p in found]


def is_run_folder(directory: Path) -> bool:
    """True when ``directory`` holds a manifest (a folder the store wrote)."""
    return (directory / MANIFEST).is_file()


def columnar_copy(data_path: Path, frame: str) -> Path:
    """Where the columnar copy of ``frame`` rows of one data file lives."""
    stem = data_path.name.removesuffix(SUFFIX)
    return data_path.parent / COLUMNAR_DIR / f"{stem}.{frame}.parquet"
