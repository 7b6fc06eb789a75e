"""The telemetry thread: turns request and step records into spans, metric points and step lines.

The engine's path only appends a record to a deque (lock-free, O(1)); this thread wakes every
``interval`` seconds, or on :meth:`Pipeline.flush`, and does the rest. Nothing here raises into the
engine: failures are logged and counted.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import SpanContext

from sagellm_obs import semconv as sc
from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.telemetry.aggregate import RequestMetrics
from sagellm_obs.telemetry.direct_spans import RequestSpans
from sagellm_obs.telemetry.instruments import Instruments
from sagellm_obs.telemetry.records import RequestRecord

_log = logging.getLogger(__name__)
_CHUNK = 256  # records per batch of spans-then-metrics


class _MemoryWatch:
    """Peak RSS of this process and its children (vLLM's EngineCore and workers), in MB.

    Listing the children reads every process's stat file (psutil's ``children``: 2.3 ms of CPU
    with 66 processes here, more on a busy host, once a second on the core vLLM's EngineCore
    shares with the frontend), so the list is kept: read again every ``rescan_s`` seconds, when
    a known child has gone, or when asked (an engine has just started). The RSS of the known
    processes is read at every sample (~0.03 ms each).
    """

    def __init__(self, rescan_s: float = 10.0) -> None:
        self.peak_mb = 0
        self.scans = 0
        self._rescan_s = rescan_s
        self._scanned = -math.inf
        self._children: list[Any] = []
        self._proc: Any = None
        try:
            import psutil

            self._proc = psutil.Process(os.getpid())
        except Exception:  # psutil is optional
            self._proc = None

    def sample(self, *, rescan: bool = False) -> int:
        self_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        total = self_peak_kb / 1024
        proc = self._proc
        if proc is not None:
            try:
                now = time.monotonic()
                if rescan or now - self._scanned >= self._rescan_s:
                    self._children = proc.children(recursive=True)
                    self._scanned = now
                    self.scans += 1
                children = 0
                for child in self._children:
                    try:
                        children += child.memory_info().rss
                    except Exception:  # gone (or no longer ours): list them again next time
                        self._scanned = -math.inf
                total = max(total, proc.memory_info().rss / 2**20) + children / 2**20
            except Exception:
                pass
        self.peak_mb = max(self.peak_mb, int(total))
        return self.peak_mb


class Pipeline:
    """Background recorder of request and step records.

    Args:
        spans: Builds each request's spans (and the store's span lines).
        instruments: Metric instruments.
        write_steps: Sink for step records (the local store), or None.
        interval: Seconds between drains.
        max_pending: Records kept waiting at most; beyond, new ones are dropped and counted.
        request_metrics: Pre-aggregated request metrics attached to the readers; None records
            finished requests through ``instruments`` (the SDK's way).
    """

    def __init__(
        self,
        spans: RequestSpans,
        instruments: Instruments,
        write_steps: Callable[[list[dict[str, Any]]], Any] | None,
        *,
        interval: float = 0.1,
        max_pending: int = 100_000,
        request_metrics: RequestMetrics | None = None,
    ) -> None:
        self.spans = spans
        self._inst = instruments
        self._aggregated = request_metrics
        self._write_steps = write_steps
        self._interval = interval
        self._max_pending = max_pending
        self._requests: deque[RequestRecord] = deque()
        self._steps: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._drains = 0
        self._stop = False
        self._flush_lines = False
        self.dropped = 0
        self.failures = 0
        self.requests_recorded = 0
        self.steps_recorded = 0
        self.memory = _MemoryWatch()
        self.clock_steps = 0
        self._clock_lock = threading.Lock()
        self._last_mem = 0.0
        self._thread = threading.Thread(target=self._run, name="sagellm-obs-telemetry", daemon=True)
        self._thread.start()

    @property
    def anchor(self) -> ClockAnchor:
        """Wall/monotonic anchor for converting vLLM's monotonic timestamps.

        Taken anew when the wall clock has stepped (vLLM's arrival times follow the step): the
        engine reads it once per finished request (a reading of each clock, ~0.3 µs), the
        telemetry thread before each batch of spans. Requests in flight during a step keep an
        error of the step's size, named in their spans' clock issues when it breaks an order.
        """
        return self._checked_anchor()

    def _checked_anchor(self) -> ClockAnchor:
        anchor = self.spans.anchor
        fresh = anchor.stepped()
        if fresh is None:
            return anchor
        with self._clock_lock:
            if self.spans.anchor is anchor:  # the other thread may have seen the step first
                self.spans.anchor = fresh
                self.clock_steps += 1
                _log.warning(
                    "sagellm-obs: the wall clock stepped by %+.1f ms against the monotonic "
                    "clock; vLLM's engine stamps are converted with a new anchor from now on",
                    (fresh.offset_s - anchor.offset_s) * 1e3,
                )
            return self.spans.anchor

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
            self._drain(write_all=True)
            return True
        with self._idle:
            target = self._drains + 2  # a drain that started after this call
            self._flush_lines = True
            self._wake.set()
            return self._idle.wait_for(lambda: self._drains >= target, timeout=timeout)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Drain and stop the thread."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        self._drain(write_all=True)

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self._interval)
            self._wake.clear()
            write_all, self._flush_lines = self._flush_lines, False
            self._drain(write_all=write_all)
            with self._idle:
                self._drains += 1
                self._idle.notify_all()

    def _drain(self, *, write_all: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_mem > 1.0:
            self._last_mem = now
            self.memory.sample()
        steps: list[dict[str, Any]] = []
        while self._steps:
            steps.append(self._steps.popleft())
        if steps:
            self._record_steps(steps)
        if self._requests:
            self._checked_anchor()  # before the spans: re-anchors after a wall-clock step
            self.spans.refresh()
        while self._requests:
            self._record_requests(self._requests)
        lines = self.spans.store_lines
        if lines is not None:
            try:
                # Due before the next drain: written now, so no span waits longer than
                # span_batch_delay plus one interval (as with the SDK's batch processor).
                lines.write_due(force=write_all, within=self._interval)
            except Exception:
                self.failures += 1
                _log.exception("sagellm-obs: writing span lines to the local store failed")
        if self.dropped:
            with contextlib.suppress(Exception):
                self._inst.dropped.add(self.dropped)
            self.dropped = 0

    def _record_steps(self, steps: list[dict[str, Any]]) -> None:
        """Gauges (each engine's last step) and counters (sums) per engine, then the store.

        An engine is the pair (``engine_id``, ``engine_idx``): with vLLM's data parallelism one
        instance's ranks interleave their steps, and each keeps its own series.
        """
        good: list[dict[str, Any]] = []
        # engine key -> [last step, queries, hits, prompt, generation, preemptions]
        engines: dict[tuple[Any, Any], list[Any]] = {}
        for s in steps:
            try:  # one malformed record must not cost its neighbours
                q, h, p = (
                    s[sc.STEP_PREFIX_QUERIES],
                    s[sc.STEP_PREFIX_HITS],
                    s[sc.STEP_PROMPT_TOKENS],
                )
                g, pre = s[sc.STEP_GENERATION_TOKENS], s[sc.STEP_PREEMPTIONS]
                float(s[sc.STEP_KV_USAGE]), s[sc.STEP_RUNNING], s[sc.STEP_WAITING]
                key = (s[sc.STEP_ENGINE_ID], s.get(sc.STEP_ENGINE_IDX))
                acc = engines.get(key)
                if acc is None:
                    acc = engines[key] = [s, 0, 0, 0, 0, 0]
                acc[0] = s
                acc[1] += q
                acc[2] += h
                acc[3] += p
                acc[4] += g
                acc[5] += pre
            except (KeyError, TypeError, ValueError):
                self.failures += 1
                continue
            good.append(s)
        if not good:
            return
        steps = good
        try:
            inst = self._inst
            for (engine_id, engine_idx), acc in engines.items():
                last, queries, hits, prompt, gen, preempt = acc
                attrs: dict[str, Any] = {sc.SAGELLM_ENGINE_ID: engine_id}
                if engine_idx is not None:
                    attrs[sc.SAGELLM_ENGINE_IDX] = engine_idx
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

    def _record_requests(self, queue: deque[RequestRecord]) -> None:
        """Spans of up to ``_CHUNK`` records, then their metric points.

        Two tight loops rather than one alternating loop: ~6% less CPU (the interpreter's
        caches stay warm), and the same measurements in the same order.
        """
        done: list[tuple[RequestRecord, SpanContext]] = []
        for _ in range(min(len(queue), _CHUNK)):
            record = queue.popleft()
            try:
                done.append((record, self.spans.record(record)))
            except Exception:
                self.failures += 1
                _log.exception("sagellm-obs: recording request %s failed", record.request_id)
        for record, context in done:
            try:
                self._record_request_metrics(record, context)
                self.requests_recorded += 1
            except Exception:
                self.failures += 1
                _log.exception("sagellm-obs: metrics of request %s failed", record.request_id)

    def _record_request_metrics(self, r: RequestRecord, span: SpanContext) -> None:
        if self._aggregated is not None:
            self._aggregated.record(r, span)
        else:
            self._inst.record_request(r, span)
