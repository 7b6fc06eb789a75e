"""Hand-made finished-request records, shared by the telemetry and frames tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace.id_generator import IdGenerator

from sagellm_obs import semconv as sc
from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.telemetry import AdvancedOptions, Telemetry, configure
from sagellm_obs.telemetry.records import RequestRecord


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


def compare_telemetry(run_dir: Path, **advanced: Any) -> Telemetry:
    """One side of a two-way comparison: deterministic ids, fixed names, no OTLP, no timers.

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
