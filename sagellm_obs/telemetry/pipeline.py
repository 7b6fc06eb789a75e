"""The telemetry thread: turns request and step records into spans, metric points and step lines.

The engine's path only appends a record to a deque (lock-free, O(1)); this thread wakes every
``interval`` seconds, or on :meth:`Pipeline.flush`, and does the rest. Nothing here raises into the
engine: failures are logged and counted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import resource
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from sagellm_obs import semconv as sc
from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.telemetry.ids import TraceIdOverride
from sagellm_obs.telemetry.instruments import Instruments
from sagellm_obs.telemetry.records import RequestRecord

_log = logging.getLogger(__name__)

PREFIX_BLOCK_TOKENS = 128  # vLLM's CPU block size; hashes are for studying reuse, not for vLLM


def prefix_block_hashes(token_ids: Sequence[int], block: int = PREFIX_BLOCK_TOKENS) -> list[str]:
    """Chained hashes of the full prompt blocks, as a prefix cache keys them (no text exported)."""
    out: list[str] = []
    parent = b""
    for start in range(0, len(token_ids) - block + 1, block):
        h = hashlib.blake2b(parent, digest_size=8)
        h.update(array("q", token_ids[start : start + block]).tobytes())
        parent = h.digest()
        out.append(parent.hex())
    return out


class _MemoryWatch:
    """Peak RSS of this process and its children (vLLM's EngineCore and workers), in MB."""

    def __init__(self) -> None:
        self.peak_mb = 0
        self._proc: Any = None
        try:
            import psutil

            self._proc = psutil.Process(os.getpid())
        except Exception:  # psutil is optional
            self._proc = None

    def sample(self) -> int:
        self_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        total = self_peak_kb / 1024
        if self._proc is not None:
            try:
                children = self._proc.children(recursive=True)
                total = max(total, self._proc.memory_info().rss / 2**20) + sum(
                    c.memory_info().rss / 2**20 for c in children
                )
            except Exception:
                pass
        self.peak_mb = max(self.peak_mb, int(total))
        return self.peak_mb


class Pipeline:
    """Background recorder of request and step records.

    Args:
        tracer: Tracer that builds the spans.
        instruments: Metric instruments.
        id_override: The provider's id generator, to give root spans the protocol's trace id.
        anchor: Wall/monotonic anchor for converting vLLM's monotonic timestamps.
        write_steps: Sink for step records (the local store), or None.
        interval: Seconds between drains.
        max_pending: Records kept waiting at most; beyond, new ones are dropped and counted.
    """

    def __init__(
        self,
        tracer: trace.Tracer,
        instruments: Instruments,
        id_override: TraceIdOverride,
        anchor: ClockAnchor,
        write_steps: Callable[[list[dict[str, Any]]], Any] | None,
        *,
        interval: float = 0.1,
        max_pending: int = 100_000,
    ) -> None:
        self._tracer = tracer
        self._inst = instruments
        self._ids = id_override
        self.anchor = anchor
        self._write_steps = write_steps
        self._interval = interval
        self._max_pending = max_pending
        self._requests: deque[RequestRecord] = deque()
        self._steps: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._drains = 0
        self._stop = False
        self.dropped = 0
        self.failures = 0
        self.requests_recorded = 0
        self.steps_recorded = 0
        self.memory = _MemoryWatch()
        self._last_mem = 0.0
        self._thread = threading.Thread(target=self._run, name="sagellm-obs-telemetry", daemon=True)
        self._thread.start()

    # --- hot path: O(1), never raises ---------------------------------------------------------
    def submit_request(self, record: RequestRecord) -> None:
        """Queue a finished request's record."""
        if len(self._requests) >= self._max_pending:
            self.dropped += 1
            return
        self._requests.append(record)

    def submit_step(self, step: dict[str, Any]) -> None:
        """Queue one engine step's record (keys from ``semconv.STEP_*``)."""
        if len(self._steps) >= self._max_pending:
            self.dropped += 1
            return
        self._steps.append(step)

    @property
    def peak_mem_mb(self) -> int:
        """Peak RSS of the engine's processes seen so far, in MB."""
        return self.memory.peak_mb

    # --- background -----------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Process everything queued so far; returns False if that did not finish in time."""
        if not self._thread.is_alive():
            self._drain()
            return True
        with self._idle:
            target = self._drains + 2  # a drain that started after this call
            self._wake.set()
            return self._idle.wait_for(lambda: self._drains >= target, timeout=timeout)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Drain and stop the thread."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        self._drain()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._drain()
            with self._idle:
                self._drains += 1
                self._idle.notify_all()

    def _drain(self) -> None:
        now = time.monotonic()
        if now - self._last_mem > 1.0:
            self._last_mem = now
            self.memory.sample()
        steps: list[dict[str, Any]] = []
        while self._steps:
            steps.append(self._steps.popleft())
        if steps:
            self._record_steps(steps)
        while self._requests:
            record = self._requests.popleft()
            try:
                self._record_request(record)
                self.requests_recorded += 1
            except Exception:
                self.failures += 1
                _log.exception("sagellm-obs: recording request %s failed", record.request_id)
        if self.dropped:
            with contextlib.suppress(Exception):
                self._inst.dropped.add(self.dropped)
            self.dropped = 0

    def _record_steps(self, steps: list[dict[str, Any]]) -> None:
        good: list[dict[str, Any]] = []
        queries = hits = prompt = gen = preempt = 0
        for s in steps:
            try:  # one malformed record must not cost its neighbours
                q, h, p = (
                    s[sc.STEP_PREFIX_QUERIES],
                    s[sc.STEP_PREFIX_HITS],
                    s[sc.STEP_PROMPT_TOKENS],
                )
                g, pre = s[sc.STEP_GENERATION_TOKENS], s[sc.STEP_PREEMPTIONS]
                float(s[sc.STEP_KV_USAGE]), s[sc.STEP_RUNNING], s[sc.STEP_WAITING]
                s[sc.STEP_ENGINE_ID]
                queries, hits, prompt, gen, preempt = (
                    queries + q,
                    hits + h,
                    prompt + p,
                    gen + g,
                    preempt + pre,
                )
            except (KeyError, TypeError, ValueError):
                self.failures += 1
                continue
            good.append(s)
        if not good:
            return
        steps = good
        try:
            inst = self._inst
            last = steps[-1]
            attrs = {sc.SAGELLM_ENGINE_ID: last[sc.STEP_ENGINE_ID]}
            inst.kv_usage.set(last[sc.STEP_KV_USAGE], attrs)
            inst.running.set(last[sc.STEP_RUNNING], attrs)
            inst.waiting.set(last[sc.STEP_WAITING], attrs)
            inst.prefix_queries.add(queries, attrs)
            inst.prefix_hits.add(hits, attrs)
            inst.prompt_tokens.add(prompt, attrs)
            inst.generation_tokens.add(gen, attrs)
            inst.preemptions.add(preempt, attrs)
            self.steps_recorded += len(steps)
            if self._write_steps is not None:
                self._write_steps(steps)
        except Exception:
            self.failures += 1
            _log.exception("sagellm-obs: recording %d step records failed", len(steps))

    def _record_request(self, r: RequestRecord) -> None:
        anchor = self.anchor
        start_ns = int(r.arrival_time * 1e9)
        end_ns = start_ns + int(r.e2e * 1e9)
        parent_ctx = None
        if r.parent_span_id:
            parent = SpanContext(
                trace_id=r.otel_trace_id,
                span_id=r.parent_span_id,
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED if r.parent_sampled else 0),
                trace_state=TraceState.from_header([r.tracestate]) if r.tracestate else None,
            )
            parent_ctx = trace.set_span_in_context(NonRecordingSpan(parent))
        elif r.otel_trace_id:
            self._ids.next_trace_id = r.otel_trace_id
        try:
            span = self._tracer.start_span(
                sc.request_span_name(r.operation, r.model),
                context=parent_ctx,
                kind=SpanKind.SERVER,
                attributes=self._request_attributes(r),
                start_time=start_ns,
            )
        finally:
            self._ids.next_trace_id = 0
        if r.first_token_ts:
            span.add_event(
                sc.EVENT_FIRST_TOKEN, timestamp=start_ns + int(r.ttft * 1e9), attributes=None
            )
        if r.error_type:
            span.set_status(Status(StatusCode.ERROR, r.error_type))
        child_ctx = trace.set_span_in_context(span)
        phases = (
            (sc.SPAN_QUEUE, r.queued_ts, r.scheduled_ts),
            (sc.SPAN_PREFILL, r.scheduled_ts, r.first_token_ts),
            (sc.SPAN_DECODE, r.first_token_ts, r.last_token_ts),
        )
        for name, begin, end in phases:
            if begin <= 0 or end <= 0:
                continue  # phase never reached (e.g. aborted while queued)
            child = self._tracer.start_span(
                name,
                context=child_ctx,
                kind=SpanKind.INTERNAL,
                start_time=anchor.to_epoch_ns(begin),
            )
            child.end(end_time=anchor.to_epoch_ns(end))
        # Metric points carry the request span as exemplar context.
        token = otel_context.attach(child_ctx)
        try:
            self._record_request_metrics(r)
        finally:
            otel_context.detach(token)
        span.end(end_time=end_ns)

    def _record_request_metrics(self, r: RequestRecord) -> None:
        inst = self._inst
        attrs: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: r.operation,
            sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_NAME,
            sc.GEN_AI_REQUEST_MODEL: r.model,
        }
        if r.error_type:
            attrs[sc.ERROR_TYPE] = r.error_type
        inst.requests.add(1, {**attrs, sc.GEN_AI_RESPONSE_FINISH_REASONS: r.finish_reason})
        inst.duration.record(r.e2e, attrs)
        if r.error_type:
            return
        if r.first_token_ts:
            inst.ttft.record(r.ttft, attrs)
            inst.queue.record(r.queue, attrs)
            inst.prefill.record(r.prefill, attrs)
        if r.output_tokens > 1:
            inst.tpot.record(r.tpot, attrs)
            inst.decode.record(r.decode, attrs)
        inst.token_usage.record(r.prompt_tokens, {**attrs, sc.GEN_AI_TOKEN_TYPE: "input"})
        inst.token_usage.record(r.output_tokens, {**attrs, sc.GEN_AI_TOKEN_TYPE: "output"})

    def _request_attributes(self, r: RequestRecord) -> Mapping[str, Any]:
        a: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: r.operation,
            sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_NAME,
            sc.GEN_AI_REQUEST_MODEL: r.model,
            sc.GEN_AI_RESPONSE_MODEL: r.model,
            sc.GEN_AI_RESPONSE_ID: r.request_id,
            sc.GEN_AI_RESPONSE_FINISH_REASONS: [r.finish_reason],
            sc.GEN_AI_REQUEST_STREAM: r.stream,
            sc.GEN_AI_USAGE_INPUT_TOKENS: r.prompt_tokens,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: r.output_tokens,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: r.cached_tokens,
            sc.GEN_AI_REQUEST_ID: r.request_id,
            sc.GEN_AI_LATENCY_TIME_IN_QUEUE: r.queue,
            sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN: r.ttft,
            sc.GEN_AI_LATENCY_E2E: r.e2e,
            sc.GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL: r.prefill,
            sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE: r.decode,
            sc.GEN_AI_LATENCY_TIME_IN_MODEL_INFERENCE: r.inference,
            sc.SAGELLM_TPOT: r.tpot,
            sc.SAGELLM_REQUEST_ID: r.request_id,
            sc.SAGELLM_TRACE_ID: r.trace_id,
            sc.SAGELLM_ENGINE_ID: r.engine_id,
            sc.SAGELLM_CACHED_PROMPT_TOKENS: r.cached_tokens,
            sc.SAGELLM_COMPUTED_PROMPT_TOKENS: r.prompt_tokens - r.cached_tokens,
            sc.SAGELLM_PREEMPTIONS: r.preemptions,
            sc.SAGELLM_ARRIVAL_UNIX_NANO: int(r.arrival_time * 1e9),
            sc.SAGELLM_KV_TOKENS: r.kv_tokens,
            sc.SAGELLM_KV_BYTES: r.kv_bytes,
        }
        for key, value in (
            (sc.GEN_AI_REQUEST_MAX_TOKENS, r.max_tokens),
            (sc.GEN_AI_REQUEST_TEMPERATURE, r.temperature),
            (sc.GEN_AI_REQUEST_TOP_P, r.top_p),
            (sc.GEN_AI_REQUEST_TOP_K, r.top_k),
            (sc.GEN_AI_REQUEST_SEED, r.seed),
            (sc.ERROR_TYPE, r.error_type),
            (sc.SAGELLM_ERROR_CODE, r.error_code),
            (sc.GEN_AI_INPUT_MESSAGES, r.input_messages),
            (sc.GEN_AI_OUTPUT_MESSAGES, r.output_messages),
        ):
            if value is not None:
                a[key] = value
        if r.cancelled:
            a[sc.SAGELLM_CANCELLED] = True
        if r.clock_issues:
            a[sc.SAGELLM_CLOCK_ISSUES] = list(r.clock_issues)
        if r.prompt_token_ids:
            hashes = prefix_block_hashes(r.prompt_token_ids)
            if hashes:
                a[sc.SAGELLM_PREFIX_HASH] = hashes
        return a
