"""Statistics and tables of :mod:`benchmarks.telemetry_cost`: measured loops in, Markdown out.

The per-variant CPU net of the telemetry-off loop and the paired full / vLLM-style ratio
(:func:`summarise`), the document's tables (:func:`render`) and its target row (:func:`headline`).
"""

from __future__ import annotations

from typing import Any

from benchmarks._common import (
    QUIET_CORES,
    f,
    median,
    median_ci,
    met,
    ratio,
    spread,
    table,
    verdict,
)
from benchmarks._telemetry_cost_variants import ASSUMED_RATE

TARGET_US = 30.0  # issue #7's absolute target, kept for reference
TARGET_RATIO = 0.3  # issue #18: full / vLLM-style CPU per request, paired in the same run


def summarise(
    raw: dict[str, list[dict[str, float]]],
    *,
    n: int,
    want: int,
    reps: int,
    spans_got: dict[str, int | None],
    spans_expected: dict[str, int],
    metric_export: dict[str, float],
    prof_ours: dict[str, Any],
    prof_vllm: dict[str, Any],
) -> dict[str, Any]:
    """The ``results`` of a run from its measured loops (``raw``: per variant, one per repetition).

    The quiet repetitions are summarised when there are at least ``want / 2`` of them, else all.
    """
    quiet_idx = [
        k for k in range(reps) if all(raw[v][k]["others_cores"] <= QUIET_CORES for v in raw)
    ]
    primary = "quiet" if len(quiet_idx) >= max(1, want // 2) else "all"
    every = raw
    if primary == "quiet":
        raw = {v: [ms[k] for k in quiet_idx] for v, ms in raw.items()}
    base = [m["cpu"] for m in raw["off"]]
    hot_base = median([m["hot_cpu"] / n * 1e6 for m in raw["off"]])
    hot_wall_base = median([m["hot_wall"] / n * 1e6 for m in raw["off"]])
    per_variant: dict[str, Any] = {}
    for name in raw:
        net = [(m["cpu"] - b) / n * 1e6 for m, b in zip(raw[name], base, strict=True)]
        hot = median([m["hot_cpu"] / n * 1e6 for m in raw[name]])
        hot_wall = median([m["hot_wall"] / n * 1e6 for m in raw[name]])
        per_variant[name] = {
            "cpu_us_per_request": spread(net),
            "gross_cpu_us_per_request": median([m["cpu"] / n * 1e6 for m in raw[name]]),
            "hot_path_cpu_us_per_call": hot - hot_base,
            "hot_path_wall_us_per_call": hot_wall - hot_wall_base,
            "gross_hot_path_cpu_us_per_call": hot,
            "wall_s": median([m["wall"] for m in raw[name]]),
            "others_cores": median([m["others_cores"] for m in raw[name]]),
            "spans_exported": spans_got.get(name),
            "spans_expected": spans_expected.get(name),
        }
    ours = per_variant["full"]["cpu_us_per_request"]["median"]
    vllm = per_variant["vllm_style"]["cpu_us_per_request"]["median"]
    paired = [
        ratio(a["cpu"] - b, c["cpu"] - b)
        for a, c, b in zip(raw["full"], raw["vllm_style"], base, strict=True)
    ]
    results = {
        "variants": per_variant,
        "full_over_vllm_style": spread(paired),
        "full_over_vllm_style_ci": median_ci(paired),
        **_copies(raw, base, n),
        "target_ratio": TARGET_RATIO,
        "target_us": TARGET_US,
        "gap_us": ours - TARGET_US,
        "ours_us": ours,
        "vllm_style_us": vllm,
        "metric_export": metric_export,
        "assumed_rate_req_s": ASSUMED_RATE,
        "profile_ours": prof_ours,
        "profile_vllm_style": prof_vllm,
        "primary": primary,
        "reps_run": reps,
        "quiet_reps": len(quiet_idx),
        "quiet_cores": QUIET_CORES,
        "raw": every,
    }
    return results


def _copies(raw: dict[str, list[dict[str, float]]], base: list[float], n: int) -> dict[str, Any]:
    """What the columnar copies add to ``full``, paired per repetition (absent in old runs)."""
    if "copies" not in raw:
        return {}
    extra = [
        (c["cpu"] - f_["cpu"]) / n * 1e6 for c, f_ in zip(raw["copies"], raw["full"], strict=True)
    ]
    paired = [
        ratio(c["cpu"] - b, v["cpu"] - b)
        for c, v, b in zip(raw["copies"], raw["vllm_style"], base, strict=True)
    ]
    return {
        "copies_us": spread(extra),
        "copies_us_ci": median_ci(extra),
        "copies_over_vllm_style": spread(paired),
        "copies_over_vllm_style_ci": median_ci(paired),
    }


# --- report --------------------------------------------------------------------------------------

_LABELS = {
    "full": "ours, full (store on, columnar copies off)",
    "copies": "ours, full + the store's columnar copies (the default)",
    "store_off": "ours, store off",
    "spans_only": "ours, spans only (store on, no metrics)",
    "otlp": "ours, full + OTLP protobuf exporter (network dropped)",
    "sdk_path": "ours, full, a user's span processor present (SDK spans)",
    "sdk_metrics": "ours, full, request metrics through the SDK's instruments (the fallback)",
    "vllm_style": "vLLM-style single span + OTLP protobuf",
}


def render(doc: dict[str, Any]) -> str:
    """Markdown tables of a result document."""
    r = doc["results"]
    p = doc["params"]
    v = r["variants"]
    metrics_us = (
        v["full"]["cpu_us_per_request"]["median"] - v["spans_only"]["cpu_us_per_request"]["median"]
    )
    sdk_metrics = ""
    if "sdk_metrics" in v:
        sdk_us = (
            v["sdk_metrics"]["cpu_us_per_request"]["median"]
            - v["spans_only"]["cpu_us_per_request"]["median"]
        )
        sdk_metrics = f"; through the SDK's instruments instead: {f(sdk_us, 1)} µs"
    rows = []
    for name in _LABELS:
        if name not in v:  # a result from before the variant existed
            continue
        x = v[name]
        c = x["cpu_us_per_request"]
        spans = (
            "n/a"
            if x["spans_exported"] is None
            else f"{x['spans_exported']:,}/{x['spans_expected']:,}"
        )
        rows.append(
            [
                _LABELS[name],
                f"**{f(c['median'], 1)}**",
                f"{f(c['min'], 1)} – {f(c['max'], 1)}",
                f(x["hot_path_cpu_us_per_call"], 2),
                f(x["hot_path_wall_us_per_call"], 2),
                spans,
                f(x["others_cores"], 2),
            ]
        )
    out = [
        f"`{doc['command']}` — {p['records']:,} requests per variant per repetition, "
        f"{r['reps_run']} interleaved repetitions, {r['quiet_reps']} quiet (other processes ≤ "
        f"{r['quiet_cores']} cores busy); **{r['primary']} repetitions** shown. "
        "CPU = whole process (all threads) minus the same "
        f"loop with telemetry off ({f(v['off']['gross_cpu_us_per_request'], 2)} µs/request); "
        "hot path = the calling thread only, per call, minus the loop's own "
        f"{f(v['off']['gross_hot_path_cpu_us_per_call'], 2)} µs.",
        "",
        table(
            [
                "variant",
                "CPU µs/request (median)",
                "min – max",
                "hot path CPU µs/call",
                "hot path wall µs/call",
                "spans exported",
                "others' load (cores)",
            ],
            rows,
        ),
        "",
        f"Ours (full) **{f(r['ours_us'], 1)} µs** vs vLLM-style **{f(r['vllm_style_us'], 1)} µs** "
        f"per request: ratio {f(r['full_over_vllm_style']['median'], 2)} (paired per repetition, "
        f"min {f(r['full_over_vllm_style']['min'], 2)}, max "
        f"{f(r['full_over_vllm_style']['max'], 2)}{_ratio_ci(r)}); target ≤ "
        f"{f(r.get('target_ratio', TARGET_RATIO), 1)}×. The earlier absolute target ≤ "
        f"{f(r['target_us'], 0)} µs: gap {f(r['gap_us'], 1)} µs. "
        "Metrics share (full − spans only): "
        f"{f(metrics_us, 1)} µs{sdk_metrics}.{_copies_text(r)}",
        "",
        f"Periodic metric export to the store: {f(r['metric_export']['ms_per_export'], 2)} ms CPU "
        f"per export (every 5 s), i.e. {f(r['metric_export']['us_per_request_at_rate'], 1)} µs per "
        f"request at {f(r['assumed_rate_req_s'], 0)} requests/s (included above only in "
        "proportion to the exports that fell inside the loop).",
    ]
    for key, title in (
        ("profile_ours", "Where our cost goes"),
        ("profile_vllm_style", "Where the vLLM-style cost goes"),
    ):
        prof = r[key]
        scale = (r["ours_us"] if key == "profile_ours" else r["vllm_style_us"]) / prof[
            "profiled_us_per_request"
        ]
        out += [
            "",
            f"**{title}** (cProfile, one thread, {prof['requests']:,} requests; "
            f"{f(prof['profiled_us_per_request'], 1)} µs/request under the profiler; "
            "µs below scaled to the unprofiled cost, inclusive times, indented rows are part of "
            "the row above):",
            "",
            table(
                ["part", "share", "≈ µs/request"],
                [
                    [
                        row["part"].replace("  of which", "&nbsp;&nbsp;↳ of which"),
                        f"{row['share'] * 100:.0f}%",
                        f(row["us_profiled"] * scale, 1),
                    ]
                    for row in prof["parts"]
                ],
            ),
        ]
    prof = r["profile_ours"]
    out += [
        "",
        "<details><summary>Top functions of our path by own time (cProfile)</summary>",
        "",
        table(
            ["function", "calls/request", "own µs/request (profiled)", "cumulative µs/request"],
            [
                [
                    f"`{t['function']}`",
                    f(t["calls_per_request"], 1),
                    f(t["tottime_us"], 1),
                    f(t["cumtime_us"], 1),
                ]
                for t in prof["top_tottime"]
            ],
        ),
        "",
        "</details>",
    ]
    return "\n".join(out)


def _copies_text(r: dict[str, Any]) -> str:
    if "copies_us" not in r:
        return ""
    ci, rci = r["copies_us_ci"], r["copies_over_vllm_style_ci"]
    return (
        f" The columnar copies (the store's sealing thread parsing each finished file into "
        f"Parquet, issue #14) add **{f(r['copies_us']['median'], 1)} µs** per request "
        f"(paired, ~95% CI [{f(ci[0], 1)}, {f(ci[1], 1)}]): with them, ours is "
        f"**{f(r['copies_over_vllm_style']['median'], 2)}×** vLLM-style's "
        f"([{f(rci[0], 2)}, {f(rci[1], 2)}])."
    )


def _ratio_ci(r: dict[str, Any]) -> str:
    ci = r.get("full_over_vllm_style_ci")
    return "" if ci is None else f"; ~95% CI of the median [{f(ci[0], 2)}, {f(ci[1], 2)}]"


def headline(doc: dict[str, Any]) -> list[list[str]]:
    """Target rows for the summary table."""
    r = doc["results"]
    costs = f"{f(r['ours_us'], 1)} µs vs vLLM-style single span {f(r['vllm_style_us'], 1)} µs"
    ci = r.get("full_over_vllm_style_ci")
    if ci is None:  # a result from before the ratio target
        return [
            [
                "CPU per request of our telemetry (full, isolated)",
                f"≤ {f(r['target_us'], 0)} µs",
                costs,
                met(r["ours_us"] <= r["target_us"]),
            ]
        ]
    ratio_ = r["full_over_vllm_style"]["median"]
    rows = [
        [
            "CPU per request of our telemetry (full) / vLLM-style tracing's, same run",
            f"≤ {f(r['target_ratio'], 1)}×",
            f"{f(ratio_, 2)}× [{f(ci[0], 2)}, {f(ci[1], 2)}] ({costs})",
            verdict(ci[0], ci[1], r["target_ratio"], at_least=False),
        ]
    ]
    if "copies_us" in r:
        rci = r["copies_over_vllm_style_ci"]
        rows.append(
            [
                "the same with the store's columnar copies (the default), same run",
                "— (reported)",
                f"{f(r['copies_over_vllm_style']['median'], 2)}× [{f(rci[0], 2)}, "
                f"{f(rci[1], 2)}] (copies +{f(r['copies_us']['median'], 1)} µs)",
                "—",
            ]
        )
    return rows
