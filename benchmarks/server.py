"""``sagellm-obs serve`` against vLLM's own OpenAI server, same engine settings, interleaved.

Both servers run at once on free ports of 127.0.0.1 with the same engine: the offline tiny model,
float32, ``enforce_eager``, 256 MiB KV cache, prefix caching on, ``max_model_len`` 1024,
``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (the model runs inside EngineCore, a child process), stats
on (vLLM's server default). Rounds alternate between them, rotated, so only one serves at a time:
``requests`` streamed ``/v1/completions`` (``ignore_eos``, ``max_tokens`` tokens,
``stream_options.include_usage``) from a bounded asyncio loop with ``concurrency`` in flight.
The client (this process) measures TTFT (to the first chunk with text), ITL (gaps between text
chunks) and output tokens/s (usage tokens / round wall time); the servers' CPU is their process
trees' CPU time (``psutil``) per request. Both are stopped by PID at the end. As in
``engine_overhead``, repetitions run until ``reps`` of them were quiet (other processes kept at
most ``QUIET_CORES`` busy in every round), and the quiet ones are reported when there are enough.

The servers as processes are in :mod:`benchmarks._server_procs`, the statistics and tables in
:mod:`benchmarks._server_report`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _server_report as report
from benchmarks._common import (
    QUIET_CORES,
    TOY_ROUNDS,
    Options,
    OthersMeter,
    progress,
    rotations,
    say,
    write_result,
)
from benchmarks._server_procs import (
    MODEL_NAME,
    START_TIMEOUT_S,
    Server,
    start_ours,
    start_vllm,
    wait_ready,
)
from benchmarks._server_report import SERVERS, Round, Sample

NAME = "server"
TITLE = "HTTP server: sagellm-obs serve vs vLLM's OpenAI server"
PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "requests": 128,
        "max_tokens": 64,
        "concurrency": 32,
        # 30 quiet pairs put the throughput ratio's 95% CI at about ±4% (10 gave ±12%).
        "reps": 30,
        "max_reps": 40,
        "max_seconds": 480,
    },
    "quick": {
        "requests": 64,
        "max_tokens": 32,
        "concurrency": 16,
        "reps": 3,
        "max_reps": 6,
        "max_seconds": 120,
    },
    "toy": dict(TOY_ROUNDS),
}
SETTLE_S = 0.5


def available() -> bool:
    """Whether ``sagellm_obs.server`` exists (another part of the project builds it)."""
    import importlib.util

    return importlib.util.find_spec("sagellm_obs.server") is not None


async def _one(client: Any, url: str, prompt: str, p: dict[str, Any]) -> Sample:
    body = {
        "model": MODEL_NAME,
        "prompt": prompt,
        "max_tokens": int(p["max_tokens"]),
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    s = Sample()
    t0 = last = time.perf_counter()
    seen = False
    async with client.stream("POST", f"{url}/v1/completions", json=body) as resp:
        if resp.status_code != 200:
            s.error = f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}"
            return s
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage")
            if usage:
                s.tokens = int(usage.get("completion_tokens") or 0)
            choices = chunk.get("choices") or []
            if not choices or not choices[0].get("text"):
                continue
            now = time.perf_counter()
            if not seen:
                s.ttft, seen = now - t0, True
            else:
                s.gaps.append(now - last)
            last = now
    return s


async def _round(server: Server, rep: int, p: dict[str, Any]) -> Round:
    import httpx

    n, conc = int(p["requests"]), int(p["concurrency"])
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    sem = asyncio.Semaphore(conc)
    async with httpx.AsyncClient(limits=limits, timeout=300) as client:

        async def one(i: int) -> Sample:
            async with sem:
                prompt = f"Request {rep}-{i}: write a short function that returns {i} squared."
                return await _one(client, server.url, prompt, p)

        with OthersMeter() as others:
            k0, w0 = server.cpu(), time.perf_counter()
            samples = await asyncio.gather(*(one(i) for i in range(n)))
            wall = time.perf_counter() - w0
            await asyncio.sleep(0.3)  # let the server finish its per-request bookkeeping
            cpu = server.cpu() - k0
    return Round(server.name, rep, wall, cpu, others.cores, list(samples))


def _measured(servers: dict[str, Server], name: str, rep: int, p: dict[str, Any]) -> Round:
    """A round of ``name`` with every other server paused."""
    for other, server in servers.items():
        server.pause(other != name)
    time.sleep(SETTLE_S)  # let the resumed server run what it deferred while paused
    return asyncio.run(_round(servers[name], rep, p))


def run(opts: Options) -> dict[str, Any]:
    """Run the benchmark; returns (and writes) the result document's ``results``."""
    p = opts.sizes(PRESETS)
    if not available():
        results: dict[str, Any] = {"skipped": "sagellm_obs.server does not exist yet"}
        write_result(NAME, opts, p, results)
        say(f"[bold]{NAME}[/]: skipped (no sagellm_obs.server)")
        return results
    from sagellm_obs.models import TINY, build_model

    model_path = str(build_model(TINY))
    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    servers: dict[str, Server] = {}
    rounds: list[Round] = []
    try:
        with progress(opts.show_progress) as bar:
            task = bar.add_task(f"{NAME} (quiet reps)", total=int(p["reps"]), status="starting")
            t0 = time.monotonic()
            servers["vllm"] = start_vllm(model_path, tmp)
            servers["ours"] = start_ours(tmp)
            for s in servers.values():
                wait_ready(s, t0 + START_TIMEOUT_S)
            start_s = time.monotonic() - t0
            for name in SERVERS:  # warm-up, not recorded
                r = _measured(servers, name, -1, p)
                bar.update(task, status=f"warm-up {name}: {r.tokens / r.wall:,.0f} tok/s")
            deadline = time.monotonic() + float(p["max_seconds"])
            rep = quiet = 0
            while quiet < int(p["reps"]) and rep < int(p["max_reps"]):
                if rep and time.monotonic() > deadline:
                    break
                batch = [_measured(servers, n, rep, p) for n in rotations(SERVERS, rep)]
                rounds.extend(batch)
                if all(r.others <= QUIET_CORES for r in batch):
                    quiet += 1
                    bar.update(task, advance=1)
                bar.update(
                    task,
                    status=f"rep {rep + 1}: "
                    + ", ".join(
                        f"{r.server} {r.tokens / r.wall:,.0f} tok/s (others {r.others:.2f})"
                        for r in batch
                    ),
                )
                rep += 1
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    results = report.summarise(rounds, p, start_s)
    write_result(NAME, opts, p, results)
    c = results[results["primary"]]["ours_over_vllm"]
    say(
        f"[bold]{NAME}[/]: throughput ours/vLLM {c['throughput_ratio']['median']:.3f}, "
        f"p99 TTFT ratio {c['ttft_p99_ratio']:.3f}"
    )
    return results


render = report.render
headline = report.headline
