"""Decoded OTLP metric lines → the long ``metrics`` frame (one row per data point).

Gauges and sums fill ``value``; histograms fill ``count``/``sum``/``bucket_counts``/
``explicit_bounds``/``min``/``max``. Sums are ``counter`` when monotonic, else ``updowncounter``
(the instrument kinds of :mod:`sagellm_obs.semconv`). Exponential histograms and summaries are not
loaded. The store writes cumulative points; ``temporality`` says so per row.
"""

from __future__ import annotations

import polars as pl

from sagellm_obs import semconv as sc
from sagellm_obs.frames import attrs
from sagellm_obs.frames.schemas import METRICS, TIME, conform

TEMPORALITY = {0: None, 1: "delta", 2: "cumulative"}
# The columns of a metric row (after ``build_metrics`` unnested it) that its points keep.
_METRIC_COLUMNS = (
    "source_file",
    "source_line",
    "service_name",
    "engine_id",
    "run_id",
    "name",
    "unit",
)


def _points(metrics: pl.LazyFrame, kind: str) -> pl.LazyFrame:
    """Rows of one data kind (``gauge``, ``sum``, ``histogram``) with its points exploded."""
    data = pl.col(f"_{kind}")
    frame = metrics.filter(data.struct.field("dataPoints").list.len() > 0).with_columns(
        data.struct.field("dataPoints").alias("_point")
    )
    if kind == "sum":
        frame = frame.with_columns(
            pl.when(data.struct.field("isMonotonic").fill_null(False))
            .then(pl.lit("counter"))
            .otherwise(pl.lit("updowncounter"))
            .alias("kind")
        )
    else:
        frame = frame.with_columns(pl.lit(kind).alias("kind"))
    if kind == "gauge":
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("temporality"))
    else:
        frame = frame.with_columns(
            data.struct.field("aggregationTemporality")
            .replace_strict(TEMPORALITY, default=None, return_dtype=pl.String)
            .alias("temporality")
        )
    # Only the point list and the metric's scalars go into the explode: every other column is
    # repeated once per point, and the metric's own ``_gauge``/``_sum``/``_histogram`` hold all of
    # its points (2,000 series would copy 2,000 points 2,000 times: gigabytes for 10 MB of JSON).
    frame = frame.select(*_METRIC_COLUMNS, "kind", "temporality", "_point")
    point = pl.col("_point").struct
    frame = frame.explode("_point").with_columns(
        point.field("timeUnixNano").cast(pl.Int64, strict=False).cast(TIME).alias("time"),
        point.field("startTimeUnixNano")
        .cast(pl.Int64, strict=False)
        .cast(TIME)
        .alias("start_time"),
        attrs.json_object(point.field("attributes")).alias("attributes"),
    )
    frame = frame.with_columns(
        pl.col("attributes")
        .str.json_path_match(f"$['{sc.SAGELLM_ENGINE_IDX}']")
        .cast(pl.Int64, strict=False)
        .alias("engine_idx")
    )
    if kind == "histogram":
        return frame.with_columns(
            point.field("count").cast(pl.Int64, strict=False).fill_null(0).alias("count"),
            point.field("sum").alias("sum"),
            point.field("bucketCounts")
            .list.eval(pl.element().cast(pl.Int64, strict=False))
            .alias("bucket_counts"),
            point.field("explicitBounds")
            .fill_null(pl.lit([], dtype=pl.List(pl.Float64)))
            .alias("explicit_bounds"),
            point.field("min").alias("min"),
            point.field("max").alias("max"),
        )
    return frame.with_columns(
        pl.coalesce(
            point.field("asDouble"), point.field("asInt").cast(pl.Float64, strict=False)
        ).alias("value")
    )


def build_metrics(lines: pl.DataFrame) -> pl.DataFrame:
    """The ``metrics`` frame of decoded OTLP lines (``OTLP_LINE`` + source_line + source_file)."""
    res = pl.col("resource").struct.field("attributes")
    s = pl.String()
    metrics = (
        lines.lazy()
        .select("source_file", "source_line", "resourceMetrics")
        .filter(pl.col("resourceMetrics").list.len() > 0)
        .explode("resourceMetrics")
        .unnest("resourceMetrics")
        .with_columns(
            attrs.as_dtype(attrs.lookup(res, "service.name"), s).alias("service_name"),
            attrs.as_dtype(attrs.lookup(res, sc.RESOURCE_ENGINE_ID), s).alias("engine_id"),
            attrs.as_dtype(attrs.lookup(res, sc.RESOURCE_RUN_ID), s).alias("run_id"),
        )
        .drop("resource")
        .explode("scopeMetrics")
        .select(
            "source_file",
            "source_line",
            "service_name",
            "engine_id",
            "run_id",
            pl.col("scopeMetrics").struct.field("metrics"),
        )
        .explode("metrics")
        .filter(pl.col("metrics").is_not_null())
        .unnest("metrics")
        .rename({"gauge": "_gauge", "sum": "_sum", "histogram": "_histogram"})
    ).collect()
    if metrics.is_empty():
        return pl.DataFrame(schema=METRICS)
    lazy = metrics.lazy()
    parts = [
        conform(_points(lazy, kind).collect(), METRICS) for kind in ("gauge", "sum", "histogram")
    ]
    return pl.concat(parts).sort("time", "name", maintain_order=True)
