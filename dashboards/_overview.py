"""The overview dashboard's panels above the fleet row: throughput, latency, phases, KV and prefix
cache, load, errors, SLO attainment."""

from __future__ import annotations

from typing import Any

from dashboards._grafana import panel, quantile_targets, target
from dashboards._promql import (
    DECODE,
    E2E,
    GEN,
    PH,
    PQ,
    PREEMPT,
    PREFILL,
    PROMPT,
    QUEUE,
    REQS,
    RUNNING,
    SEL,
    STEP_SEL,
    TOKENS_IN,
    TOKENS_OUT,
    TPOT,
    TTFT,
    WAITING,
    attainment,
    either,
    le_match,
)
from sagellm_obs import semconv as sc


def overview_panels() -> list[dict[str, Any]]:
    """Panels 1-18: the stats on top, then latency, phases, cache, load, errors and SLOs."""
    return [
        panel(
            1,
            "Request throughput",
            [target(f"sum(rate({REQS}{{{SEL}}}[$__rate_interval]))", "req/s")],
            unit="reqps",
            x=0,
            y=0,
            w=6,
            kind="stat",
        ),
        panel(
            2,
            "Output tokens/s",
            [target(f"sum(rate({GEN}{{{STEP_SEL}}}[$__rate_interval]))", "tok/s")],
            unit="short",
            x=6,
            y=0,
            w=6,
            kind="stat",
        ),
        panel(
            3,
            "Prefix-cache hit rate",
            [
                target(
                    f"sum(rate({PH}{{{STEP_SEL}}}[$__rate_interval])) / sum(rate({PQ}{{{STEP_SEL}}}[$__rate_interval]))",
                    "hit rate",
                )
            ],
            unit="percentunit",
            x=12,
            y=0,
            w=6,
            kind="stat",
            description="Prompt tokens found in vLLM's prefix cache / tokens looked up.",
        ),
        panel(
            4,
            "KV-cache usage",
            [target(f"max({either(sc.M_KV_USAGE, STEP_SEL)})", "KV usage")],
            unit="percentunit",
            x=18,
            y=0,
            w=6,
            kind="gauge",
        ),
        panel(
            5,
            "Time to first token",
            quantile_targets(TTFT),
            unit="s",
            x=0,
            y=4,
            description="From arrival to the first token (queue included), per request.",
        ),
        panel(6, "Time per output token", quantile_targets(TPOT), unit="s", x=12, y=4),
        panel(7, "End-to-end request duration", quantile_targets(E2E), unit="s", x=0, y=12),
        panel(
            8,
            "Where the time goes (mean per request)",
            [
                target(
                    f"sum(rate({m}_sum{{{SEL}}}[$__rate_interval])) / sum(rate({m}_count{{{SEL}}}[$__rate_interval]))",
                    label,
                    ref,
                )
                for m, label, ref in (
                    (QUEUE, "queue", "A"),
                    (PREFILL, "prefill", "B"),
                    (DECODE, "decode", "C"),
                )
            ],
            unit="s",
            x=12,
            y=12,
            description="Mean queue, prefill and decode time per request.",
        ),
        panel(
            10,
            "Prefix-cache hit rate over time",
            [
                target(
                    f"sum(rate({PH}{{{STEP_SEL}}}[$__rate_interval])) / sum(rate({PQ}{{{STEP_SEL}}}[$__rate_interval]))",
                    "hit rate",
                )
            ],
            unit="percentunit",
            x=0,
            y=20,
            w=24,
        ),
        panel(
            11,
            "Running and waiting requests",
            [
                target(f"sum({RUNNING}{{{STEP_SEL}}})", "running", "A"),
                target(f"sum({WAITING}{{{STEP_SEL}}})", "waiting", "B"),
            ],
            unit="short",
            x=0,
            y=28,
        ),
        panel(
            12,
            "Tokens/s",
            [
                target(f"sum(rate({PROMPT}{{{STEP_SEL}}}[$__rate_interval]))", "prompt", "A"),
                target(f"sum(rate({GEN}{{{STEP_SEL}}}[$__rate_interval]))", "generated", "B"),
            ],
            unit="short",
            x=12,
            y=28,
        ),
        panel(
            13,
            "Preemptions/s",
            [target(f"sum(rate({PREEMPT}{{{STEP_SEL}}}[$__rate_interval]))", "preemptions")],
            unit="short",
            x=0,
            y=36,
        ),
        panel(
            14,
            "Requests by finish reason and error",
            [
                target(
                    f"sum by (gen_ai_response_finish_reasons, error_type) (rate({REQS}{{{SEL}}}[$__rate_interval]))",
                    "{{gen_ai_response_finish_reasons}} {{error_type}}",
                ),
            ],
            unit="reqps",
            x=12,
            y=36,
        ),
        panel(
            15,
            "Tokens per request (mean)",
            [
                target(
                    f"sum(rate({m}_sum{{{SEL}}}[$__rate_interval])) / sum(rate({m}_count{{{SEL}}}[$__rate_interval]))",
                    label,
                    ref,
                )
                for m, label, ref in ((TOKENS_IN, "input", "A"), (TOKENS_OUT, "output", "B"))
            ],
            unit="short",
            x=0,
            y=44,
        ),
        panel(
            16,
            "SLO attainment",
            [
                target(attainment(TTFT, "ttft_slo"), "TTFT <= ${ttft_slo} s", "A"),
                target(attainment(TPOT, "tpot_slo"), "TPOT <= ${tpot_slo} s", "B"),
                target(attainment(E2E, "e2e_slo"), "E2E <= ${e2e_slo} s", "C"),
            ],
            unit="percentunit",
            x=12,
            y=44,
            description=(
                "Share of requests within each SLO picked at the top (a bucket bound). Goodput, "
                "the share meeting every SLO at once, is at most the lowest of these; the run "
                "summary computes it exactly per request."
            ),
        ),
        panel(
            17,
            "Good requests/s (upper bound)",
            [
                target(
                    f"clamp_max(sum(rate({TTFT}_bucket{{{SEL},{le_match('ttft_slo')}}}[$__rate_interval])), "
                    f"scalar(sum(rate({E2E}_bucket{{{SEL},{le_match('e2e_slo')}}}[$__rate_interval]))))",
                    "good req/s, at most",
                ),
            ],
            unit="reqps",
            x=0,
            y=52,
            w=6,
            kind="stat",
            description="Requests/s within both the TTFT and the E2E SLO, at most (the smaller of the two rates).",
        ),
        panel(
            18,
            "Error ratio",
            [
                target(
                    f'sum(rate({REQS}{{{SEL},error_type!=""}}[$__rate_interval]) or vector(0)) / sum(rate({REQS}{{{SEL}}}[$__rate_interval]))',
                    "errors",
                )
            ],
            unit="percentunit",
            x=6,
            y=52,
            w=6,
            kind="stat",
            description="Failed requests (error.type set) / all finished requests.",
        ),
    ]
