"""A run to be killed: ``python sigkill_child.py RUN_DIR``.

configure() with the default telemetry settings (batch span export, the default intervals) and
the tiny model on vLLM's default multi-process layout (EngineCore in a child process). Prints one
``intervals`` line, ``ready``, then ``done <request id> <epoch s>`` as each request returns, and
keeps going until it is killed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from typing import Any

CONCURRENCY = 8
ROTATE_BYTES = 64 * 1024
PREFIX = "You are a careful assistant that reviews Python code and explains each bug. " * 3


async def _worker(engine: Any, counter: itertools.count[int]) -> None:
    from sagellm_obs.protocol import Request

    while True:
        i = next(counter)
        rid = f"kill-{i:06d}"
        req = Request(
            request_id=rid, trace_id=rid, prompt=f"{PREFIX} item {i}: x = {i} *", max_tokens=12
        )
        resp = await engine.generate(req)
        print(f"done {rid} {time.time():.6f} {resp.finish_reason}", flush=True)


async def _run(engine: Any) -> None:
    counter = itertools.count()
    await asyncio.gather(*(_worker(engine, counter) for _ in range(CONCURRENCY)))


def main(run_dir: str) -> None:
    from sagellm_obs import AdvancedOptions, configure
    from sagellm_obs.engine import Engine

    # The defaults a user gets, but files rotate every 64 KiB: the kill comes after some files
    # were sealed (columnar copies written) and while others are open.
    advanced = AdvancedOptions(store_max_bytes=ROTATE_BYTES)
    tel = configure(
        run_dir=run_dir, engine_id="sigkill-child", otlp_endpoint=False, advanced=advanced
    )
    intervals = {
        "pipeline_interval": advanced.pipeline_interval,
        "span_batch_delay": advanced.span_batch_delay,
        "metric_export_interval": advanced.metric_export_interval,
        "concurrency": CONCURRENCY,
    }
    print("intervals " + json.dumps(intervals), flush=True)
    engine = Engine("tiny", telemetry=tel, in_process=False, kv_cache_memory_bytes=64 * 2**20)
    print("ready", flush=True)
    engine.submit(_run(engine.engine)).result()


if __name__ == "__main__":
    main(sys.argv[1])
