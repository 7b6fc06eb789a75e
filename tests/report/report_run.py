"""A real run folder, written by the real telemetry pipeline from synthetic requests and steps."""

from __future__ import annotations

import random
import time
from pathlib import Path

from sagellm_obs import AdvancedOptions, configure
from sagellm_obs import semconv as sc
from sagellm_obs.telemetry import RequestRecord

ENGINE = "engine-test"


def build_run(
    run_dir: Path,
    n: int = 50,
    *,
    seed: int = 0,
    slowdown: float = 1.0,
    cancelled: frozenset[int] = frozenset(),
    failed: frozenset[int] = frozenset(),
) -> Path:
    """Submits ``n`` finished requests (0.2 s apart) and 10 steps a second, then shuts down.

    Monotonic stamps are derived from the pipeline's own clock anchor, so the stored spans and
    phases are exactly the durations chosen here. Requests whose index is in ``cancelled`` are
    recorded as cancelled by the client, those in ``failed`` with an engine error.
    """
    tel = configure(
        run_dir=run_dir,
        engine_id=ENGINE,
        make_current=False,
        otlp_endpoint=False,
        advanced=AdvancedOptions(simple_processors=True),
    )
    try:
        anchor = tel.pipeline.anchor
        rng = random.Random(seed)
        start = time.time() - 0.2 * n - 5.0
        for i in range(n):
            arrival = start + 0.2 * i
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
            tel.pipeline.submit_request(
                RequestRecord(
                    request_id=f"req-{i:03d}",
                    trace_id=f"trace-{i:03d}",
                    engine_id=ENGINE,
                    model="tiny-test",
                    operation="text_completion",
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
                    cancelled=i in cancelled,
                    error_type="EngineDeadError" if i in failed else None,
                )
            )
        steps = int((0.2 * n + 1.0) * 10)
        for k in range(steps):
            t = start + 0.1 * k
            queries = rng.randint(0, 600)
            tel.pipeline.submit_step(
                {
                    sc.STEP_TIME_UNIX_NANO: int(t * 1e9),
                    sc.STEP_ENGINE_ID: ENGINE,
                    sc.STEP_INDEX: k,
                    sc.STEP_RUNNING: rng.randint(0, 8),
                    sc.STEP_WAITING: rng.randint(0, 4),
                    sc.STEP_KV_USAGE: 0.2 + 0.6 * k / steps * rng.random(),
                    sc.STEP_PREFIX_QUERIES: queries,
                    sc.STEP_PREFIX_HITS: int(queries * rng.random()),
                    sc.STEP_PROMPT_TOKENS: queries,
                    sc.STEP_CACHED_PROMPT_TOKENS: queries // 3,
                    sc.STEP_GENERATION_TOKENS: rng.randint(0, 16),
                    sc.STEP_PREEMPTIONS: 0,
                    sc.STEP_FINISHED: rng.randint(0, 1),
                }
            )
        assert tel.flush()
    finally:
        tel.shutdown()
    return run_dir
