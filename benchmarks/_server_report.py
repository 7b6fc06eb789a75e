"""Statistics and tables of :mod:`benchmarks.server`: rounds in, ratios and Markdown out.

What a round measured (:class:`Sample`, :class:`Round`), the per-server summary and ours / vLLM
ratios (:func:`summarise`), their 95% intervals from the raw rounds of a result document
(:func:`intervals`), and the document's table (:func:`render`) and target rows (:func:`headline`).
"""

from __future__ import annotations

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

# The target: serving through us costs at most 2% of vLLM's own server's throughput.
TARGET_THROUGHPUT = 0.98
SERVERS = ("vllm", "ours")


@dataclass
class Sample:
    ttft: float = 0.0
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
    error: str | None = None


@dataclass
class Round:
    server: str
    rep: int
    wall: float
    cpu: float
    others: float
    samples: list[Sample]

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.samples)


def _summary(rounds: list[Round], p: dict[str, Any]) -> dict[str, Any]:
    n = int(p["requests"])
    by = {s: sorted((r for r in rounds if r.server == s), key=lambda r: r.rep) for s in SERVERS}
    out: dict[str, Any] = {}
    for name, rs in by.items():
        ttft = [s.ttft for r in rs for s in r.samples if s.error is None]
        itl = [g for r in rs for s in r.samples for g in s.gaps]
        out[name] = {
            "tok_s": spread([r.tokens / r.wall for r in rs]),
            "cpu_ms_per_request": spread([r.cpu / n * 1000 for r in rs]),
            "ttft_ms": {quantile_label(q): quantile(ttft, q) * 1e3 for q in MEDIAN_AND_TAIL},
            "itl_ms": {quantile_label(q): quantile(itl, q) * 1e3 for q in MEDIAN_AND_TAIL},
            "errors": sum(1 for r in rs for s in r.samples if s.error is not None),
            "first_error": next((s.error for r in rs for s in r.samples if s.error), None),
            "tokens": sum(r.tokens for r in rs),
            "others_cores": spread([r.others for r in rs]),
        }
    a, b = out["vllm"], out["ours"]
    comparison = {
        "throughput_ratio": spread(
            [
                ratio(y.tokens / y.wall, x.tokens / x.wall)
                for x, y in zip(by["vllm"], by["ours"], strict=True)
            ]
        ),
        "ttft_p50_ratio": ratio(b["ttft_ms"]["p50"], a["ttft_ms"]["p50"]),
        "ttft_p99_ratio": ratio(b["ttft_ms"]["p99"], a["ttft_ms"]["p99"]),
        "itl_p50_ratio": ratio(b["itl_ms"]["p50"], a["itl_ms"]["p50"]),
        "itl_p99_ratio": ratio(b["itl_ms"]["p99"], a["itl_ms"]["p99"]),
        "cpu_ratio": ratio(b["cpu_ms_per_request"]["median"], a["cpu_ms_per_request"]["median"]),
    }
    return {"servers": out, "ours_over_vllm": comparison}


def summarise(rounds: list[Round], p: dict[str, Any], start_s: float) -> dict[str, Any]:
    """The ``results`` of a run: all repetitions, the quiet ones, and the raw rounds."""
    reps = {r.rep for r in rounds}
    quiet_reps = {k for k in reps if all(r.others <= QUIET_CORES for r in rounds if r.rep == k)}
    enough = len(quiet_reps) >= max(1, int(p["reps"]) // 2)
    results = {
        "all": _summary(rounds, p),
        "quiet": _summary([r for r in rounds if r.rep in quiet_reps], p) if quiet_reps else None,
        "primary": "quiet" if enough else "all",
        "reps_run": len(reps),
        "quiet_reps": len(quiet_reps),
        "quiet_cores": QUIET_CORES,
        "start_s": start_s,
        "raw": [
            {
                "server": r.server,
                "rep": r.rep,
                "others_cores": r.others,
                "wall_s": r.wall,
                "cpu_s": r.cpu,
                "tokens": r.tokens,
                "ttft_ms": [round(s.ttft * 1e3, 3) for s in r.samples],
            }
            for r in rounds
        ],
    }
    return results


def intervals(r: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """95% intervals of ours / vLLM from the raw rounds of the reported repetitions."""
    raw = r.get("raw", [])
    reps = sorted({x["rep"] for x in raw})
    if r["primary"] == "quiet":
        reps = [
            k
            for k in reps
            if all(x["others_cores"] <= r["quiet_cores"] for x in raw if x["rep"] == k)
        ]
    by = {(x["server"], x["rep"]): x for x in raw}
    reps = [k for k in reps if ("ours", k) in by and ("vllm", k) in by]
    a = [by[("vllm", k)] for k in reps]
    b = [by[("ours", k)] for k in reps]

    def tps(x: dict[str, Any]) -> float:
        return float(x["tokens"]) / float(x["wall_s"])

    return {
        "throughput": median_ci([tps(y) / tps(x) for x, y in zip(a, b, strict=True)]),
        "ttft_p99": bootstrap_ratio_ci([x["ttft_ms"] for x in a], [y["ttft_ms"] for y in b], 0.99),
    }


_LABELS = {
    "vllm": "`python -m vllm.entrypoints.openai.api_server`",
    "ours": "`sagellm-obs serve`",
}


def render(doc: dict[str, Any]) -> str:
    """Markdown tables of a result document."""
    r, p = doc["results"], doc["params"]
    if "skipped" in r:
        return f"Not yet measured: {r['skipped']}."
    primary = r[r["primary"]]
    s = primary["servers"]
    rows = [
        [
            _LABELS[name],
            *throughput_cells(s[name]),
            *p50_p99_cells(s[name]["ttft_ms"], 1),
            *p50_p99_cells(s[name]["itl_ms"], 2),
            f(s[name]["cpu_ms_per_request"]["median"], 2),
            f(s[name]["errors"]),
        ]
        for name in SERVERS
    ]
    c = primary["ours_over_vllm"]
    ci = intervals(r)
    return "\n".join(
        [
            f"`{doc['command']}` — {p['requests']} streamed `/v1/completions` × "
            f"{p['max_tokens']} tokens (ignore_eos), concurrency {p['concurrency']}, one warm-up "
            f"round per server, then {r['reps_run']} interleaved repetitions, {r['quiet_reps']} "
            f"quiet (other processes ≤ {r['quiet_cores']} cores busy); tables: "
            f"**{r['primary']} repetitions**. Both servers started in {f(r['start_s'], 0)} s.",
            "",
            table(
                [
                    "server",
                    "output tok/s (median)",
                    "min – max",
                    "TTFT p50 ms",
                    "TTFT p99 ms",
                    "ITL p50 ms",
                    "ITL p99 ms",
                    "server CPU ms/request",
                    "errors",
                ],
                rows,
            ),
            "",
            f"Ours / vLLM: throughput **{f(c['throughput_ratio']['median'], 3)}** (median of "
            f"per-repetition pairs, 95% CI {f(ci['throughput'][0], 3)} – "
            f"{f(ci['throughput'][1], 3)}), TTFT p50 {f(c['ttft_p50_ratio'], 3)}, "
            f"TTFT p99 **{f(c['ttft_p99_ratio'], 3)}** (bootstrap 95% CI "
            f"{f(ci['ttft_p99'][0], 3)} – {f(ci['ttft_p99'][1], 3)}), "
            f"ITL p50 {f(c['itl_p50_ratio'], 3)}, "
            f"ITL p99 {f(c['itl_p99_ratio'], 3)}, server CPU per request "
            f"{f(c['cpu_ratio'], 3)}.",
        ]
    )


def headline(doc: dict[str, Any]) -> list[list[str]]:
    """Rows for the summary table: the throughput target, and p99 TTFT for information."""
    r = doc["results"]
    if "skipped" in r:
        return [["`sagellm-obs serve` vs vLLM's server", "—", "not yet measured", "—"]]
    c = r[r["primary"]]["ours_over_vllm"]
    ci = intervals(r)
    return [
        [
            "output tok/s, `sagellm-obs serve` / vLLM's server",
            f"≥ {TARGET_THROUGHPUT}",
            f"{f(c['throughput_ratio']['median'], 3)} [{f(ci['throughput'][0], 3)}, "
            f"{f(ci['throughput'][1], 3)}]",
            verdict(*ci["throughput"], TARGET_THROUGHPUT, at_least=True),
        ],
        [
            "p99 TTFT, `sagellm-obs serve` / vLLM's server",
            "— (none set)",
            f"{f(c['ttft_p99_ratio'], 3)} [{f(ci['ttft_p99'][0], 3)}, {f(ci['ttft_p99'][1], 3)}]",
            "—",
        ],
    ]
