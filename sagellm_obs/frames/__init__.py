"""Polars frames of a run: spans, requests, engine steps and metric points; call trees.

>>> from sagellm_obs.frames import load, percentiles
>>> run = load("sagellm-runs/20260101T000000Z-abc123")  # doctest: +SKIP
>>> percentiles(run.requests)  # doctest: +SKIP

See :mod:`sagellm_obs.frames.schemas` for the columns, :func:`load` for the sources it reads and
:mod:`sagellm_obs.frames.analysis` for the helpers. :func:`call_tree` and :func:`time_breakdown`
(:mod:`sagellm_obs.frames.traces`) lay joined application-to-engine traces out. Importing this
package imports polars only.
"""

from __future__ import annotations

from sagellm_obs.clickhouse.source import ClickHouseSource, clickhouse_source
from sagellm_obs.frames.analysis import (
    HistogramDelta,
    compare,
    counter_delta,
    goodput,
    histogram_delta,
    histogram_quantile,
    percentiles,
    prefix_hit_rate,
    rolling_hit_rate,
    throughput,
)
from sagellm_obs.frames.fleet import (
    engine_shares,
    engine_stats,
    is_fleet,
    slowest_engine,
    with_engine,
)
from sagellm_obs.frames.kv_events import (
    BLOCK_LIFETIMES,
    block_lifetimes,
    blocks_of_requests,
    kv_events,
    kv_events_per_step,
)
from sagellm_obs.frames.load import (
    Scan,
    load,
    load_metrics,
    load_requests,
    load_spans,
    load_steps,
    scan,
)
from sagellm_obs.frames.loaded import Frames
from sagellm_obs.frames.schemas import (
    CALL_TREE,
    KV_EVENTS,
    METRICS,
    REQUESTS,
    REQUIRED_COLUMNS,
    RUNS,
    SCHEMAS,
    SPANS,
    STEPS,
    TIME_BREAKDOWN,
    SchemaError,
    attribute,
    check_schema,
)
from sagellm_obs.frames.traces import CATEGORIES, call_tree, time_breakdown
from sagellm_obs.frames.warm_cache import WarmCache, warm_cache

__all__ = [
    "BLOCK_LIFETIMES",
    "CALL_TREE",
    "CATEGORIES",
    "KV_EVENTS",
    "METRICS",
    "REQUESTS",
    "REQUIRED_COLUMNS",
    "RUNS",
    "SCHEMAS",
    "SPANS",
    "STEPS",
    "TIME_BREAKDOWN",
    "ClickHouseSource",
    "Frames",
    "HistogramDelta",
    "Scan",
    "SchemaError",
    "WarmCache",
    "attribute",
    "block_lifetimes",
    "blocks_of_requests",
    "call_tree",
    "check_schema",
    "clickhouse_source",
    "compare",
    "counter_delta",
    "engine_shares",
    "engine_stats",
    "goodput",
    "histogram_delta",
    "histogram_quantile",
    "is_fleet",
    "kv_events",
    "kv_events_per_step",
    "load",
    "load_metrics",
    "load_requests",
    "load_spans",
    "load_steps",
    "percentiles",
    "prefix_hit_rate",
    "rolling_hit_rate",
    "scan",
    "slowest_engine",
    "throughput",
    "time_breakdown",
    "warm_cache",
    "with_engine",
]
