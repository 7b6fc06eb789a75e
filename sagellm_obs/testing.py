"""Test helpers for code that uses sagellm-obs: record builders and an in-memory capture.

Use the capture as a pytest fixture (like logfire's ``capfire``), after registering the plugin in
a ``conftest.py``::

    pytest_plugins = ["sagellm_obs.testing"]


    def test_one_request(sagellm_capture):
        sagellm_capture.submit(make_record(sagellm_capture.anchor, 0))
        (span,) = sagellm_capture.spans(name="text_completion tiny-model")
        assert sagellm_capture.metric_names() >= {"gen_ai.server.time_to_first_token"}

It runs the real :func:`~sagellm_obs.telemetry.configure` with the :class:`AdvancedOptions` test
seams (an in-memory span exporter, an ``InMemoryMetricReader``, synchronous span processors,
deterministic ids) and a run folder in ``tmp_path``, whose ``steps-*.jsonl`` are the steps sink.
Importing this module loads neither vllm, torch nor altair.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from sagellm_obs import semconv as sc
from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.telemetry import AdvancedOptions, Telemetry, configure
from sagellm_obs.telemetry.records import RequestRecord

__all__ = [
    "Capture",
    "CountingIds",
    "deterministic_telemetry",
    "make_record",
    "sagellm_capture",
    "synthetic_run",
]


def make_record(
    anchor: ClockAnchor,
    i: int,
    *,
    model: str = "tiny-model",
    operation: str = sc.OP_TEXT_COMPLETION,
    queue: float = 0.002,
    prefill: float = 0.015,
    decode: float = 0.12,
    output_tokens: int = 9,
    **overrides: Any,
) -> RequestRecord:
    """A finished request whose engine-monotonic stamps agree with ``anchor`` and its durations.

    Arrival is ``10 s - i * 50 ms`` before the anchor's monotonic reading; then 1 ms to the
    engine queue, ``queue`` waiting, ``prefill`` to the first token, ``decode`` to the last, and
    1 ms to the final output at the frontend.
    """
    arrival_mono = anchor.mono_s - 10.0 + i * 0.05
    queued = arrival_mono + 0.001
    scheduled = queued + queue
    first = scheduled + prefill
    last = first + decode
    fields: dict[str, Any] = {
        "request_id": f"req-{i}",
        "trace_id": f"proto-trace-{i}",
        "engine_id": "engine-test",
        "model": model,
        "operation": operation,
        "arrival_time": anchor.to_epoch(arrival_mono),
        "queued_ts": queued,
        "scheduled_ts": scheduled,
        "first_token_ts": first,
        "last_token_ts": last,
        "ttft": first - arrival_mono,
        "e2e": last - arrival_mono + 0.001,
        "queue": queue,
        "prefill": prefill,
        "decode": decode,
        "inference": last - scheduled,
        "tpot": decode / (output_tokens - 1) if output_tokens > 1 else 0.0,
        "prompt_tokens": 40 + i,
        "output_tokens": output_tokens,
        "cached_tokens": 16,
        "kv_tokens": 40 + i + output_tokens,
        "kv_bytes": (40 + i + output_tokens) * 1024,
        "max_tokens": 32,
        "temperature": 0.7,
        "top_p": 0.9,
        "stream": bool(i % 2),
    }
    fields.update(overrides)
    return RequestRecord(**fields)


class CountingIds(IdGenerator):
    """Deterministic ids: two telemetries draw the same sequence if they ask in the same order."""

    def __init__(self) -> None:
        self.n = 0

    def generate_span_id(self) -> int:
        self.n += 1
        return 0x5A00_0000_0000_0000 + self.n

    def generate_trace_id(self) -> int:
        self.n += 1
        return (0x7E00_0000_0000_0000 << 64) + self.n * 0x0123_4567_89AB_CDEF


def deterministic_telemetry(run_dir: Path, **advanced: Any) -> Telemetry:
    """Telemetry for a test: deterministic ids, fixed names, no OTLP, no timers.

    Two of them given the same records write the same spans (one side of a two-way comparison).

    ``advanced`` sets further :class:`AdvancedOptions` (readers, exporters, switches).
    """
    return configure(
        run_dir=run_dir,
        run_id="run-compare",
        engine_id="engine-test",
        service_name="compare",
        otlp_endpoint=False,
        advanced=AdvancedOptions(
            metric_export_interval=3600,
            span_batch_delay=0.05,
            id_generator=CountingIds(),
            **advanced,
        ),
        make_current=False,
    )


def synthetic_run(
    run_dir: Path,
    n: int = 40,
    *,
    seed: int = 0,
    slowdown: float = 1.0,
    models: Sequence[str] = ("tiny-test",),
    engines: Sequence[str] = ("engine-test",),
    prefix: str = "req",
    cancelled: frozenset[int] = frozenset(),
    failed: frozenset[int] = frozenset(),
    gap_s: float = 0.2,
    step_s: float = 0.1,
    steps: bool = True,
) -> Path:
    """A run folder written by the real telemetry pipeline from ``n`` seeded, finished requests.

    Request ``i`` (``f"{prefix}-{i:03d}"``, model and engine round-robin) arrives ``gap_s * i``
    seconds after the first, ends a few seconds before now, and waits, prefills and decodes for
    seeded durations (times ``slowdown``); its engine-monotonic stamps come from the pipeline's
    own clock anchor, so the stored spans hold exactly those durations. Indexes in ``cancelled``
    are cancelled by the client, those in ``failed`` end with an engine error. Engine steps come
    every ``step_s`` seconds (engines round-robin, a second past the last arrival; none with
    ``steps=False``) with seeded running/waiting counts, KV usage and prefix-cache queries.
    ``n=0, steps=False`` is a run whose telemetry started and stopped with nothing to record.

    Returns:
        ``run_dir``, closed (manifest ended, columnar copies written).
    """
    tel = configure(
        run_dir=run_dir,
        engine_id=engines[0],
        make_current=False,
        otlp_endpoint=False,
        advanced=AdvancedOptions(simple_processors=True),
    )
    try:
        anchor = tel.anchor
        rng = random.Random(seed)
        start = time.time() - gap_s * n - 5.0
        for i in range(n):
            arrival = start + gap_s * i
            queue = (0.002 + 0.03 * rng.random()) * slowdown
            prefill = (0.01 + 0.04 * rng.random()) * slowdown
            out = rng.randint(8, 64)
            tpot = (0.004 + 0.004 * rng.random()) * slowdown
            decode = tpot * (out - 1)
            prompt = rng.randint(32, 1024)
            cached = int(prompt * rng.random() * 0.8)
            queued = anchor.to_mono(arrival) + 0.0005
            scheduled = queued + queue
            first = scheduled + prefill
            last = first + decode
            tel.submit_request(
                RequestRecord(
                    request_id=f"{prefix}-{i:03d}",
                    trace_id=f"trace-{prefix}-{i:03d}",
                    engine_id=engines[i % len(engines)],
                    model=models[i % len(models)],
                    operation=sc.OP_TEXT_COMPLETION,
                    stream=True,
                    arrival_time=arrival,
                    queued_ts=queued,
                    scheduled_ts=scheduled,
                    first_token_ts=first,
                    last_token_ts=last,
                    ttft=anchor.to_epoch(first) - arrival,
                    e2e=anchor.to_epoch(last) - arrival,
                    queue=queue,
                    prefill=prefill,
                    decode=decode,
                    inference=prefill + decode,
                    tpot=tpot,
                    prompt_tokens=prompt,
                    output_tokens=out,
                    cached_tokens=cached,
                    max_tokens=64,
                    cancelled=i in cancelled,
                    error_type="EngineDeadError" if i in failed else None,
                )
            )
        count = int((gap_s * n + 1.0) / step_s) if steps else 0
        for k in range(count):
            queries = rng.randint(0, 600)
            tel.submit_step(
                {
                    sc.STEP_TIME_UNIX_NANO: int((start + step_s * k) * 1e9),
                    sc.STEP_ENGINE_ID: engines[k % len(engines)],
                    sc.STEP_INDEX: k,
                    sc.STEP_RUNNING: rng.randint(0, 8),
                    sc.STEP_WAITING: rng.randint(0, 4),
                    sc.STEP_KV_USAGE: 0.2 + 0.6 * k / count * rng.random(),
                    sc.STEP_PREFIX_QUERIES: queries,
                    sc.STEP_PREFIX_HITS: int(queries * rng.random()),
                    sc.STEP_PROMPT_TOKENS: queries,
                    sc.STEP_CACHED_PROMPT_TOKENS: queries // 3,
                    sc.STEP_GENERATION_TOKENS: rng.randint(0, 16),
                    sc.STEP_PREEMPTIONS: 0,
                    sc.STEP_FINISHED: rng.randint(0, 1),
                }
            )
        if not tel.flush():
            raise RuntimeError(f"synthetic_run: telemetry did not flush into {run_dir}")
    finally:
        tel.shutdown()
    return run_dir


@dataclass
class Capture:
    """What a :func:`sagellm_capture` telemetry recorded, read back after a flush."""

    telemetry: Telemetry
    span_exporter: InMemorySpanExporter
    metric_reader: InMemoryMetricReader

    @property
    def anchor(self) -> ClockAnchor:
        """The pipeline's clock anchor: give it to :func:`make_record`."""
        return self.telemetry.anchor

    @property
    def run_dir(self) -> Path:
        """The run folder (spans, metrics and steps as the store writes them)."""
        assert self.telemetry.run_dir is not None
        return self.telemetry.run_dir

    def submit(self, *records: RequestRecord) -> None:
        """Hand finished requests to the pipeline, as the engine does, and flush."""
        for r in records:
            self.telemetry.submit_request(r)
        self.flush()

    def submit_step(self, step: dict[str, Any]) -> None:
        """Hand one engine-step record (``sc.STEP_*`` keys) to the pipeline, and flush."""
        self.telemetry.submit_step(step)
        self.flush()

    def flush(self) -> None:
        """Drain the telemetry thread and the processors (raises when it times out)."""
        if not self.telemetry.flush(timeout=10):
            raise TimeoutError("telemetry did not flush within 10 s")

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, in export order (only those called ``name`` when given)."""
        out = list(self.span_exporter.get_finished_spans())
        return [s for s in out if name is None or s.name == name]

    def metrics(self, name: str | None = None) -> list[Metric]:
        """The metrics of one collection (only those called ``name`` when given)."""
        data = self.metric_reader.get_metrics_data()
        found = [
            m
            for rm in (data.resource_metrics if data else ())
            for sm in rm.scope_metrics
            for m in sm.metrics
        ]
        return [m for m in found if name is None or m.name == name]

    def metric_names(self) -> set[str]:
        """Names of the metrics of one collection."""
        return {m.name for m in self.metrics()}

    def steps(self) -> list[dict[str, Any]]:
        """The step records written to the run folder's ``steps-*.jsonl``, in order."""
        from sagellm_obs.store import files_of, iter_jsonl

        return [obj for f in files_of(self.run_dir, "steps") for _, obj in iter_jsonl(f)]


@pytest.fixture
def sagellm_capture(tmp_path: Path) -> Iterator[Capture]:
    """Real telemetry into memory and a run folder under ``tmp_path``; shut down afterwards."""
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    tel = deterministic_telemetry(
        tmp_path / "run",
        span_exporters=[spans],
        metric_readers=[reader],
        simple_processors=True,
    )
    try:
        yield Capture(tel, spans, reader)
    finally:
        tel.shutdown()
