"""The same workload on the same vLLM engine, instrumentation off vs on, interleaved.

One vLLM ``AsyncLLM`` in its lightest layout (``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the model
runs inside EngineCore, which for ``AsyncLLM`` stays a separate process; the offline tiny model,
float32, ``enforce_eager``, 256 MiB KV cache, prefix caching on) started through
``InstrumentedEngine`` with vLLM's stats on (``disable_log_stats=False``: vLLM's logging and
Prometheus stat loggers run, as shipped) and vLLM's own tracing initialised
(``otlp_traces_endpoint`` = an OTLP/gRPC sink in another process). Rounds alternate, rotated:

* ``vllm``: ``engine.llm.generate(...)`` (vLLM's ``AsyncLLM`` directly, ``DELTA`` outputs),
  vLLM's tracing switched off. Our stat logger is attached at engine start, so it still runs
  once per engine step in this mode; our per-request path (records, spans, metrics, store lines)
  does not.
* ``ours``: ``engine.generate(Request)`` (protocol request in, ``Response`` out): our request
  path, spans, metric points and store lines, plus the stat logger. The client sees no tokens
  before the end, so its TTFT is the engine's (below) and it has no ITL.
* ``ours_stream``: ``engine.stream(Request)``: the same, with a ``StreamEventDelta`` per output.
* ``ours_stream_no_tel``: as ``ours_stream``, with the telemetry pipeline's ``submit_request``
  replaced by a no-op for the round: our request path alone (validation, protocol events,
  ``Metrics``), no spans, metric points or store lines for requests.
* ``vllm_tracing``: as ``vllm`` with vLLM's tracing on: one ``llm_request`` span per request,
  exported over OTLP/gRPC. vLLM fixes tracing at start-up; the benchmark flips
  ``AsyncLLM.output_processor.tracing_enabled``, the flag vLLM 0.32 checks per finished request,
  so all three modes share one engine and one run.

Per round: ``requests`` requests of ``max_tokens`` output tokens (``ignore_eos``), short distinct
prompts, at most ``concurrency`` in flight. TTFT and ITL are measured by the client, identically
in every streaming mode: TTFT from the call to the first output that carries tokens, ITL the gaps
between consecutive token-bearing outputs. "vLLM TTFT" is vLLM's own ``first_token_latency``
(``RequestOutput.metrics``; ``Metrics.ttft_ms`` in our responses, the same number), available in
every mode. CPU is ``time.process_time()`` of the frontend process (the
``AsyncLLM``, vLLM's output processing and stat loggers, and all of our telemetry) from the
round's start until its telemetry is flushed, per request; EngineCore's CPU (a child process) is
reported beside it.

This machine is shared: every round also measures the cores other processes kept busy
(``/proc/stat`` minus our process tree). A repetition is *quiet* when all its rounds ran with at
most ``QUIET_CORES`` of such load; the benchmark runs until ``reps`` quiet repetitions (or
``max_reps`` / ``max_seconds``), and reports the quiet ones when there are at least ``reps / 2``,
else all (the document says which).
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _otlp_sink
from benchmarks._common import (
    QUIET_CORES,
    TOY_ROUNDS,
    GcPauses,
    Options,
    OthersMeter,
    bootstrap_ratio_ci,
    f,
    median_ci,
    progress,
    quantile,
    ratio,
    rotations,
    say,
    spread,
    table,
    verdict,
    write_result,
)

NAME = "engine_overhead"
TITLE = "Engine overhead: vLLM with and without our instrumentation"
PRESETS: dict[str, dict[str, Any]] = {
    # reps: quiet repetitions wanted; at most max_reps are run, and none after max_seconds.
    "default": {
        "requests": 128,
        "max_tokens": 64,
        "concurrency": 32,
        "reps": 20,
        "max_reps": 40,
        "max_seconds": 600,
    },
    "quick": {
        "requests": 64,
        "max_tokens": 32,
        "concurrency": 16,
        "reps": 4,
        "max_reps": 8,
        "max_seconds": 180,
    },
    "toy": dict(TOY_ROUNDS),
}
MODES = ("vllm", "ours", "ours_stream", "ours_stream_no_tel", "vllm_tracing")
COMPARED = MODES[1:]
TARGET_THROUGHPUT = 0.99
TARGET_P99_TTFT = 1.02
KV_BYTES = 256 * 2**20


@dataclass
class Sample:
    """One request as the client saw it."""

    ttft: float = math.nan  # client-side; NaN when the client sees no tokens before the end
    engine_ttft: float = math.nan  # vLLM's first_token_latency
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0


@dataclass
class Round:
    mode: str
    rep: int
    wall: float
    cpu: float
    core_cpu: float
    others: float  # cores other processes kept busy meanwhile
    samples: list[Sample]
    gc_full_ms: list[float] = field(default_factory=list)  # full (gen-2) collection pauses

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.samples)


def _drop(record: Any) -> None:
    return None


def _prompt(rep: int, i: int) -> str:
    return f"Request {rep}-{i}: write a short function that returns the number {i} squared."


class Bench:
    """The engine, its telemetry, and one coroutine per mode."""

    def __init__(self, engine: Any, telemetry: Any, p: dict[str, Any], exclude: set[int]) -> None:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        self.engine = engine
        self.tel = telemetry
        self.p = p
        self.params = SamplingParams(
            max_tokens=int(p["max_tokens"]),
            ignore_eos=True,
            output_kind=RequestOutputKind.DELTA,
        )
        self.seq = 0
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

    async def vllm(self, prompt: str) -> Sample:
        s = Sample()
        t0 = last = time.perf_counter()
        async for out in self.engine.llm.generate(prompt, self.params, self._rid("vllm")):
            if out.finished and out.metrics is not None:
                s.engine_ttft = float(out.metrics.first_token_latency)
            comp = out.outputs[0] if out.outputs else None
            if comp is None or not comp.token_ids:
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
        self.engine.llm.output_processor.tracing_enabled = mode == "vllm_tracing"
        pipeline = self.tel.pipeline
        if mode == "ours_stream_no_tel":
            pipeline.submit_request = _drop  # instance attribute shadows the method
        else:
            pipeline.__dict__.pop("submit_request", None)
        if mode == "ours":
            return self.ours
        if mode.startswith("ours_stream"):
            return self.ours_stream
        return self.vllm

    def settle(self) -> None:
        """Push everything a round produced through its exporters (CPU charged to the round)."""
        from opentelemetry import trace

        self.tel.pipeline.flush()
        self.tel.tracer_provider.force_flush()
        provider = trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush()

    async def round(self, mode: str, rep: int) -> Round:
        call = self.set_mode(mode)
        sem = asyncio.Semaphore(int(self.p["concurrency"]))

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


async def _main(
    p: dict[str, Any], opts: Options, sink: _otlp_sink.Sink, name: str
) -> dict[str, Any]:
    from sagellm_obs.engine import EngineConfig, InstrumentedEngine
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
        extra={"otlp_traces_endpoint": sink.endpoint},
    )
    saved = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    rounds: list[Round] = []
    with progress(opts.show_progress) as bar:
        task = bar.add_task(f"{name} (quiet reps)", total=int(p["reps"]), status="starting vLLM")
        t0 = time.perf_counter()
        engine = await InstrumentedEngine.start(cfg, telemetry=tel)
        start_s = time.perf_counter() - t0
        # vLLM's init_tracer exports the endpoint to the environment; keep it from leaking.
        if saved is None:
            os.environ.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
        else:
            os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = saved
        bench = Bench(engine, tel, p, {sink.proc.pid})
        try:
            for mode in MODES:  # warm-up, not recorded
                bar.update(task, status=f"warm-up {_status(await bench.round(mode, -1))}")
            deadline = time.monotonic() + float(p["max_seconds"])
            rep = quiet = 0
            while quiet < int(p["reps"]) and rep < int(p["max_reps"]):
                if rep and time.monotonic() > deadline:
                    break
                batch = []
                for mode in rotations(MODES, rep):
                    batch.append(await bench.round(mode, rep))
                    bar.update(task, status=f"rep {rep + 1} {_status(batch[-1])}")
                rounds.extend(batch)
                if all(r.others <= QUIET_CORES for r in batch):
                    quiet += 1
                    bar.update(task, advance=1)
                rep += 1
        finally:
            bench.set_mode("vllm")
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
    return {"rounds": rounds, "start_s": start_s, "telemetry": stats, "store_spans": spans}


def quiet_reps(rounds: list[Round]) -> set[int]:
    """Repetitions whose every round ran while others kept at most QUIET_CORES busy."""
    reps = {r.rep for r in rounds}
    return {k for k in reps if all(r.others <= QUIET_CORES for r in rounds if r.rep == k)}


def _pct(values: list[float]) -> dict[str, float]:
    xs = [v for v in values if not math.isnan(v)]
    return {"p50": quantile(xs, 0.5) * 1e3, "p99": quantile(xs, 0.99) * 1e3}


def _summary(rounds: list[Round], p: dict[str, Any]) -> dict[str, Any]:
    by_mode: dict[str, list[Round]] = {
        m: sorted((r for r in rounds if r.mode == m), key=lambda r: r.rep) for m in MODES
    }
    n = int(p["requests"])
    modes: dict[str, Any] = {}
    for mode, rs in by_mode.items():
        samples = [s for r in rs for s in r.samples]
        modes[mode] = {
            "tok_s": spread([r.tokens / r.wall for r in rs]),
            "cpu_ms_per_request": spread([r.cpu / n * 1000 for r in rs]),
            "engine_core_cpu_ms_per_request": spread([r.core_cpu / n * 1000 for r in rs]),
            "ttft_ms": _pct([s.ttft for s in samples]),
            "engine_ttft_ms": _pct([s.engine_ttft for s in samples]),
            "itl_ms": _pct([g for s in samples for g in s.gaps]),
            "requests": len(samples),
            "tokens": sum(r.tokens for r in rs),
            "rounds": len(rs),
            "others_cores": spread([r.others for r in rs]),
            "gc_full": {
                "count": sum(len(r.gc_full_ms) for r in rs),
                "total_ms": sum(sum(r.gc_full_ms) for r in rs),
                "max_ms": max((ms for r in rs for ms in r.gc_full_ms), default=0.0),
            },
        }

    def paired(mode: str, key: Callable[[Round], float]) -> dict[str, float]:
        return spread(
            [ratio(key(b), key(a)) for a, b in zip(by_mode["vllm"], by_mode[mode], strict=True)]
        )

    comparisons: dict[str, Any] = {}
    base = modes["vllm"]
    for mode in COMPARED:
        m = modes[mode]
        comparisons[mode] = {
            "throughput_ratio": paired(mode, lambda r: r.tokens / r.wall),
            **{
                f"{key}_{q}_ratio": ratio(m[f"{key}_ms"][q], base[f"{key}_ms"][q])
                for key in ("ttft", "engine_ttft", "itl")
                for q in ("p50", "p99")
            },
            "cpu_ms_per_request_delta": paired_delta(by_mode["vllm"], by_mode[mode], n),
        }
    return {"modes": modes, "vs_vllm": comparisons}


def paired_delta(a: list[Round], b: list[Round], n: int) -> dict[str, float]:
    """CPU ms per request of ``b`` minus ``a``, paired by repetition."""
    return spread([(y.cpu - x.cpu) / n * 1000 for x, y in zip(a, b, strict=True)])


def _model_path(model: str) -> str:
    """``"tiny"`` as is (the engine builds it); another offline preset built here, as a folder."""
    if model == "tiny":
        return model
    from sagellm_obs.models import PRESETS as MODEL_PRESETS
    from sagellm_obs.models import build_model

    return str(build_model(MODEL_PRESETS[model]))


def run(
    opts: Options, *, name: str = NAME, presets: dict[str, dict[str, Any]] = PRESETS
) -> dict[str, Any]:
    """Run the benchmark; returns (and writes) the result document's ``results``.

    ``name`` and ``presets`` let a variant (another model) reuse it under its own result file.
    """
    p = opts.sizes(presets)
    sink = _otlp_sink.start()
    try:
        out = asyncio.run(_main(p, opts, sink, name))
    finally:
        received = sink.stop()
    rounds: list[Round] = out["rounds"]
    quiet = quiet_reps(rounds)
    enough = len(quiet) >= max(1, int(p["reps"]) // 2)
    results: dict[str, Any] = {
        "all": _summary(rounds, p),
        "quiet": _summary([r for r in rounds if r.rep in quiet], p) if quiet else None,
        "primary": "quiet" if enough else "all",
        "reps_run": len({r.rep for r in rounds}),
        "quiet_reps": len(quiet),
        "quiet_cores": QUIET_CORES,
    }
    results.update(
        {
            "engine_start_s": out["start_s"],
            "telemetry": out["telemetry"],
            "store_spans": out["store_spans"],
            "vllm_tracing_export_requests": received[0],
            "vllm_tracing_export_bytes": received[1],
            "targets": {"throughput_ratio": TARGET_THROUGHPUT, "p99_ttft_ratio": TARGET_P99_TTFT},
            "raw": [
                {
                    "mode": r.mode,
                    "rep": r.rep,
                    "others_cores": r.others,
                    "wall_s": r.wall,
                    "cpu_s": r.cpu,
                    "engine_core_cpu_s": r.core_cpu,
                    "tokens": r.tokens,
                    "ttft_ms": [round(s.ttft * 1e3, 3) for s in r.samples],
                    "engine_ttft_ms": [round(s.engine_ttft * 1e3, 3) for s in r.samples],
                    "gc_full_ms": [round(ms, 2) for ms in r.gc_full_ms],
                }
                for r in rounds
            ],
        }
    )
    write_result(name, opts, p, results)
    comp = results[results["primary"]]["vs_vllm"]
    b, bs = comp["ours"], comp["ours_stream"]
    say(
        f"[bold]{name}[/]: throughput B/A {b['throughput_ratio']['median']:.3f} "
        f"(stream B′/A {bs['throughput_ratio']['median']:.3f}), p99 TTFT B/A "
        f"{b['engine_ttft_p99_ratio']:.3f} (B′/A client {bs['ttft_p99_ratio']:.3f}), frontend CPU "
        f"+{b['cpu_ms_per_request_delta']['median']:.3f} ms/request"
    )
    return results


_LABELS = {
    "vllm": "A: vLLM `AsyncLLM.generate` (stats on)",
    "ours": "B: ours, `InstrumentedEngine.generate`",
    "ours_stream": "B′: ours, `InstrumentedEngine.stream`",
    "ours_stream_no_tel": "B″: as B′, request records dropped",
    "vllm_tracing": "C: vLLM + its own tracing (OTLP/gRPC)",
}


def intervals(r: dict[str, Any], mode: str, n: int) -> dict[str, tuple[float, float]]:
    """95% intervals of ``mode`` / A from the raw rounds of the reported repetitions:
    the paired throughput ratio's median (order statistics), and the pooled p99 TTFT ratios
    (bootstrap over repetitions)."""
    raw = r["raw"]
    reps = sorted({x["rep"] for x in raw})
    if r["primary"] == "quiet":
        reps = [
            k
            for k in reps
            if all(x["others_cores"] <= r["quiet_cores"] for x in raw if x["rep"] == k)
        ]
    by = {(x["mode"], x["rep"]): x for x in raw}
    reps = [k for k in reps if (mode, k) in by and ("vllm", k) in by]

    def tps(x: dict[str, Any]) -> float:
        return float(x["tokens"]) / float(x["wall_s"])

    a = [by[("vllm", k)] for k in reps]
    b = [by[(mode, k)] for k in reps]
    return {
        "throughput": median_ci([tps(y) / tps(x) for x, y in zip(a, b, strict=True)]),
        "cpu_delta": median_ci(
            [(y["cpu_s"] - x["cpu_s"]) / n * 1000 for x, y in zip(a, b, strict=True)]
        ),
        "ttft_p99": bootstrap_ratio_ci([x["ttft_ms"] for x in a], [y["ttft_ms"] for y in b], 0.99),
        "engine_ttft_p99": bootstrap_ratio_ci(
            [x["engine_ttft_ms"] for x in a], [y["engine_ttft_ms"] for y in b], 0.99
        ),
    }


def _ci(value: float, ci: tuple[float, float], digits: int = 3) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{f(value, digits)} [{f(ci[0], digits)}, {f(ci[1], digits)}]"


def _short(mode: str) -> str:
    return _LABELS[mode].split(":")[0]


def _model_label(p: dict[str, Any]) -> str:
    """The model a result was measured on, as the docs name it."""
    model = str(p.get("model", "tiny"))
    sizes = {"tiny": "3.4 M parameters", "small": "109 M parameters"}
    return f"`{model}` model ({sizes[model]})" if model in sizes else f"model `{model}`"


def _gc_cell(gc_full: dict[str, float] | None) -> str:
    """``count (max ms)`` of the full collections of a mode's rounds."""
    if gc_full is None:
        return "n/a"
    if not gc_full["count"]:
        return "0"
    return f"{int(gc_full['count'])} (max {f(gc_full['max_ms'], 0)} ms)"


def render(doc: dict[str, Any]) -> str:
    """Markdown tables of a result document."""
    r, p = doc["results"], doc["params"]
    primary = r[r["primary"]]
    modes = primary["modes"]
    rows = [
        [
            _LABELS[m],
            f(modes[m]["tok_s"]["median"], 0),
            f"{f(modes[m]['tok_s']['min'], 0)} – {f(modes[m]['tok_s']['max'], 0)}",
            f(modes[m]["ttft_ms"]["p50"], 1),
            f(modes[m]["ttft_ms"]["p99"], 1),
            f(modes[m]["engine_ttft_ms"]["p50"], 1),
            f(modes[m]["engine_ttft_ms"]["p99"], 1),
            f(modes[m]["itl_ms"]["p50"], 2),
            f(modes[m]["itl_ms"]["p99"], 2),
            f(modes[m]["cpu_ms_per_request"]["median"], 3),
            f(modes[m]["engine_core_cpu_ms_per_request"]["median"], 2),
            _gc_cell(modes[m].get("gc_full")),
        ]
        for m in MODES
    ]
    comp = []
    for m in COMPARED:
        c = primary["vs_vllm"][m]
        tr = c["throughput_ratio"]
        d = c["cpu_ms_per_request_delta"]
        ci = intervals(r, m, int(p["requests"]))
        comp.append(
            [
                f"{_short(m)} / A",
                f"**{_ci(tr['median'], ci['throughput'])}**",
                f(c["ttft_p50_ratio"], 3),
                _ci(c["ttft_p99_ratio"], ci["ttft_p99"]),
                f(c["engine_ttft_p50_ratio"], 3),
                _ci(c["engine_ttft_p99_ratio"], ci["engine_ttft_p99"]),
                f(c["itl_p50_ratio"], 3),
                f(c["itl_p99_ratio"], 3),
                _ci(d["median"], ci["cpu_delta"]),
            ]
        )
    tel = r["telemetry"]
    all_note = ""
    if r["primary"] == "quiet":
        every = r["all"]["vs_vllm"]
        all_note = " (all {} repetitions: throughput B/A {}, B′/A {})".format(
            r["reps_run"],
            f(every["ours"]["throughput_ratio"]["median"], 3),
            f(every["ours_stream"]["throughput_ratio"]["median"], 3),
        )
    return "\n".join(
        [
            f"`{doc['command']}` — {_model_label(p)}, {p['requests']} requests × "
            f"{p['max_tokens']} output tokens "
            f"(ignore_eos), concurrency {p['concurrency']}, one warm-up round per mode, then "
            f"{r['reps_run']} interleaved repetitions of the {len(MODES)} modes, of which "
            f"{r['quiet_reps']} were quiet (every round ran while other processes kept ≤ "
            f"{r['quiet_cores']} cores busy). Tables: **{r['primary']} repetitions**"
            f"{all_note}. Engine start {f(r['engine_start_s'], 1)} s.",
            "",
            table(
                [
                    "mode",
                    "output tok/s (median)",
                    "min – max",
                    "client TTFT p50 ms",
                    "client TTFT p99 ms",
                    "vLLM TTFT p50 ms",
                    "vLLM TTFT p99 ms",
                    "ITL p50 ms",
                    "ITL p99 ms",
                    "frontend CPU ms/req",
                    "EngineCore CPU ms/req",
                    "full GCs of the frontend",
                ],
                rows,
            ),
            "",
            table(
                [
                    "ratio",
                    "throughput, paired per rep [95% CI]",
                    "client TTFT p50",
                    "client TTFT p99 [95% CI]",
                    "vLLM TTFT p50",
                    "vLLM TTFT p99 [95% CI]",
                    "ITL p50",
                    "ITL p99",
                    "Δ frontend CPU ms/req, paired [95% CI]",
                ],
                comp,
            ),
            "",
            f"Targets: throughput ratio ≥ {r['targets']['throughput_ratio']}, p99 TTFT ratio ≤ "
            f"{r['targets']['p99_ttft_ratio']}. Percentiles pool every request of a mode "
            f"({modes['vllm']['requests']:,} requests, {modes['vllm']['tokens']:,} tokens "
            "each). TTFT/ITL: ratios of pooled percentiles (95% CI: bootstrap over repetitions); "
            "throughput and CPU: medians of per-repetition pairs (95% CI of the median). "
            f"Our telemetry recorded {f(tel['requests_recorded'])} requests and "
            f"{f(tel['steps_recorded'])} steps, {f(r['store_spans'])} spans in the store, "
            f"{tel['records_dropped']} dropped, {tel['record_failures']} failures; vLLM's tracing "
            f"sent {f(r['vllm_tracing_export_requests'])} OTLP export requests "
            f"({f(r['vllm_tracing_export_bytes'])} bytes) to the sink.",
        ]
    )


def headline(doc: dict[str, Any]) -> list[list[str]]:
    """Target rows for the summary table."""
    r = doc["results"]
    t = r["targets"]
    model = str(doc["params"].get("model", "tiny"))
    out = []
    for mode, ttft_key, what in (
        ("ours", "engine_ttft_p99_ratio", "vLLM TTFT"),
        ("ours_stream", "ttft_p99_ratio", "client TTFT"),
    ):
        c = r[r["primary"]]["vs_vllm"][mode]
        tr, ttft = c["throughput_ratio"]["median"], c[ttft_key]
        ci = intervals(r, mode, int(doc["params"]["requests"]))
        tci = ci["engine_ttft_p99" if ttft_key.startswith("engine") else "ttft_p99"]
        out += [
            [
                f"output tok/s, {_short(mode)} (`{mode}`) / A (vLLM), {model} model",
                f"≥ {t['throughput_ratio']}",
                f"{_ci(tr, ci['throughput'])} ({r['primary']} reps)",
                verdict(*ci["throughput"], t["throughput_ratio"], at_least=True),
            ],
            [
                f"p99 {what}, {_short(mode)} / A, {model} model",
                f"≤ {t['p99_ttft_ratio']}",
                _ci(ttft, tci),
                verdict(*tci, t["p99_ttft_ratio"], at_least=False),
            ],
        ]
    return out
