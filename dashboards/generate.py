"""Generate the Grafana dashboards in this folder from the names in ``sagellm_obs.semconv``.

Run ``python dashboards/generate.py`` after changing a metric name; a test fails while the JSON
files differ from what this script writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sagellm_obs import semconv as sc

HERE = Path(__file__).parent
DS = {"type": "prometheus", "uid": "${datasource}"}
# Filters every query by the dashboard's model and engine pickers.
SEL = 'gen_ai_request_model=~"$model"'
STEP_SEL = 'sagellm_engine_id=~"$engine"'


TTFT = sc.M_TTFT.prometheus_name
TPOT = sc.M_TPOT.prometheus_name
E2E = sc.M_REQUEST_DURATION.prometheus_name
QUEUE = sc.M_QUEUE.prometheus_name
PREFILL = sc.M_PREFILL.prometheus_name
DECODE = sc.M_DECODE.prometheus_name
TOKENS = sc.M_TOKEN_USAGE.prometheus_name
REQS = sc.M_REQUESTS.prometheus_name
KV = sc.M_KV_USAGE.prometheus_name
RUNNING = sc.M_RUNNING.prometheus_name
WAITING = sc.M_WAITING.prometheus_name
PQ = sc.M_PREFIX_QUERIES.prometheus_name
PH = sc.M_PREFIX_HITS.prometheus_name
GEN = sc.M_GENERATION_TOKENS.prometheus_name
PROMPT = sc.M_PROMPT_TOKENS.prometheus_name
PREEMPT = sc.M_PREEMPTIONS.prometheus_name


def _quantiles(metric: str) -> list[dict[str, Any]]:
    return [
        {
            "refId": chr(65 + i),
            "expr": f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{SEL}}}[$__rate_interval])))",
            "legendFormat": f"p{int(q * 100)}",
            "exemplar": True,
        }
        for i, q in enumerate((0.5, 0.9, 0.99))
    ]


def _panel(
    pid: int,
    title: str,
    targets: list[dict[str, Any]],
    *,
    unit: str,
    x: int,
    y: int,
    w: int = 12,
    h: int = 8,
    kind: str = "timeseries",
    description: str = "",
) -> dict[str, Any]:
    for t in targets:
        t.setdefault("datasource", DS)
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": targets,
    }


def _t(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "expr": expr, "legendFormat": legend}


def overview() -> dict[str, Any]:
    """The overview dashboard: throughput, latency, phases, KV and prefix cache, load, errors."""
    panels = [
        _panel(
            1,
            "Request throughput",
            [_t(f"sum(rate({REQS}{{{SEL}}}[$__rate_interval]))", "req/s")],
            unit="reqps",
            x=0,
            y=0,
            w=6,
            kind="stat",
        ),
        _panel(
            2,
            "Output tokens/s",
            [_t(f"sum(rate({GEN}{{{STEP_SEL}}}[$__rate_interval]))", "tok/s")],
            unit="short",
            x=6,
            y=0,
            w=6,
            kind="stat",
        ),
        _panel(
            3,
            "Prefix-cache hit rate",
            [
                _t(
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
        _panel(
            4,
            "KV-cache usage",
            [_t(f"max({KV}{{{STEP_SEL}}})", "KV usage")],
            unit="percentunit",
            x=18,
            y=0,
            w=6,
            kind="gauge",
        ),
        _panel(
            5,
            "Time to first token",
            _quantiles(TTFT),
            unit="s",
            x=0,
            y=4,
            description="From arrival to the first token (queue included), per request.",
        ),
        _panel(6, "Time per output token", _quantiles(TPOT), unit="s", x=12, y=4),
        _panel(7, "End-to-end request duration", _quantiles(E2E), unit="s", x=0, y=12),
        _panel(
            8,
            "Where the time goes (mean per request)",
            [
                _t(
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
        _panel(
            9,
            "KV-cache usage over time",
            [_t(f"{KV}{{{STEP_SEL}}}", "{{sagellm_engine_id}}")],
            unit="percentunit",
            x=0,
            y=20,
        ),
        _panel(
            10,
            "Prefix-cache hit rate over time",
            [
                _t(
                    f"sum(rate({PH}{{{STEP_SEL}}}[$__rate_interval])) / sum(rate({PQ}{{{STEP_SEL}}}[$__rate_interval]))",
                    "hit rate",
                )
            ],
            unit="percentunit",
            x=12,
            y=20,
        ),
        _panel(
            11,
            "Running and waiting requests",
            [
                _t(f"sum({RUNNING}{{{STEP_SEL}}})", "running", "A"),
                _t(f"sum({WAITING}{{{STEP_SEL}}})", "waiting", "B"),
            ],
            unit="short",
            x=0,
            y=28,
        ),
        _panel(
            12,
            "Tokens/s",
            [
                _t(f"sum(rate({PROMPT}{{{STEP_SEL}}}[$__rate_interval]))", "prompt", "A"),
                _t(f"sum(rate({GEN}{{{STEP_SEL}}}[$__rate_interval]))", "generated", "B"),
            ],
            unit="short",
            x=12,
            y=28,
        ),
        _panel(
            13,
            "Preemptions/s",
            [_t(f"sum(rate({PREEMPT}{{{STEP_SEL}}}[$__rate_interval]))", "preemptions")],
            unit="short",
            x=0,
            y=36,
        ),
        _panel(
            14,
            "Requests by finish reason and error",
            [
                _t(
                    f"sum by (gen_ai_response_finish_reasons, error_type) (rate({REQS}{{{SEL}}}[$__rate_interval]))",
                    "{{gen_ai_response_finish_reasons}} {{error_type}}",
                ),
            ],
            unit="reqps",
            x=12,
            y=36,
        ),
        _panel(
            15,
            "Tokens per request (mean)",
            [
                _t(
                    f'sum(rate({TOKENS}_sum{{{SEL},gen_ai_token_type="input"}}[$__rate_interval])) / sum(rate({TOKENS}_count{{{SEL},gen_ai_token_type="input"}}[$__rate_interval]))',
                    "input",
                    "A",
                ),
                _t(
                    f'sum(rate({TOKENS}_sum{{{SEL},gen_ai_token_type="output"}}[$__rate_interval])) / sum(rate({TOKENS}_count{{{SEL},gen_ai_token_type="output"}}[$__rate_interval]))',
                    "output",
                    "B",
                ),
            ],
            unit="short",
            x=0,
            y=44,
        ),
    ]
    return {
        "uid": "sagellm-obs-overview",
        "title": "sagellm-obs: LLM inference overview",
        "tags": ["sagellm-obs", "vllm", "llm"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "Prometheus", "value": "prometheus"},
                },
                {
                    "name": "model",
                    "type": "query",
                    "datasource": DS,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "query": {"query": f"label_values({REQS}, gen_ai_request_model)", "refId": "m"},
                    "refresh": 2,
                },
                {
                    "name": "engine",
                    "type": "query",
                    "datasource": DS,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "query": {"query": f"label_values({KV}, sagellm_engine_id)", "refId": "e"},
                    "refresh": 2,
                },
            ]
        },
        "links": [
            {
                "title": "Traces (Tempo)",
                "type": "link",
                "url": "/explore?left=%7B%22datasource%22:%22tempo%22%7D",
            }
        ],
        "panels": panels,
    }


def write(check: bool = False) -> bool:
    """Write (or, with ``check``, compare) every dashboard; returns True when all match."""
    ok = True
    for name, board in {"sagellm-overview.json": overview()}.items():
        text = json.dumps(board, indent=2) + "\n"
        path = HERE / "grafana" / name
        if check:
            ok = ok and path.is_file() and path.read_text() == text
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return ok


if __name__ == "__main__":
    sys.exit(0 if write(check="--check" in sys.argv) else 1)
