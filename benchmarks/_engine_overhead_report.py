"""Statistics and tables of :mod:`benchmarks.engine_overhead`: rounds in, ratios and Markdown out.

What a round measured (:class:`Sample`, :class:`Round`), the per-mode summary and the paired ratios
against plain vLLM (:func:`summary`), their 95% intervals from the raw rounds of a result document
(:func:`intervals`), and the document's tables (:func:`render`) and target rows (:func:`headline`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks._common import (
    QUIET_CORES,
    bootstrap_ratio_ci,
    f,
    median_ci,
    p50_p99_cells,
    quantile,
    ratio,
    spread,
    table,
    throughput_cells,
    verdict,
)
from sagellm_obs.frames.analysis import MEDIAN_AND_TAIL, quantile_label


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


PAIRS = {"ours_live": "ours", "ours_kv_events": "vllm_kv"}
"""Modes also paired with another mode than plain vLLM: what they add to that mode."""
FINAL_ONLY_MODES = frozenset(("ours", "ours_live", "vllm_kv", "ours_kv_events"))
"""Modes whose requests ask vLLM for ``FINAL_ONLY`` outputs: their plain-vLLM baseline is
``vllm_final`` (vLLM asked for the same) when the run has it, else ``vllm`` (older runs)."""


def baseline(mode: str, modes: Sequence[str]) -> str:
    """The plain-vLLM mode ``mode`` is compared with: the one asking vLLM for the same outputs."""
    return "vllm_final" if mode in FINAL_ONLY_MODES and "vllm_final" in modes else "vllm"


def quiet_reps(rounds: list[Round]) -> set[int]:
    """Repetitions whose every round ran while others kept at most QUIET_CORES busy."""
    reps = {r.rep for r in rounds}
    return {k for k in reps if all(r.others <= QUIET_CORES for r in rounds if r.rep == k)}


def _pct(values: list[float]) -> dict[str, float]:
    xs = [v for v in values if not math.isnan(v)]
    return {quantile_label(q): quantile(xs, q) * 1e3 for q in MEDIAN_AND_TAIL}


def _summary(rounds: list[Round], p: dict[str, Any], modes_run: Sequence[str]) -> dict[str, Any]:
    by_mode: dict[str, list[Round]] = {
        m: sorted((r for r in rounds if r.mode == m), key=lambda r: r.rep) for m in modes_run
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

    def compare(mode: str, against: str) -> dict[str, Any]:
        a, b = by_mode[against], by_mode[mode]
        return {
            "throughput_ratio": spread(
                [ratio(y.tokens / y.wall, x.tokens / x.wall) for x, y in zip(a, b, strict=True)]
            ),
            **{
                f"{key}_{q}_ratio": ratio(
                    modes[mode][f"{key}_ms"][q], modes[against][f"{key}_ms"][q]
                )
                for key in ("ttft", "engine_ttft", "itl")
                for q in map(quantile_label, MEDIAN_AND_TAIL)
            },
            "cpu_ms_per_request_delta": paired_delta(a, b, n),
        }

    out: dict[str, Any] = {
        "modes": modes,
        # Each mode against plain vLLM asked for the same outputs (``base``).
        "vs_vllm": {
            mode: {"base": (b := baseline(mode, modes_run)), **compare(mode, b)}
            for mode in modes_run[1:]
        },
    }
    pairs = {m: b for m, b in PAIRS.items() if m in by_mode and b in by_mode}
    if pairs:
        out["vs_base"] = {m: {"base": b, **compare(m, b)} for m, b in pairs.items()}
    return out


def summarise(rounds: list[Round], p: dict[str, Any], modes: Sequence[str]) -> dict[str, Any]:
    """The summaries of all repetitions and of the quiet ones, and which one the tables show.

    ``modes[0]`` is the baseline every other mode is paired with.
    """
    quiet = quiet_reps(rounds)
    enough = len(quiet) >= max(1, int(p["reps"]) // 2)
    return {
        "all": _summary(rounds, p, modes),
        "quiet": _summary([r for r in rounds if r.rep in quiet], p, modes) if quiet else None,
        "primary": "quiet" if enough else "all",
        "reps_run": len({r.rep for r in rounds}),
        "quiet_reps": len(quiet),
        "quiet_cores": QUIET_CORES,
    }


def raw(rounds: list[Round]) -> list[dict[str, Any]]:
    """Every round as the result file keeps it (the intervals are computed from these)."""
    return [
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
    ]


def paired_delta(a: list[Round], b: list[Round], n: int) -> dict[str, float]:
    """CPU ms per request of ``b`` minus ``a``, paired by repetition."""
    return spread([(y.cpu - x.cpu) / n * 1000 for x, y in zip(a, b, strict=True)])


_LABELS = {
    "vllm": "A: vLLM `AsyncLLM.generate` (stats on)",
    "vllm_final": "A_final: as A, `FINAL_ONLY` outputs (vLLM's server, not streamed)",
    "ours": "B: ours, `InstrumentedEngine.generate` (`FINAL_ONLY`)",
    "ours_stream": "B′: ours, `InstrumentedEngine.stream`",
    "ours_stream_no_tel": "B″: as B′, request records dropped",
    "vllm_tracing": "C: vLLM + its own tracing (OTLP/gRPC)",
    "ours_live": "L: as B, a live view open (`explore.live`, every 1 s)",
    "vllm_kv": "A_kv: as A_final, 2nd engine, vLLM's KV events on and recorded",
    "ours_kv_events": "B_kv: as B, on the KV-events engine",
    "vllm_env_uncached": "A_u: as A, vLLM's settings read from the environment at every use",
    "vllm_busy": "A_b: as A, the client spending `busy_us` of CPU per output (none of it ours)",
}


def intervals(
    r: dict[str, Any], mode: str, n: int, base: str = "vllm"
) -> dict[str, tuple[float, float]]:
    """95% intervals of ``mode`` / ``base`` (A) from the raw rounds of the reported repetitions:
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
    reps = [k for k in reps if (mode, k) in by and (base, k) in by]

    def tps(x: dict[str, Any]) -> float:
        return float(x["tokens"]) / float(x["wall_s"])

    a = [by[(base, k)] for k in reps]
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


def short(mode: str) -> str:
    """The mode's letter in the tables (A, A_final, B, ...)."""
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
    run_modes = list(modes)  # the baseline first, in the order they ran
    rows = [
        [
            _LABELS[m],
            *throughput_cells(modes[m]),
            *p50_p99_cells(modes[m]["ttft_ms"], 1),
            *p50_p99_cells(modes[m]["engine_ttft_ms"], 1),
            *p50_p99_cells(modes[m]["itl_ms"], 2),
            f(modes[m]["cpu_ms_per_request"]["median"], 3),
            f(modes[m]["engine_core_cpu_ms_per_request"]["median"], 2),
            _gc_cell(modes[m].get("gc_full")),
        ]
        for m in run_modes
    ]
    comp = []
    pairs = [(m, c.get("base", "vllm"), c) for m, c in primary["vs_vllm"].items()]
    pairs += [(m, c["base"], c) for m, c in primary.get("vs_base", {}).items()]
    for m, base, c in pairs:
        tr = c["throughput_ratio"]
        d = c["cpu_ms_per_request_delta"]
        ci = intervals(r, m, int(p["requests"]), base)
        comp.append(
            [
                f"{short(m)} / {short(base)}",
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
        ratios = ", ".join(
            f"{short(m)}/{short(every[m].get('base', 'vllm'))} "
            f"{f(every[m]['throughput_ratio']['median'], 3)}"
            for m in ("ours", "ours_stream")
            if m in every  # a run of some modes only (--set modes=...)
        )
        all_note = f" (all {r['reps_run']} repetitions: throughput {ratios})"
    return "\n".join(
        [
            f"`{doc['command']}` — {_model_label(p)}, {p['requests']} requests × "
            f"{p['max_tokens']} output tokens "
            f"(ignore_eos), concurrency {p['concurrency']}, one warm-up round per mode, then "
            f"{r['reps_run']} interleaved repetitions of the {len(run_modes)} modes, of which "
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
            f"{r['targets']['p99_ttft_ratio']}"
            + _stream_targets(r["targets"])
            + ". Percentiles pool every request of a mode "
            f"({modes['vllm']['requests']:,} requests, {modes['vllm']['tokens']:,} tokens "
            "each). TTFT/ITL: ratios of pooled percentiles (95% CI: bootstrap over repetitions); "
            "throughput and CPU: medians of per-repetition pairs (95% CI of the median). "
            f"Our telemetry recorded {f(tel['requests_recorded'])} requests and "
            f"{f(tel['steps_recorded'])} steps, {f(r['store_spans'])} spans in the store, "
            f"{tel['records_dropped']} dropped, {tel['record_failures']} failures; vLLM's tracing "
            f"sent {f(r['vllm_tracing_export_requests'])} OTLP export requests "
            f"({f(r['vllm_tracing_export_bytes'])} bytes) to the sink.{_extras_note(r, p)}",
        ]
    )


def _extras_note(r: dict[str, Any], p: dict[str, Any]) -> str:
    """What the live view and the KV-events consumer did over the run (when they ran)."""
    parts = []
    if "kv_engine_start_s" in r:
        how = (
            "with `EngineConfig(kv_events=True)` (vLLM fixes KV events at start-up)"
            if p.get("kv_events", True)
            else "**without KV events (a control run: `--set kv_events=false`)**"
        )
        parts.append(
            f" A_kv and B_kv ran on a second engine, started ({f(r['kv_engine_start_s'], 1)} s) "
            f"as the first but {how}: both engines stay up and their rounds alternate in every "
            "repetition, so the X / A ratios of those two pair rounds of two engines run side "
            "by side."
        )
    kv = r.get("kv_events")
    if kv:
        parts.append(
            f" The KV-event consumer received {f(kv['batches'])} batches ({f(kv['events'])} "
            f"events) and wrote {f(kv['records'])} records, {kv['dropped_batches']} batches "
            f"dropped, in {f(kv['cpu_seconds'], 2)} s of its thread's CPU."
        )
    live = r.get("live_view")
    if live:
        parts.append(
            f" The live view (window {f(live['window_s'], 0)} s, every {f(live['every_s'], 1)} s) "
            f"refreshed {f(live['refreshes'])} times and its widgets sent "
            f"{f(live['widget_messages'])} messages ({f(live['widget_bytes'])} bytes of JSON, "
            "encoded as a kernel would, then dropped)."
        )
    return "".join(parts)


def _stream_targets(t: dict[str, Any]) -> str:
    if "stream_throughput_ratio" not in t:
        return ""
    return (
        f" (streaming, B′: ≥ {t['stream_throughput_ratio']} and ≤ "
        f"{t['stream_p99_ttft_ratio']}, issue #18)"
    )


def headline(doc: dict[str, Any]) -> list[list[str]]:
    """Target rows for the summary table."""
    r = doc["results"]
    t = r["targets"]
    model = str(doc["params"].get("model", "tiny"))
    out = []
    compared = r[r["primary"]]["vs_vllm"]
    for mode, ttft_key, what, prefix in (
        ("ours", "engine_ttft_p99_ratio", "vLLM TTFT", ""),
        ("ours_stream", "ttft_p99_ratio", "client TTFT", "stream_"),
    ):
        if mode not in compared:  # a run of some modes only (--set modes=...)
            continue
        # (result files from before the streaming path had targets of its own use the others)
        target_tr = t.get(f"{prefix}throughput_ratio", t["throughput_ratio"])
        target_ttft = t.get(f"{prefix}p99_ttft_ratio", t["p99_ttft_ratio"])
        c = compared[mode]
        base = c.get("base", "vllm")  # (older result files compared every mode with A)
        tr, ttft = c["throughput_ratio"]["median"], c[ttft_key]
        ci = intervals(r, mode, int(doc["params"]["requests"]), base)
        tci = ci["engine_ttft_p99" if ttft_key.startswith("engine") else "ttft_p99"]
        out += [
            [
                f"output tok/s, {short(mode)} (`{mode}`) / {short(base)} (vLLM), {model} model",
                f"≥ {target_tr}",
                f"{_ci(tr, ci['throughput'])} ({r['primary']} reps)",
                verdict(*ci["throughput"], target_tr, at_least=True),
            ],
            [
                f"p99 {what}, {short(mode)} / {short(base)}, {model} model",
                f"≤ {target_ttft}",
                _ci(ttft, tci),
                verdict(*tci, target_ttft, at_least=False),
            ],
        ]
    for mode in ("ours_live", "ours_kv_events"):
        if mode not in compared:
            continue
        c = compared[mode]
        base = c.get("base", "vllm")
        tr = c["throughput_ratio"]["median"]
        ci = intervals(r, mode, int(doc["params"]["requests"]), base)
        out.append(
            [
                f"output tok/s, {short(mode)} (`{mode}`) / {short(base)} (vLLM), {model} model",
                f"≥ {t['throughput_ratio']}",
                f"{_ci(tr, ci['throughput'])} ({r['primary']} reps)",
                verdict(*ci["throughput"], t["throughput_ratio"], at_least=True),
            ]
        )
    return out
