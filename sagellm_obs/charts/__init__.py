"""Altair charts of a run's frames: pure functions, Polars frame in, Altair chart out.

Every function reduces its frame in Polars first (binned histograms, time buckets, fixed-seed
samples), so charts of runs with millions of requests stay small. Empty frames give a small
"no data" chart rather than an exception.

Importing this package registers the ``"sagellm"`` theme (see :mod:`sagellm_obs.charts.theme`) and
makes ``chart.save("x.html")`` write a file that renders offline (the JavaScript inlined; see
:mod:`sagellm_obs.charts.offline`). Notebooks without internet access call
:func:`enable_offline_renderer` first.

Joined application-to-engine traces: :func:`trace_timeline` draws a
:func:`~sagellm_obs.frames.call_tree`, :func:`time_breakdown_chart` a
:func:`~sagellm_obs.frames.time_breakdown` frame (``time_breakdown`` is its deprecated name).

Example:
    .. code-block:: python

        from sagellm_obs.frames import load
        from sagellm_obs import charts

        frames = load("sagellm-runs/latest")
        charts.latency_distribution(frames.requests, "ttft_s")
        charts.run_dashboard(frames)
"""

from __future__ import annotations

from sagellm_obs.charts.compare import compare_quantiles, compare_runs
from sagellm_obs.charts.dashboard import run_dashboard
from sagellm_obs.charts.fleet import (
    engine_imbalance,
    engine_kv_usage,
    engine_latency,
    engine_queue,
    fleet_dashboard,
    slowest_engine_chart,
)
from sagellm_obs.charts.kv_events import block_lifetime_reuse, evictions_vs_kv_usage
from sagellm_obs.charts.latency import latency_distribution, latency_over_time, ttft_vs_prompt
from sagellm_obs.charts.offline import enable_offline_renderer, save_html_offline_by_default
from sagellm_obs.charts.prefix_cache import (
    cached_share_by_request,
    kv_usage,
    prefix_hit_by_request,
    prefix_hit_rate,
)
from sagellm_obs.charts.theme import (
    FRONTEND_COLOR,
    PHASE_COLORS,
    PHASES,
    THEME,
    WATERFALL_PARTS,
    register_theme,
)
from sagellm_obs.charts.throughput import concurrency, throughput
from sagellm_obs.charts.trace import (
    CATEGORY_COLORS,
    PART_COLORS,
    time_breakdown,
    time_breakdown_chart,
    trace_timeline,
)
from sagellm_obs.charts.waterfall import request_waterfall
from sagellm_obs.charts.workload_phases import with_workload_phases, workload_phases

register_theme()
save_html_offline_by_default()

__all__ = [
    "CATEGORY_COLORS",
    "FRONTEND_COLOR",
    "PART_COLORS",
    "PHASES",
    "PHASE_COLORS",
    "THEME",
    "WATERFALL_PARTS",
    "block_lifetime_reuse",
    "cached_share_by_request",
    "compare_quantiles",
    "compare_runs",
    "concurrency",
    "enable_offline_renderer",
    "engine_imbalance",
    "engine_kv_usage",
    "engine_latency",
    "engine_queue",
    "evictions_vs_kv_usage",
    "fleet_dashboard",
    "kv_usage",
    "latency_distribution",
    "latency_over_time",
    "prefix_hit_by_request",
    "prefix_hit_rate",
    "register_theme",
    "request_waterfall",
    "run_dashboard",
    "slowest_engine_chart",
    "throughput",
    "time_breakdown",
    "time_breakdown_chart",
    "trace_timeline",
    "ttft_vs_prompt",
    "with_workload_phases",
    "workload_phases",
]
