"""Example Prometheus alerting rules (dashboards/alerts.yaml), from the metric names in semconv.

Every expression aggregates by ``job``, so a Prometheus that scrapes both metrics paths alerts per
path and never sums the two.
"""

from __future__ import annotations

from typing import Any

from dashboards._promql import PREEMPT, REQS, TTFT, le_bound
from sagellm_obs import semconv as sc

ALERT_SLO_TTFT = 0.5  # s; a bucket bound of the TTFT histogram
ALERT_SLO_SHARE = 0.9


def alerts() -> dict[str, Any]:
    """The example alerting rules, from the metric names in semconv."""
    kv = (
        f"max by (job, sagellm_engine_id) ({sc.M_KV_USAGE.prometheus_name} "
        f"or {sc.M_KV_USAGE.collector_prometheus_name})"
    )
    le = f'le=~"{le_bound(ALERT_SLO_TTFT)}|{le_bound(ALERT_SLO_TTFT)}.0"'
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
