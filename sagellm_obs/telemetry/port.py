"""The one port producers of telemetry use: the engine, its stat logger and the HTTP server.

Producers hand over plain records and read back the clock they need; how records become spans,
metric points and store lines (the pipeline, the direct spans, the SDK's private hooks) stays
behind this port, so it can change without touching the engine or the server.
:class:`~sagellm_obs.telemetry.Telemetry` implements it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    from opentelemetry import trace

    from sagellm_obs.protocol.timing import ClockAnchor
    from sagellm_obs.telemetry.records import RequestRecord
    from sagellm_obs.telemetry.vllm_spans import VllmSpanReceiver


class TelemetryPort(Protocol):
    """What a producer may use of a telemetry (see the module docstring).

    The ``submit_*`` calls are the engine's hot path: O(1), never raise, never block.
    """

    @property
    def engine_id(self) -> str:
        """The engine instance id (``sagellm.engine.id``)."""
        ...

    @property
    def capture_content(self) -> bool:
        """Whether prompt and completion text may go on spans."""
        ...

    @property
    def tracer(self) -> trace.Tracer:
        """The tracer for spans a producer starts itself (the server's HTTP spans)."""
        ...

    @property
    def anchor(self) -> ClockAnchor:
        """Converts vLLM's monotonic stamps to epoch time: the same anchor the spans use."""
        ...

    @property
    def vllm_spans(self) -> VllmSpanReceiver | None:
        """The receiver of vLLM's own spans when vLLM's tracing is on, else None."""
        ...

    def vllm_trace_headers(self, record: RequestRecord) -> dict[str, str]:
        """The W3C trace context to hand vLLM for this request (reserves our span's id)."""
        ...

    def forget_vllm_span(self, record: RequestRecord) -> None:
        """vLLM will not trace this request (aborted): stop waiting for its span."""
        ...

    def take_spans(self, spans: Any) -> None:
        """Spans ended elsewhere (vLLM's), handed to every span processor."""
        ...

    def submit_request(self, record: RequestRecord) -> None:
        """Queue a finished request's record (spans and metric points are built later)."""
        ...

    def submit_step(self, step: dict[str, Any]) -> None:
        """Queue one engine step's record (keys from ``semconv.STEP_*``)."""
        ...

    def write_kv_events(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append KV cache event records to the run folder (nothing when the store is off)."""
        ...

    def trace_id_hint(self, trace_id: int) -> AbstractContextManager[None]:
        """Within the block, the next root span this thread starts gets ``trace_id`` (not 0)."""
        ...

    def peak_mem_mb(self, *, sample: bool = False) -> int:
        """Peak RSS of the engine's processes seen so far, in MB; ``sample`` reads it now,
        listing the child processes anew (call it when an engine has started)."""
        ...

    def annotate_run(self, **fields: Any) -> None:
        """Add fields to the run's manifest (nothing when the local store is off)."""
        ...

    @property
    def run_dir(self) -> Path | None:
        """The run folder the local store writes, if the store is on."""
        ...

    @property
    def run_id(self) -> str | None:
        """The run id (``sagellm.run_id``), if the store is on."""
        ...

    def flush(self, timeout: float = 10.0) -> bool:
        """Build what is queued and push it through every exporter."""
        ...
