"""The overview dashboard's "Fleet / per engine" row: each engine side by side, and which one holds
the fleet back."""

from __future__ import annotations

from typing import Any

from dashboards._grafana import panel, target
from dashboards._promql import (
    BY_ENGINE,
    ENGINE_LEGEND,
    FLEET_SEL,
    GEN,
    REQS,
    RUNNING,
    SEL,
    STEP_SEL,
    TOKENS_OUT,
    TTFT,
    WAITING,
    by_engine_quantile,
    either,
    share,
)
from sagellm_obs import semconv as sc
from sagellm_obs.frames.analysis import MEDIAN_AND_TAIL, quantile_label

FLEET_ROW_Y = 56
# Panels whose queries read the whole fleet on purpose (a denominator, the fleet's p99) next to
# the picked engines: the one place a selector leaves ``$engine`` out.
FLEET_WIDE_PANELS = (24, 25, 26)


def fleet_row() -> list[dict[str, Any]]:
    """ "Fleet / per engine": each engine side by side, and which one holds the fleet back."""
    y = FLEET_ROW_Y + 1
    row = {
        "id": 19,
        "type": "row",
        "title": "Fleet / per engine",
        "collapsed": False,
        "gridPos": {"x": 0, "y": FLEET_ROW_Y, "w": 24, "h": 1},
        "panels": [],
    }
    return [
        row,
        panel(
            20,
            "Output tokens/s per engine",
            [
                target(
                    f"sum by ({BY_ENGINE}) (rate({GEN}{{{STEP_SEL}}}[$__rate_interval]))",
                    ENGINE_LEGEND,
                )
            ],
            unit="short",
            x=0,
            y=y,
            description="Tokens generated per second by each engine (replica and data-parallel rank).",
        ),
        panel(
            9,
            "KV-cache usage per engine",
            [target(f"max by ({BY_ENGINE}) ({either(sc.M_KV_USAGE, STEP_SEL)})", ENGINE_LEGEND)],
            unit="percentunit",
            x=12,
            y=y,
        ),
        panel(
            21,
            "Queue depth per engine (running, waiting)",
            [
                target(
                    f"sum by ({BY_ENGINE}) ({RUNNING}{{{STEP_SEL}}})",
                    f"{ENGINE_LEGEND} running",
                    "A",
                ),
                target(
                    f"sum by ({BY_ENGINE}) ({WAITING}{{{STEP_SEL}}})",
                    f"{ENGINE_LEGEND} waiting",
                    "B",
                ),
            ],
            unit="short",
            x=0,
            y=y + 8,
        ),
        panel(
            22,
            "Time to first token per engine",
            [
                target(by_engine_quantile(q), f"{ENGINE_LEGEND} {quantile_label(q)}", ref)
                for ref, q in zip("AB", MEDIAN_AND_TAIL, strict=True)
            ],
            unit="s",
            x=12,
            y=y + 8,
        ),
        panel(
            23,
            "Requests/s per engine",
            [
                target(
                    f"sum by ({BY_ENGINE}) (rate({REQS}{{{SEL}}}[$__rate_interval]))",
                    ENGINE_LEGEND,
                )
            ],
            unit="reqps",
            x=0,
            y=y + 16,
        ),
        panel(
            24,
            "Share of requests per engine",
            [target(share(REQS), ENGINE_LEGEND)],
            unit="percentunit",
            x=12,
            y=y + 16,
            stacked=True,
            description=(
                "Each engine's share of the fleet's finished requests (every engine of the job "
                "and model): stacked, 100 % with every engine picked. Equal shares are balance."
            ),
        ),
        panel(
            25,
            "Share of output tokens per engine",
            [target(share(f"{TOKENS_OUT}_sum"), ENGINE_LEGEND)],
            unit="percentunit",
            x=0,
            y=y + 24,
            stacked=True,
            description="Each engine's share of the fleet's output tokens (successful requests).",
        ),
        panel(
            26,
            "Slowest engine vs the fleet: p99 TTFT",
            [
                target(f"topk(1, {by_engine_quantile(0.99)})", f"slowest: {ENGINE_LEGEND}", "A"),
                target(
                    f"histogram_quantile(0.99, sum by (le) "
                    f"(rate({TTFT}_bucket{{{FLEET_SEL}}}[$__rate_interval])))",
                    "fleet",
                    "B",
                ),
            ],
            unit="s",
            x=12,
            y=y + 24,
            description=(
                "The p99 time to first token of the picked engine with the highest one, against "
                "the whole fleet's: far apart, that engine holds the fleet's tail back."
            ),
        ),
    ]
