"""CPU per output of our stream path alone: ``python -m benchmarks._stream_replay``.

``engine_overhead`` measures the stream path on a live engine, where the rounds' spread hides a
microsecond per output. This replays a request's outputs as vLLM hands them over (real
``RequestOutput``/``CompletionOutput`` objects put into vLLM's own ``RequestOutputCollector``,
one engine step each, each a wake-up of the consumer; ``DELTA``: one new token an output;
``FINAL_ONLY``: one cumulative output at the end) through ``InstrumentedEngine.stream`` and
``generate``, with the telemetry's ``submit_request`` dropped, and reports CPU per output over a
vLLM-style loop over the same outputs (``AsyncLLM.generate``'s: ``DELTA`` against ``stream``,
``FINAL_ONLY`` against ``generate``; best of ``--reps``). It is deterministic enough to compare two
versions of the code on a busy machine (run each a few times, alternated); it says nothing about
EngineCore or the event loop under load. A last line compares the hand-off alone (vLLM's
``RequestOutputCollector`` against the engine's ``OutputSlot``, 32 requests at once).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

OUTPUTS = 64
"""Outputs per request (as ``engine_overhead``'s 64 output tokens, one per output)."""


def _drop(record: Any) -> None:
    return None


class _State:
    """vLLM's ``RequestState``, the part the output handler puts through."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue


class _ReplayLLM:
    """The part of ``AsyncLLM`` the engine's request path calls: ``add_request`` returns vLLM's
    own ``RequestOutputCollector``, registered as the request's queue in ``output_processor``
    and fed one step at a time through it, as vLLM's output handler feeds it (``DELTA``: an
    output a step; ``FINAL_ONLY``: the cumulative one at the end)."""

    def __init__(self) -> None:
        self._feeders: set[asyncio.Task[None]] = set()
        self.output_processor = self
        self.request_states: dict[str, _State] = {}

    async def add_request(self, request_id: str, prompt: str, params: Any, **_: Any) -> Any:
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.output_processor import RequestOutputCollector

        kind = params.output_kind if params is not None else RequestOutputKind.DELTA
        q = RequestOutputCollector(kind, request_id)
        state = self.request_states[request_id] = _State(q)
        feeder = asyncio.get_running_loop().create_task(
            _feed(state, request_id, kind == RequestOutputKind.FINAL_ONLY)
        )
        self._feeders.add(feeder)
        feeder.add_done_callback(self._feeders.discard)
        feeder.add_done_callback(lambda _: self.request_states.pop(request_id, None))
        return q

    async def generate(
        self, prompt: str, params: Any, request_id: str, **_: Any
    ) -> AsyncIterator[Any]:
        """As ``AsyncLLM.generate``: the collector read through an async generator."""
        q = await self.add_request(request_id, prompt, params)
        finished = False
        while not finished:
            out = q.get_nowait() or await q.get()
            finished = out.finished
            yield out

    async def abort(self, request_id: str) -> None:
        return None

    def shutdown(self) -> None:
        return None


async def _feed(state: _State, request_id: str, final_only: bool) -> None:
    from vllm.outputs import CompletionOutput, RequestOutput
    from vllm.v1.metrics.stats import RequestStateStats

    now = time.monotonic()
    stats = RequestStateStats(
        num_generation_tokens=OUTPUTS,
        arrival_time=time.time(),
        queued_ts=now,
        scheduled_ts=now + 0.001,
        first_token_ts=now + 0.002,
        last_token_ts=now + 0.003,
        first_token_latency=0.002,
    )
    for i in range(OUTPUTS):
        last = i == OUTPUTS - 1
        await asyncio.sleep(0)  # an engine step: each output wakes the consumer
        if final_only and not last:
            continue  # vLLM builds no output before the last
        tokens = list(range(5, 5 + OUTPUTS)) if final_only else [i + 5]
        text = "ab" * len(tokens)
        comp = CompletionOutput(
            0, text, tokens, None, None, finish_reason="length" if last else None
        )
        prompt_ids = [1, 2, 3] if i == 0 or final_only else None
        state.queue.put(  # looked up at every output, as vLLM's output handler does
            RequestOutput(
                request_id, None, prompt_ids, None, [comp], last, metrics=stats, num_cached_tokens=0
            )
        )


async def _measure(requests: int, reps: int) -> dict[str, float]:
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    from sagellm_obs.engine import EngineConfig, InstrumentedEngine
    from sagellm_obs.engine.stat_logger import StepSink
    from sagellm_obs.protocol import Request, StreamEventDelta
    from sagellm_obs.telemetry import configure

    tmp = Path(tempfile.mkdtemp(prefix="stream-replay-"))
    tel = configure(
        run_dir=tmp / "run", otlp_endpoint=False, prometheus_port=False, make_current=False
    )
    tel.pipeline.submit_request = _drop  # type: ignore[method-assign]  # shadows the method
    llm = _ReplayLLM()
    final = SamplingParams(max_tokens=OUTPUTS, output_kind=RequestOutputKind.FINAL_ONLY)
    engine = InstrumentedEngine(llm, EngineConfig(), tel, StepSink(lambda: tel, "replay"), "tiny")

    async def plain(i: int) -> None:
        async for out in llm.generate("p", None, f"plain-{i}"):
            if out.outputs and out.outputs[0].token_ids:
                pass

    async def plain_final(i: int) -> None:
        async for out in llm.generate("p", final, f"final-{i}"):
            if out.outputs and out.outputs[0].token_ids:
                pass

    async def stream(i: int) -> None:
        req = Request(
            request_id=f"s-{i}", trace_id=f"s-{i}", prompt="p", max_tokens=OUTPUTS, stream=True
        )
        async for event in engine.stream(req):
            if isinstance(event, StreamEventDelta) and event.content_tokens:
                pass

    async def generate(i: int) -> None:
        req = Request(request_id=f"g-{i}", trace_id=f"g-{i}", prompt="p", max_tokens=OUTPUTS)
        await engine.generate(req)

    modes: dict[str, Callable[[int], Awaitable[None]]] = {
        "plain": plain,
        "plain_final": plain_final,
        "stream": stream,
        "generate": generate,
    }
    best = dict.fromkeys(modes, float("inf"))
    for _ in range(reps):
        for name, one in modes.items():
            t0 = time.process_time()
            for i in range(requests):
                await one(i)
            us = (time.process_time() - t0) / (requests * OUTPUTS) * 1e6
            best[name] = min(best[name], us)
    tel.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    return best


async def _handoff(readers: int, reps: int) -> dict[str, float]:
    """CPU per output of the hand-off alone, best of ``reps``: ``readers`` requests at once, each
    a feeder putting ``OUTPUTS`` outputs one step apart and a reader taking them, through vLLM's
    ``RequestOutputCollector`` and through the engine's ``OutputSlot`` (feeders included). The
    readers keep up, so nothing is merged: the stand-in outputs could not be."""
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.output_processor import RequestOutputCollector

    from sagellm_obs.engine.vllm_requests import OutputSlot

    class _Out:
        def __init__(self, finished: bool) -> None:
            self.finished = finished

    step, last = _Out(False), _Out(True)

    async def feed(q: Any) -> None:
        for i in range(OUTPUTS):
            await asyncio.sleep(0)
            q.put(last if i == OUTPUTS - 1 else step)

    async def read(q: Any) -> None:
        while not (q.get_nowait() or await q.get()).finished:
            pass

    makers: dict[str, Callable[[], Any]] = {
        "vllm": lambda: RequestOutputCollector(RequestOutputKind.DELTA, "r"),
        "slot": lambda: OutputSlot("r", True),
    }
    best = dict.fromkeys(makers, float("inf"))
    for _ in range(reps):
        for name, make in makers.items():
            qs = [make() for _ in range(readers)]
            t0 = time.process_time()
            await asyncio.gather(*map(feed, qs), *map(read, qs))
            us = (time.process_time() - t0) / (readers * OUTPUTS) * 1e6
            best[name] = min(best[name], us)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    best = asyncio.run(_measure(args.requests, args.reps))
    plain, final = best["plain"], best["plain_final"]
    print(
        f"CPU per output (best of {args.reps}): vLLM-style loop {plain:.2f} µs "
        f"({final:.2f} µs with FINAL_ONLY); stream +{best['stream'] - plain:.2f} µs; "
        f"generate (FINAL_ONLY) +{best['generate'] - final:.2f} µs; per request of {OUTPUTS} "
        f"outputs: stream +{(best['stream'] - plain) * OUTPUTS:.0f} µs, generate "
        f"+{(best['generate'] - final) * OUTPUTS:.0f} µs"
    )
    hand = asyncio.run(_handoff(32, 20))
    print(
        f"the hand-off alone, 32 requests at once (best of 20): vLLM's collector "
        f"{hand['vllm']:.2f} µs an output, the engine's OutputSlot {hand['slot']:.2f} µs"
    )


if __name__ == "__main__":
    main()
