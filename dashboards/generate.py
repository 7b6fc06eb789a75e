"""Generate the Grafana dashboards in this folder from the names in ``sagellm_obs.semconv``.

Run ``python dashboards/generate.py`` after changing a metric name; a test fails while the JSON
files differ from what this script writes.

Every query filters by the dashboard's pickers: ``$job`` (one metrics path: the Prometheus job
that scrapes ``sagellm-obs serve``'s /metrics, or the one that scrapes the OpenTelemetry
Collector; never both, so nothing is counted twice), ``$model`` and ``$engine``. Names that the
collector's Prometheus exporter spells differently (a ``_ratio`` suffix on gauges of unit ``1``)
are queried in both spellings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from sagellm_obs import semconv as sc

HERE = Path(__file__).parent
DS = {"type": "prometheus", "uid": "${datasource}"}
# The import dialog's datasource input: Grafana replaces ${DS_PROMETHEUS} with the one picked.
DS_INPUT = "DS_PROMETHEUS"
# Filters every query by the dashboard's job (metrics path), model and engine pickers.
JOB_SEL = 'job=~"$job"'
STEP_SEL = f'{JOB_SEL},sagellm_engine_id=~"$engine"'
SEL = f'{STEP_SEL},gen_ai_request_model=~"$model"'
# The whole fleet (every engine of the job and model): the denominator of the imbalance panels.
FLEET_SEL = f'{JOB_SEL},gen_ai_request_model=~"$model"'
# One engine is an instance (sagellm_engine_id: a replica) and a data-parallel rank inside it
# (sagellm_engine_idx, vLLM's engine_idx; 0 without data parallelism).
BY_ENGINE = "sagellm_engine_id, sagellm_engine_idx"
ENGINE_LEGEND = "{{sagellm_engine_id}} #{{sagellm_engine_idx}}"
FLEET_ROW_Y = 56
# SLO thresholds offered by the pickers: bucket bounds, so `le` matches a series exactly.
SLO_TTFT = (0.1, 0.25, 0.5, 1.0, 2.5)
SLO_TPOT = (0.05, 0.1, 0.2, 0.5)
SLO_E2E = (1.28, 2.56, 5.12, 10.24, 20.48)


TTFT = sc.M_TTFT.prometheus_name
TPOT = sc.M_TPOT.prometheus_name
E2E = sc.M_REQUEST_DURATION.prometheus_name
QUEUE = sc.M_QUEUE.prometheus_name
PREFILL = sc.M_PREFILL.prometheus_name
DECODE = sc.M_DECODE.prometheus_name
TOKENS_IN = sc.M_REQUEST_INPUT_TOKENS.prometheus_name
TOKENS_OUT = sc.M_REQUEST_OUTPUT_TOKENS.prometheus_name
REQS = sc.M_REQUESTS.prometheus_name
RUNNING = sc.M_RUNNING.prometheus_name
WAITING = sc.M_WAITING.prometheus_name
PQ = sc.M_PREFIX_QUERIES.prometheus_name
PH = sc.M_PREFIX_HITS.prometheus_name
GEN = sc.M_GENERATION_TOKENS.prometheus_name
PROMPT = sc.M_PROMPT_TOKENS.prometheus_name
PREEMPT = sc.M_PREEMPTIONS.prometheus_name


def _either(spec: sc.MetricSpec, sel: str) -> str:
    """A selector of ``spec`` under both its /metrics and its collector name, when they differ."""
    a, b = spec.prometheus_name, spec.collector_prometheus_name
    return f"{a}{{{sel}}}" if a == b else f"({a}{{{sel}}} or {b}{{{sel}}})"


def _le(value: float) -> str:
    """A bucket bound as the collector writes ``le`` (``1``, ``0.5``); our /metrics writes ``1.0``,
    so queries match both (``_le_match``)."""
    return f"{value:g}"


def _le_match(var: str) -> str:
    """``le`` matcher for an SLO picker: both spellings of a whole bound (``1`` and ``1.0``)."""
    return f'le=~"${{{var}}}|${{{var}}}.0"'


def _attainment(metric: str, var: str) -> str:
    """Share of requests at or under the picked SLO (the bucket whose bound is the SLO)."""
    return (
        f"sum(rate({metric}_bucket{{{SEL},{_le_match(var)}}}[$__rate_interval])) / "
        f"sum(rate({metric}_count{{{SEL}}}[$__rate_interval]))"
    )


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
    h: int | None = None,
    kind: str = "timeseries",
    description: str = "",
    stacked: bool = False,
) -> dict[str, Any]:
    for t in targets:
        t.setdefault("datasource", DS)
    defaults: dict[str, Any] = {"unit": unit}
    if stacked:  # shares of the fleet, stacked: 100 % when every engine is picked
        defaults |= {
            "min": 0,
            "max": 1,
            "custom": {"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 60},
        }
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        # stats and gauges are one line of small tiles above the graphs (8 high)
        "gridPos": {"x": x, "y": y, "w": w, "h": h or (4 if kind in ("stat", "gauge") else 8)},
        "fieldConfig": {"defaults": defaults, "overrides": []},
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
            [_t(f"max({_either(sc.M_KV_USAGE, STEP_SEL)})", "KV usage")],
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
            10,
            "Prefix-cache hit rate over time",
            [
                _t(
                    f"sum(rate({PH}{{{STEP_SEL}}}[$__rate_interval])) / sum(rate({PQ}{{{STEP_SEL}}}[$__rate_interval]))",
                    "hit rate",
                )
            ],
            unit="percentunit",
            x=0,
            y=20,
            w=24,
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
        _panel(
            16,
            "SLO attainment",
            [
                _t(_attainment(TTFT, "ttft_slo"), "TTFT <= ${ttft_slo} s", "A"),
                _t(_attainment(TPOT, "tpot_slo"), "TPOT <= ${tpot_slo} s", "B"),
                _t(_attainment(E2E, "e2e_slo"), "E2E <= ${e2e_slo} s", "C"),
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
        _panel(
            17,
            "Good requests/s (upper bound)",
            [
                _t(
                    f"clamp_max(sum(rate({TTFT}_bucket{{{SEL},{_le_match('ttft_slo')}}}[$__rate_interval])), "
                    f"scalar(sum(rate({E2E}_bucket{{{SEL},{_le_match('e2e_slo')}}}[$__rate_interval]))))",
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
        _panel(
            18,
            "Error ratio",
            [
                _t(
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
        *fleet_row(),
    ]
    return {
        "__inputs": [
            {
                "name": DS_INPUT,
                "label": "Prometheus",
                "description": "The Prometheus that scrapes sagellm-obs (or its collector)",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ],
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
                    "current": {"text": "Prometheus", "value": f"${{{DS_INPUT}}}"},
                },
                {
                    "name": "job",
                    "label": "metrics path (job)",
                    "description": (
                        "The Prometheus job the metrics come through: the one scraping "
                        "sagellm-obs serve's /metrics, or the one scraping the OpenTelemetry "
                        "Collector. One at a time, so no request is counted twice."
                    ),
                    "type": "query",
                    "datasource": DS,
                    "includeAll": False,
                    "multi": False,
                    "current": {"text": "sagellm-obs", "value": "sagellm-obs"},
                    "query": {
                        "query": f"label_values({REQS}, job)",
                        "refId": "j",
                    },
                    "refresh": 2,
                },
                {
                    "name": "model",
                    "type": "query",
                    "datasource": DS,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "query": {
                        "query": f"label_values({REQS}{{{JOB_SEL}}}, gen_ai_request_model)",
                        "refId": "m",
                    },
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
                    "query": {
                        "query": f"label_values({REQS}{{{JOB_SEL}}}, sagellm_engine_id)",
                        "refId": "e",
                    },
                    "refresh": 2,
                },
                _slo_picker("ttft_slo", "TTFT SLO (s)", SLO_TTFT, 0.5),
                _slo_picker("tpot_slo", "TPOT SLO (s)", SLO_TPOT, 0.1),
                _slo_picker("e2e_slo", "E2E SLO (s)", SLO_E2E, 5.12),
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


def _by_engine_quantile(q: float, sel: str = SEL) -> str:
    return (
        f"histogram_quantile({q}, sum by ({BY_ENGINE}, le) "
        f"(rate({TTFT}_bucket{{{sel}}}[$__rate_interval])))"
    )


def _share(metric: str) -> str:
    """Each picked engine's share of the fleet's (every engine's) rate of ``metric``."""
    return (
        f"sum by ({BY_ENGINE}) (rate({metric}{{{SEL}}}[$__rate_interval])) / "
        f"scalar(sum(rate({metric}{{{FLEET_SEL}}}[$__rate_interval])))"
    )


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
        _panel(
            20,
            "Output tokens/s per engine",
            [
                _t(
                    f"sum by ({BY_ENGINE}) (rate({GEN}{{{STEP_SEL}}}[$__rate_interval]))",
                    ENGINE_LEGEND,
                )
            ],
            unit="short",
            x=0,
            y=y,
            description="Tokens generated per second by each engine (replica and data-parallel rank).",
        ),
        _panel(
            9,
            "KV-cache usage per engine",
            [_t(f"max by ({BY_ENGINE}) ({_either(sc.M_KV_USAGE, STEP_SEL)})", ENGINE_LEGEND)],
            unit="percentunit",
            x=12,
            y=y,
        ),
        _panel(
            21,
            "Queue depth per engine (running, waiting)",
            [
                _t(
                    f"sum by ({BY_ENGINE}) ({RUNNING}{{{STEP_SEL}}})",
                    f"{ENGINE_LEGEND} running",
                    "A",
                ),
                _t(
                    f"sum by ({BY_ENGINE}) ({WAITING}{{{STEP_SEL}}})",
                    f"{ENGINE_LEGEND} waiting",
                    "B",
                ),
            ],
            unit="short",
            x=0,
            y=y + 8,
        ),
        _panel(
            22,
            "Time to first token per engine",
            [
                _t(_by_engine_quantile(0.5), f"{ENGINE_LEGEND} p50", "A"),
                _t(_by_engine_quantile(0.99), f"{ENGINE_LEGEND} p99", "B"),
            ],
            unit="s",
            x=12,
            y=y + 8,
        ),
        _panel(
            23,
            "Requests/s per engine",
            [
                _t(
                    f"sum by ({BY_ENGINE}) (rate({REQS}{{{SEL}}}[$__rate_interval]))",
                    ENGINE_LEGEND,
                )
            ],
            unit="reqps",
            x=0,
            y=y + 16,
        ),
        _panel(
            24,
            "Share of requests per engine",
            [_t(_share(REQS), ENGINE_LEGEND)],
            unit="percentunit",
            x=12,
            y=y + 16,
            stacked=True,
            description=(
                "Each engine's share of the fleet's finished requests (every engine of the job "
                "and model): stacked, 100 % with every engine picked. Equal shares are balance."
            ),
        ),
        _panel(
            25,
            "Share of output tokens per engine",
            [_t(_share(f"{TOKENS_OUT}_sum"), ENGINE_LEGEND)],
            unit="percentunit",
            x=0,
            y=y + 24,
            stacked=True,
            description="Each engine's share of the fleet's output tokens (successful requests).",
        ),
        _panel(
            26,
            "Slowest engine vs the fleet: p99 TTFT",
            [
                _t(f"topk(1, {_by_engine_quantile(0.99)})", f"slowest: {ENGINE_LEGEND}", "A"),
                _t(
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


def _slo_picker(name: str, label: str, values: tuple[float, ...], default: float) -> dict[str, Any]:
    """A custom variable offering SLO thresholds (histogram bucket bounds)."""
    options = [_le(v) for v in values]
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(options),
        "current": {"text": _le(default), "value": _le(default)},
        "options": [{"text": o, "value": o, "selected": o == _le(default)} for o in options],
    }


# --- alert rules ----------------------------------------------------------------------------------
# Example Prometheus alerting rules (dashboards/alerts.yaml). Every expression aggregates by `job`,
# so a Prometheus that scrapes both metrics paths alerts per path and never sums the two.
ALERT_SLO_TTFT = 0.5  # s; a bucket bound of the TTFT histogram
ALERT_SLO_SHARE = 0.9


def alerts() -> dict[str, Any]:
    """The example alerting rules, from the metric names in semconv."""
    kv = (
        f"max by (job, sagellm_engine_id) ({sc.M_KV_USAGE.prometheus_name} "
        f"or {sc.M_KV_USAGE.collector_prometheus_name})"
    )
    le = f'le=~"{_le(ALERT_SLO_TTFT)}|{_le(ALERT_SLO_TTFT)}.0"'
    rules = [
        {
            "alert": "SagellmTTFTP99High",
            "expr": f"histogram_quantile(0.99, sum by (job, le) (rate({TTFT}_bucket[5m]))) > 2.5",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "p99 time to first token above 2.5 s for 10 minutes ({{ $labels.job }})",
            },
        },
        {
            "alert": "SagellmTTFTSLOMissed",
            "expr": (
                f"sum by (job) (rate({TTFT}_bucket{{{le}}}[5m])) / "
                f"sum by (job) (rate({TTFT}_count[5m])) < {ALERT_SLO_SHARE}"
            ),
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": (
                    f"fewer than {ALERT_SLO_SHARE:.0%} of requests get their first token within "
                    f"{ALERT_SLO_TTFT} s ({{{{ $labels.job }}}})"
                ),
            },
        },
        {
            "alert": "SagellmErrorRatioHigh",
            "expr": (
                f'(sum by (job) (rate({REQS}{{error_type!=""}}[5m])) '
                f"or 0 * sum by (job) (rate({REQS}[5m]))) / "
                f"sum by (job) (rate({REQS}[5m])) > 0.05"
            ),
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {"summary": "more than 5% of requests fail ({{ $labels.job }})"},
        },
        {
            "alert": "SagellmKVCacheNearlyFull",
            "expr": f"{kv} > 0.95",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "KV cache above 95% on {{ $labels.sagellm_engine_id }}: expect preemptions",
            },
        },
        {
            "alert": "SagellmPreempting",
            "expr": f"sum by (job, sagellm_engine_id) (rate({PREEMPT}[5m])) > 0",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "requests are being preempted on {{ $labels.sagellm_engine_id }}",
            },
        },
        {
            "alert": "SagellmTelemetryDropped",
            "expr": f"sum by (job) (increase({sc.M_TELEMETRY_DROPPED.prometheus_name}[10m])) > 0",
            "labels": {"severity": "info"},
            "annotations": {
                "summary": "sagellm-obs dropped telemetry records: the numbers undercount",
            },
        },
    ]
    return {"groups": [{"name": "sagellm-obs", "rules": rules}]}


def write(check: bool = False) -> bool:
    """Write (or, with ``check``, compare) every dashboard and the rules; True when all match."""
    ok = True
    header = "# Example alerting rules for sagellm-obs: generated by dashboards/generate.py.\n"
    files = {
        HERE / "grafana" / "sagellm-overview.json": json.dumps(overview(), indent=2) + "\n",
        HERE / "alerts.yaml": header + yaml.safe_dump(alerts(), sort_keys=False, width=100),
    }
    for path, text in files.items():
        if check:
            ok = ok and path.is_file() and path.read_text() == text
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return ok


if __name__ == "__main__":
    sys.exit(0 if write(check="--check" in sys.argv) else 1)
