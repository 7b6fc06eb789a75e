"""A vLLM stat logger (vLLM's official extension point) that feeds our telemetry per engine step.

vLLM calls ``record()`` in the frontend process once per engine step. We copy a handful of numbers
into a dict and append it to the telemetry queue; finished-request stats are kept by request id so
the request path can pick up vLLM's own end-to-end latency. No per-token work happens here.

With data parallelism (``data_parallel_size`` > 1) vLLM runs one EngineCore per rank and calls
``record()`` with that rank's ``engine_idx``: every step record carries it, the step counter
and the prefix-cache totals are kept per rank, and a finished request remembers the rank that
ran it (:meth:`StepSink.pop_finished_on`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sagellm_obs import semconv as sc
from sagellm_obs.telemetry import TelemetryPort

_MAX_FINISHED = 65536  # finished stats nobody collected (e.g. requests not sent through us)


class StepSink:
    """Where the stat logger puts what it sees; shared with the engine wrapper."""

    def __init__(self, telemetry: Callable[[], TelemetryPort | None], engine_id: str) -> None:
        self._telemetry = telemetry
        self.engine_id = engine_id
        #: request id -> (vLLM's FinishedRequestStats, the engine_idx that ran it)
        self.finished: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self.steps = 0
        #: Steps seen per engine_idx (each rank's own step counter).
        self.steps_by_engine: dict[int, int] = {}
        #: KV-cache usage of each engine_idx's last step; ``last_kv_usage`` is the busiest's.
        self.kv_usage_by_engine: dict[int, float] = {}
        self.last_kv_usage = 0.0
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.errors = 0

    def record(self, scheduler_stats: Any, iteration_stats: Any, engine_idx: int = 0) -> None:
        """Turn one step's stats into a step record (never raises).

        ``engine_idx`` is vLLM's: the data-parallel rank whose EngineCore made the step.
        """
        try:
            idx = int(engine_idx or 0)
            if iteration_stats is not None:
                for frs in iteration_stats.finished_requests:
                    if frs.request_id is not None:
                        self.finished[frs.request_id] = (frs, idx)
                while len(self.finished) > _MAX_FINISHED:
                    self.finished.popitem(last=False)
            if scheduler_stats is None:
                return
            self.steps += 1
            step = self.steps_by_engine[idx] = self.steps_by_engine.get(idx, 0) + 1
            pcs = scheduler_stats.prefix_cache_stats
            queries = int(pcs.queries) if pcs is not None else 0
            hits = int(pcs.hits) if pcs is not None else 0
            self.prefix_queries += queries
            self.prefix_hits += hits
            kv = float(scheduler_stats.kv_cache_usage)
            self.kv_usage_by_engine[idx] = kv
            self.last_kv_usage = (
                kv if len(self.kv_usage_by_engine) == 1 else max(self.kv_usage_by_engine.values())
            )
            it = iteration_stats
            telemetry = self._telemetry()
            if telemetry is None:
                return
            telemetry.submit_step(
                {
                    sc.STEP_TIME_UNIX_NANO: int(it.iteration_timestamp * 1e9)
                    if it is not None
                    else time.time_ns(),
                    sc.STEP_ENGINE_ID: self.engine_id,
                    sc.STEP_ENGINE_IDX: idx,
                    sc.STEP_INDEX: step,
                    sc.STEP_RUNNING: int(scheduler_stats.num_running_reqs),
                    sc.STEP_WAITING: int(scheduler_stats.num_waiting_reqs),
                    sc.STEP_KV_USAGE: kv,
                    sc.STEP_PREFIX_QUERIES: queries,
                    sc.STEP_PREFIX_HITS: hits,
                    sc.STEP_PROMPT_TOKENS: int(it.num_prompt_tokens) if it is not None else 0,
                    sc.STEP_CACHED_PROMPT_TOKENS: int(it.prompt_token_stats.cached_tokens)
                    if it is not None
                    else 0,
                    sc.STEP_GENERATION_TOKENS: int(it.num_generation_tokens)
                    if it is not None
                    else 0,
                    sc.STEP_PREEMPTIONS: int(it.num_preempted_reqs) if it is not None else 0,
                    sc.STEP_FINISHED: len(it.finished_requests) if it is not None else 0,
                }
            )
        except Exception:
            self.errors += 1

    def pop_finished(self, request_id: str) -> Any:
        """vLLM's FinishedRequestStats for a request, if the logger has seen it."""
        return self.pop_finished_on(request_id)[0]

    def pop_finished_on(self, request_id: str) -> tuple[Any, int | None]:
        """vLLM's FinishedRequestStats for a request and the engine_idx that ran it;
        ``(None, None)`` if the logger has not seen it."""
        return self.finished.pop(request_id, (None, None))


def stat_logger_factory(sink: StepSink) -> type:
    """A ``StatLoggerBase`` subclass bound to ``sink`` (vLLM instantiates factories itself)."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class SagellmStatLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self.engine_index = engine_index

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            sink.record(scheduler_stats, iteration_stats, engine_idx)

        def log_engine_initialized(self) -> None:
            return None

        def log(self) -> None:
            return None

    return SagellmStatLogger
