"""Grafana building blocks: a panel, a query target, quantile targets, an SLO picker, the board.

The board (:func:`board`) carries the import dialog's datasource input and the pickers every
query filters by (datasource, job, model, engine, the SLO thresholds).
"""

from __future__ import annotations

from typing import Any

from dashboards._promql import JOB_SEL, REQS, SEL, le_bound
from sagellm_obs.frames.analysis import QUANTILES, quantile_label

DS = {"type": "prometheus", "uid": "${datasource}"}
# The import dialog's datasource input: Grafana replaces ${DS_PROMETHEUS} with the one picked.
DS_INPUT = "DS_PROMETHEUS"
# SLO thresholds offered by the pickers: bucket bounds, so `le` matches a series exactly.
SLO_TTFT = (0.1, 0.25, 0.5, 1.0, 2.5)
SLO_TPOT = (0.05, 0.1, 0.2, 0.5)
SLO_E2E = (1.28, 2.56, 5.12, 10.24, 20.48)


def quantile_targets(metric: str) -> list[dict[str, Any]]:
    """The ``QUANTILES`` (p50, p90, p99) of histogram ``metric`` under the pickers, with exemplars."""
    return [
        {
            "refId": chr(65 + i),
            "expr": f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{SEL}}}[$__rate_interval])))",
            "legendFormat": quantile_label(q),
            "exemplar": True,
        }
        for i, q in enumerate(QUANTILES)
    ]


def panel(
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
    """A panel at ``x``, ``y`` of the 24-column grid; its targets default to the datasource."""
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


def target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    """One PromQL query of a panel."""
    return {"refId": ref, "expr": expr, "legendFormat": legend}


def slo_picker(name: str, label: str, values: tuple[float, ...], default: float) -> dict[str, Any]:
    """A custom variable offering SLO thresholds (histogram bucket bounds)."""
    options = [le_bound(v) for v in values]
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(options),
        "current": {"text": le_bound(default), "value": le_bound(default)},
        "options": [{"text": o, "value": o, "selected": o == le_bound(default)} for o in options],
    }


def label_picker(name: str, label: str, ref: str) -> dict[str, Any]:
    """A multi-value picker (All by default) over the values of ``label`` on the request counter
    of the chosen job."""
    return {
        "name": name,
        "type": "query",
        "datasource": DS,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "query": {
            "query": f"label_values({REQS}{{{JOB_SEL}}}, {label})",
            "refId": ref,
        },
        "refresh": 2,
    }


def board(panels: list[dict[str, Any]]) -> dict[str, Any]:
    """The overview dashboard around ``panels``: its datasource input, pickers and links."""
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
                label_picker("model", "gen_ai_request_model", "m"),
                label_picker("engine", "sagellm_engine_id", "e"),
                slo_picker("ttft_slo", "TTFT SLO (s)", SLO_TTFT, 0.5),
                slo_picker("tpot_slo", "TPOT SLO (s)", SLO_TPOT, 0.1),
                slo_picker("e2e_slo", "E2E SLO (s)", SLO_E2E, 5.12),
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
