"""The same workload on the same vLLM engine, instrumentation off vs on, interleaved.

One vLLM ``AsyncLLM`` in its lightest layout (``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the model
runs inside EngineCore, for ``AsyncLLM`` a separate process; the offline tiny model, float32,
``enforce_eager``, 256 MiB KV cache of 32-token blocks, prefix caching on) started through
``InstrumentedEngine`` with vLLM's stats on, as shipped, and vLLM's own tracing initialised
(``otlp_traces_endpoint`` = an OTLP/gRPC sink in another process).

Rounds alternate, rotated, between these modes (docs/benchmarks.md section 2 defines each in
full; "ours" modes go through ``InstrumentedEngine``, the others call vLLM's ``AsyncLLM``):

* ``vllm``: ``engine.llm.generate(...)``, ``DELTA`` outputs, vLLM's tracing off. Our stat logger
  still runs once per engine step; our per-request path does not.
* ``vllm_final``: as ``vllm`` with ``FINAL_ONLY`` outputs (vLLM's server, not streamed): the
  like-for-like baseline of ``ours``, which asks for the same.
* ``ours``: ``engine.generate(Request)``: our request path, spans, metric points and store lines.
  The client sees no token before the end, so only vLLM's TTFT applies.
* ``ours_stream``: ``engine.stream(Request)``: the same, with a ``StreamEventDelta`` per output.
* ``ours_stream_no_tel``: as ``ours_stream``, the telemetry's ``submit_request`` a no-op.
* ``vllm_tracing``: as ``vllm`` with vLLM's own tracing on (``llm_request`` spans over
  OTLP/gRPC), switched per round through ``AsyncLLM.output_processor.tracing_enabled``.
* ``ours_live``: as ``ours``, notebook 07_live's view open on the run folder, refreshing on its
  thread (:mod:`benchmarks._engine_overhead_live`); brought up to date between rounds.
* ``vllm_kv`` and ``ours_kv_events``: ``vllm_final`` and ``ours`` on a second engine started with
  ``EngineConfig(kv_events=True)``; both engines stay up and their rounds alternate.
* ``vllm_busy`` (only when asked, ``--set modes=vllm,vllm_busy,ours_stream``): as ``vllm``, the
  client spending ``busy_us`` (default :data:`BUSY_US`) of CPU on the frontend's event loop per
  output (each carries a token here): frontend CPU like B′'s, none of it ours, vLLM's work
  unchanged.
* ``vllm_env_uncached`` (only when asked, ``--set modes=vllm,vllm_env_uncached``): as ``vllm``,
  vLLM's ``VLLM_*`` settings read from ``os.environ`` at every use, as ``AsyncLLM`` ships. Our
  engine caches them once vLLM is up (``cache_vllm_env``) and is shared, so every other mode runs
  with them cached: the ratios against A are our own cost.

Per round: ``requests`` requests of ``max_tokens`` output tokens (``ignore_eos``), short distinct
prompts, at most ``concurrency`` in flight. TTFT and ITL are measured by the client, identically
in every streaming mode: TTFT from the call to the first output that carries tokens, ITL the gaps
between consecutive token-bearing outputs. "vLLM TTFT" is vLLM's own ``first_token_latency``
(``RequestOutput.metrics``; ``Metrics.ttft_ms`` in our responses, the same number), available in
every mode. CPU is ``time.process_time()`` of the frontend process (the
``AsyncLLM``, vLLM's output processing and stat loggers, and all of our telemetry) from the
round's start until its telemetry is flushed, per request; EngineCore's CPU (a child process) is
reported beside it.

Before each round, unmeasured, the harness runs a full garbage collection, so that one the
harness's own garbage made due does not fall into whichever mode runs next (see
:meth:`Bench.round`); a collection a round's own work makes due is still in that round.

This machine is shared: every round also measures the cores other processes kept busy
(``/proc/stat`` minus our process tree). A repetition is *quiet* when all its rounds ran with at
most ``QUIET_CORES`` of such load; the benchmark runs until ``reps`` quiet repetitions (or
``max_reps`` / ``max_seconds``), and reports the quiet ones when there are at least ``reps / 2``,
else all (the document says which).
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks import _engine_overhead_live as live_view
from benchmarks import _engine_overhead_report as report
from benchmarks import _otlp_sink
from benchmarks._common import (
    QUIET_CORES,
    TOY_ROUNDS,
    GcPauses,
    Options,
    OthersMeter,
    progress,
    rotations,
    say,
    spend_cpu,
    write_result,
)
from benchmarks._engine_overhead_report import Round, Sample

NAME = "engine_overhead"
BLOCK_SIZE = 32
"""KV block tokens: a request (~20 prompt + 64 output tokens) fills two blocks, so vLLM stores
blocks and publishes KV events (with vLLM's CPU default of 128 it would fill none)."""
TITLE = "Engine overhead: vLLM with and without our instrumentation"
PRESETS: dict[str, dict[str, Any]] = {
    # reps: quiet repetitions wanted; at most max_reps are run, and none after max_seconds.
    "default": {
        "block_size": BLOCK_SIZE,
        "requests": 128,
        "max_tokens": 64,
        "concurrency": 32,
        "reps": 20,
        "max_reps": 40,
        "max_seconds": 720,
    },
    "quick": {
        "block_size": BLOCK_SIZE,
        "requests": 64,
        "max_tokens": 32,
        "concurrency": 16,
        "reps": 4,
        "max_reps": 8,
        "max_seconds": 180,
    },
    # 16 tokens, not 4: a toy request must fill a block, or there are no KV events to record.
    "toy": {"block_size": BLOCK_SIZE, **TOY_ROUNDS, "max_tokens": 16},
}
BASE_MODES = ("vllm", "vllm_final", "ours", "ours_stream", "ours_stream_no_tel", "vllm_tracing")
"""The modes of one engine (``engine_overhead_small`` runs these)."""
KV_MODES = ("vllm_kv", "ours_kv_events")
"""The modes of the second engine, started with vLLM's KV events on."""
MODES = (*BASE_MODES, "ours_live", *KV_MODES)
COMPARED = MODES[1:]
EXTRA_MODES = ("vllm_env_uncached", "vllm_busy")
"""Modes a run takes only when asked (``--set modes=vllm,vllm_env_uncached``)."""
BUSY_US = 8.0
"""``vllm_busy``'s CPU per output, µs: about what B′ added on 7 Dec (0.52 ms / 64 outputs)."""
TARGET_THROUGHPUT = 0.99
TARGET_P99_TTFT = 1.02
TARGET_STREAM_THROUGHPUT = 0.98
TARGET_STREAM_P99_TTFT = 1.05
"""Issue #18's targets for the streaming path (B′), which does more per output than vLLM's."""
KV_BYTES = 256 * 2**20


def _drop(record: Any) -> None:
    return None


def _prompt(rep: int, i: int) -> str:
    return f"Request {rep}-{i}: write a short function that returns the number {i} squared."


class Bench:
    """The engine(s), their telemetry, and one coroutine per mode.

    ``kv_engine`` (the ``KV_MODES``' engine) and ``view`` (``ours_live``'s live view) are None
    when the benchmark runs without those modes.
    """

    def __init__(
        self,
        engine: Any,
        telemetry: Any,
        p: dict[str, Any],
        exclude: set[int],
        *,
        kv_engine: Any = None,
        view: Any = None,
    ) -> None:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        self.base = self.engine = engine
        self.kv_engine = kv_engine
        self.view = view
        self.tel = telemetry
        self.p = p
        # A's parameters are shared by its requests; marked so that vLLM does not deep-copy
        # them for each (~37 µs), as it does not copy our engine's per-request ones: the
        # ratios stay our own cost (vLLM's server marks its own the same way).
        self.params = SamplingParams(
            max_tokens=int(p["max_tokens"]),
            ignore_eos=True,
            output_kind=RequestOutputKind.DELTA,
            skip_clone=True,
        )
        self.final_params = self.params.clone()
        self.final_params.output_kind = RequestOutputKind.FINAL_ONLY
        self.seq = 0
        self.busy_s = 0.0  # CPU the client spends per output (vllm_busy)
        import psutil

        self._me = psutil.Process()
        self._exclude = exclude

    def core_cpu(self) -> float:
        """CPU seconds of our child processes (vLLM's EngineCore)."""
        total = 0.0
        for child in self._me.children(recursive=True):
            if child.pid in self._exclude:
                continue
            try:
                t = child.cpu_times()
            except Exception:
                continue
            total += t.user + t.system
        return total

    def _rid(self, mode: str) -> str:
        self.seq += 1
        return f"{mode}-{self.seq}"

    async def vllm(self, prompt: str, *, final_only: bool = False) -> Sample:
        s = Sample()
        t0 = last = time.perf_counter()
        params = self.final_params if final_only else self.params
        busy = self.busy_s
        async for out in self.engine.llm.generate(prompt, params, self._rid("vllm")):
            if busy:
                spend_cpu(busy)
            if out.finished and out.metrics is not None:
                s.engine_ttft = float(out.metrics.first_token_latency)
            comp = out.outputs[0] if out.outputs else None
            if comp is None or not comp.token_ids:
                continue
            if final_only:  # one output at the end: the client sees no first token (as in B)
                s.tokens += len(comp.token_ids)
                continue
            now = time.perf_counter()
            if s.tokens == 0:
                s.ttft = now - t0
            else:
                s.gaps.append(now - last)
            last = now
            s.tokens += len(comp.token_ids)
        return s

    def _request(self, prompt: str, stream: bool) -> Any:
        from sagellm_obs.protocol import Request

        return Request(
            request_id=self._rid("ours"),
            trace_id=f"bench-{self.seq}",
            prompt=prompt,
            max_tokens=int(self.p["max_tokens"]),
            stream=stream,
            metadata={"ignore_eos": True},
        )

    async def ours(self, prompt: str) -> Sample:
        resp = await self.engine.generate(self._request(prompt, stream=False))
        s = Sample(tokens=len(resp.output_tokens))
        if resp.metrics is not None:
            s.engine_ttft = resp.metrics.ttft_ms / 1000.0
        return s

    async def ours_stream(self, prompt: str) -> Sample:
        from sagellm_obs.protocol import StreamEventDelta, StreamEventEnd

        s = Sample()
        t0 = last = time.perf_counter()
        async for event in self.engine.stream(self._request(prompt, stream=True)):
            if isinstance(event, StreamEventEnd) and event.metrics is not None:
                s.engine_ttft = event.metrics.ttft_ms / 1000.0
            if not isinstance(event, StreamEventDelta) or not event.content_tokens:
                continue
            now = time.perf_counter()
            if s.tokens == 0:
                s.ttft = now - t0
            else:
                s.gaps.append(now - last)
            last = now
            s.tokens += len(event.content_tokens)
        return s

    def set_mode(self, mode: str) -> Callable[[str], Awaitable[Sample]]:
        self.base.llm.output_processor.tracing_enabled = mode == "vllm_tracing"
        self.busy_s = float(self.p.get("busy_us", BUSY_US)) / 1e6 if mode == "vllm_busy" else 0.0
        import vllm.envs

        # Our engines cached vLLM's settings at start (config.cache_vllm_env); one mode reads
        # them as vLLM's AsyncLLM ships, from the environment at every use.
        uncached = mode == "vllm_env_uncached"
        (vllm.envs.disable_envs_cache if uncached else vllm.envs.enable_envs_cache)()
        self.engine = self.kv_engine if mode in KV_MODES else self.base
        pipeline = self.tel.pipeline
        if mode == "ours_stream_no_tel":
            pipeline.submit_request = _drop  # instance attribute shadows the method
        else:
            pipeline.__dict__.pop("submit_request", None)
        if self.view is not None:
            # Before the round starts (not measured): wait for a refresh in flight and read what
            # the rounds before wrote, so that a live round's refreshes read that round's lines,
            # as a view open all along would.
            self.view.pause()
            self.view.refresh()
            if mode == "ours_live":
                self.view.resume()
        if mode in ("ours", "ours_live", "ours_kv_events"):
            return self.ours
        if mode.startswith("ours_stream"):
            return self.ours_stream
        if mode in ("vllm_final", "vllm_kv"):
            return self.vllm_final
        return self.vllm

    async def vllm_final(self, prompt: str) -> Sample:
        return await self.vllm(prompt, final_only=True)

    def settle(self) -> None:
        """Push everything a round produced through its exporters (CPU charged to the round)."""
        from opentelemetry import trace

        if self.engine is self.kv_engine and self.engine.kv_events is not None:
            # The round's KV events decoded and written by the consumer thread.
            self.engine.kv_events.drain(idle=0.05, timeout=2.0)
        self.tel.pipeline.flush()
        self.tel.tracer_provider.force_flush()
        provider = trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush()

    async def round(self, mode: str, rep: int) -> Round:
        call = self.set_mode(mode)
        sem = asyncio.Semaphore(int(self.p["concurrency"]))
        # Unmeasured: collect what the harness allocated since the last round (results, the
        # view's refresh), so that a full collection inside a round is due to that round's work
        # and does not land on whichever mode happens to run when the harness's garbage tips it.
        gc.collect()

        async def one(i: int) -> Sample:
            async with sem:
                return await call(_prompt(rep, i))

        with OthersMeter() as others, GcPauses() as pauses:
            k0, c0, w0 = self.core_cpu(), time.process_time(), time.perf_counter()
            samples = await asyncio.gather(*(one(i) for i in range(int(self.p["requests"]))))
            wall = time.perf_counter() - w0
            await asyncio.to_thread(self.settle)
            cpu = time.process_time() - c0
            core = self.core_cpu() - k0
        return Round(mode, rep, wall, cpu, core, others.cores, list(samples), pauses.pauses[2])


def _status(r: Round) -> str:
    return (
        f"{r.mode}: {r.tokens / r.wall:,.0f} tok/s, {r.cpu / len(r.samples) * 1000:,.2f} ms "
        f"CPU/req, others {r.others:.2f} cores"
    )


async def _start(cfg: Any, tel: Any) -> tuple[Any, float]:
    """An engine and its start time; vLLM's tracing endpoint kept out of our environment."""
    from sagellm_obs.engine import InstrumentedEngine

    saved = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    t0 = time.perf_counter()
    engine = await InstrumentedEngine.start(cfg, telemetry=tel)
    start_s = time.perf_counter() - t0
    # vLLM's init_tracer exports the endpoint to the environment; keep it from leaking.
    if saved is None:
        os.environ.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    else:
        os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = saved
    return engine, start_s


async def _main(
    p: dict[str, Any], opts: Options, sink: _otlp_sink.Sink, name: str, modes: tuple[str, ...]
) -> dict[str, Any]:
    from sagellm_obs.engine import EngineConfig
    from sagellm_obs.telemetry import configure

    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    tel = configure(
        run_dir=tmp / "run",
        otlp_endpoint=False,
        prometheus_port=False,
        engine_id="vllm-bench",
        make_current=False,
    )
    cfg = EngineConfig(
        model=_model_path(str(p.get("model", "tiny"))),
        in_process=True,
        dtype="float32",
        enforce_eager=True,
        kv_cache_memory_bytes=KV_BYTES,
        enable_prefix_caching=True,
        block_size=p.get("block_size"),
        extra={"otlp_traces_endpoint": sink.endpoint},
    )
    rounds: list[Round] = []
    extra: dict[str, Any] = {}
    with progress(opts.show_progress) as bar:
        task = bar.add_task(f"{name} (quiet reps)", total=int(p["reps"]), status="starting vLLM")
        engine, start_s = await _start(cfg, tel)
        kv_engine = view = None
        if any(m in KV_MODES for m in modes):
            # The same engine but for the KV events, which vLLM fixes at start-up; both stay up
            # and the rounds of the two alternate, so each repetition pairs them in time.
            bar.update(task, status="starting vLLM with KV events")
            kv_cfg = replace(cfg, kv_events=bool(p.get("kv_events", True)))  # False: a control
            kv_engine, extra["kv_engine_start_s"] = await _start(kv_cfg, tel)
        if "ours_live" in modes:
            view = live_view.open_paused(tmp / "run")
        bench = Bench(engine, tel, p, {sink.proc.pid}, kv_engine=kv_engine, view=view)
        try:
            for mode in modes:  # warm-up, not recorded
                bar.update(task, status=f"warm-up {_status(await bench.round(mode, -1))}")
            deadline = time.monotonic() + float(p["max_seconds"])
            rep = quiet = 0
            while quiet < int(p["reps"]) and rep < int(p["max_reps"]):
                if rep and time.monotonic() > deadline:
                    break
                batch = []
                for mode in rotations(modes, rep):
                    batch.append(await bench.round(mode, rep))
                    bar.update(task, status=f"rep {rep + 1} {_status(batch[-1])}")
                rounds.extend(batch)
                if all(r.others <= QUIET_CORES for r in batch):
                    quiet += 1
                    bar.update(task, advance=1)
                rep += 1
        finally:
            bench.set_mode("vllm")
            if view is not None:
                view.stop()
                extra["live_view"] = live_view.figures(view)
            if kv_engine is not None:
                consumer = kv_engine.kv_events
                kv_engine.shutdown()  # drains what the last steps published
                if consumer is not None:
                    extra["kv_events"] = asdict(consumer.counts)
            engine.shutdown()
    stats = tel.stats()
    spans = sum(p.read_bytes().count(b'"spanId":') for p in (tmp / "run").glob("traces-*.jsonl"))
    tel.shutdown()
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if stop is not None:
        stop()
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "rounds": rounds,
        "start_s": start_s,
        "telemetry": stats,
        "store_spans": spans,
        "extra": extra,
    }


def _model_path(model: str) -> str:
    """``"tiny"`` as is (the engine builds it); another offline preset built here, as a folder."""
    if model == "tiny":
        return model
    from sagellm_obs.models import PRESETS as MODEL_PRESETS
    from sagellm_obs.models import build_model

    return str(build_model(MODEL_PRESETS[model]))


def run(
    opts: Options,
    *,
    name: str = NAME,
    presets: dict[str, dict[str, Any]] = PRESETS,
    modes: tuple[str, ...] = MODES,
) -> dict[str, Any]:
    """Run the benchmark; returns (and writes) the result document's ``results``.

    ``name``, ``presets`` and ``modes`` let a variant (another model) reuse it under its own
    result file.
    """
    p = opts.sizes(presets)
    if "modes" in p:  # --set modes=vllm,ours,ours_live: a subset (the first is the baseline)
        modes = tuple(str(p["modes"]).split(","))
        unknown = [m for m in modes if m not in (*MODES, *EXTRA_MODES)]
        if unknown or modes[0] != "vllm":
            raise ValueError(
                f"modes must start with vllm and be among {(*MODES, *EXTRA_MODES)}, got {modes}"
            )
    sink = _otlp_sink.start()
    try:
        out = asyncio.run(_main(p, opts, sink, name, modes))
    finally:
        received = sink.stop()
    rounds: list[Round] = out["rounds"]
    results: dict[str, Any] = report.summarise(rounds, p, modes)
    results.update(
        {
            "engine_start_s": out["start_s"],
            "telemetry": out["telemetry"],
            "store_spans": out["store_spans"],
            "vllm_tracing_export_requests": received[0],
            "vllm_tracing_export_bytes": received[1],
            "targets": {
                "throughput_ratio": TARGET_THROUGHPUT,
                "p99_ttft_ratio": TARGET_P99_TTFT,
                "stream_throughput_ratio": TARGET_STREAM_THROUGHPUT,
                "stream_p99_ttft_ratio": TARGET_STREAM_P99_TTFT,
            },
            "raw": report.raw(rounds),
            **out["extra"],
        }
    )
    write_result(name, opts, p, results)
    comp = results[results["primary"]]["vs_vllm"]
    if "ours" not in comp or "ours_stream" not in comp:  # a subset of the modes
        say(f"[bold]{name}[/]: modes {', '.join(modes)} (see the result file)")
        return results
    b, bs = comp["ours"], comp["ours_stream"]
    a = report.short(b["base"])  # A_final when the run had it: B asks vLLM for FINAL_ONLY too
    say(
        f"[bold]{name}[/]: throughput B/{a} {b['throughput_ratio']['median']:.3f} "
        f"(stream B′/A {bs['throughput_ratio']['median']:.3f}), p99 TTFT B/{a} "
        f"{b['engine_ttft_p99_ratio']:.3f} (B′/A client {bs['ttft_p99_ratio']:.3f}), frontend CPU "
        f"B {b['cpu_ms_per_request_delta']['median']:+.3f} ms/request"
    )
    return results


render = report.render
headline = report.headline
