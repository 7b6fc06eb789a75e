"""Fleets: which engine served what, per-engine figures and the balance between engines.

An engine is the pair (``engine_id``, ``engine_idx``): ``engine_id`` names an instance (a
``sagellm-obs serve`` replica's ``HOST:PORT``, or a configured name) and ``engine_idx`` is vLLM's
data-parallel rank inside it. :func:`with_engine` gives every row one label for that pair,
``engine``: the engine id alone, or ``ENGINE_ID#IDX`` when the instance runs several ranks.

A run is a fleet when more than one engine served it (:func:`is_fleet`): several replicas' run
folders loaded together (``frames.load([...])``), one collector's export, or one replica with
data parallelism. :func:`engine_stats` gives one row per engine (throughput, latency
percentiles, KV usage, queue depth, share of the requests and tokens), :func:`engine_shares` the
shares over time and :func:`slowest_engine` the engine that holds the fleet back.

Example:
    .. code-block:: python

        from sagellm_obs.frames import load, fleet

        frames = load(["runs/client", "runs/replica-8001", "runs/replica-8002"])
        if fleet.is_fleet(frames.requests, frames.steps):
            fleet.engine_stats(frames.requests, frames.steps)
"""

from __future__ import annotations

from typing import Any

import polars as pl

__all__ = [
    "ENGINE",
    "ENGINE_STATS",
    "engine_labels",
    "engine_shares",
    "engine_stats",
    "engines",
    "is_fleet",
    "slowest_engine",
    "slowest_of",
    "with_engine",
]

ENGINE = "engine"
"""The column :func:`with_engine` adds: one label per (``engine_id``, ``engine_idx``)."""

UNKNOWN = "unknown"
"""The label of rows without an engine id."""

ENGINE_STATS = pl.Schema(
    {
        "engine": pl.String,
        "engine_id": pl.String,
        "engine_idx": pl.Int64,
        "requests": pl.Int64,  # request spans (failed and cancelled ones included)
        "ok": pl.Int64,
        "failed": pl.Int64,  # error_type set
        "request_share": pl.Float64,  # of the fleet's requests, 0..1
        "input_tokens": pl.Int64,
        "output_tokens": pl.Int64,
        "token_share": pl.Float64,  # of the fleet's output tokens, 0..1
        "request_throughput": pl.Float64,  # ok requests / the fleet's duration, req/s
        "output_token_throughput": pl.Float64,  # output tokens / the fleet's duration, tok/s
        "ttft_p50_s": pl.Float64,
        "ttft_p99_s": pl.Float64,
        "tpot_p50_s": pl.Float64,
        "e2e_p50_s": pl.Float64,
        "e2e_p99_s": pl.Float64,
        "queue_p50_s": pl.Float64,
        "queue_p99_s": pl.Float64,
        "prefix_hit_rate": pl.Float64,  # step hits / queries, null without queries
        "kv_usage_mean": pl.Float64,  # over the engine's steps, 0..1
        "kv_usage_peak": pl.Float64,
        "running_mean": pl.Float64,
        "waiting_mean": pl.Float64,  # queue depth
        "waiting_peak": pl.Int64,
        "steps": pl.Int64,
    }
)
"""The columns of :func:`engine_stats`, one row per engine."""


def _idx(frame: pl.DataFrame | pl.LazyFrame) -> pl.Expr:
    names = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    if "engine_idx" in names:
        return pl.col("engine_idx").fill_null(0)
    return pl.lit(0, dtype=pl.Int64)


def _id(frame: pl.DataFrame) -> pl.Expr:
    if "engine_id" in frame.columns:  # as text: frames with and without the column mix
        return pl.col("engine_id").cast(pl.String).fill_null(UNKNOWN)
    return pl.lit(UNKNOWN)


def _pairs(frame: pl.DataFrame) -> pl.DataFrame:
    """The distinct ``(engine_id, engine_idx)`` of a frame, the id as text: made unique on the
    stored column first (a Categorical by its codes), so millions of rows cast nothing."""
    eid = pl.col("engine_id") if "engine_id" in frame.columns else pl.lit(None, pl.String)
    small = frame.select(eid.alias("engine_id"), _idx(frame).alias("engine_idx")).unique()
    return small.select(_id(small).alias("engine_id"), "engine_idx").unique()


def _multi_rank(*frames: pl.DataFrame) -> set[str]:
    """Engine ids seen with more than one engine_idx across ``frames``."""
    pairs = [_pairs(f) for f in frames if f.height]
    if not pairs:
        return set()
    both = pl.concat(pairs).unique()
    counts = both.group_by("engine_id").len()
    return set(counts.filter(pl.col("len") > 1)["engine_id"].to_list())


def _label(multi: set[str], frame: pl.DataFrame) -> pl.Expr:
    engine_id = _id(frame)
    if not multi:  # no data-parallel instance (the usual case): the id is the label
        return engine_id.alias(ENGINE)
    return (
        pl.when(engine_id.is_in(list(multi)))
        .then(pl.format("{}#{}", engine_id, _idx(frame)))
        .otherwise(engine_id)
        .alias(ENGINE)
    )


def with_engine(frame: pl.DataFrame, *others: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with an ``engine`` column (see the module docstring).

    Args:
        frame: A requests, steps, spans or metrics frame (``engine_id``, ``engine_idx``).
        others: More frames of the same fleet: an instance counts as data-parallel when any of
            them shows it with several ranks, so labels agree between frames.
    """
    multi = _multi_rank(frame, *others)
    return frame.with_columns(_label(multi, frame))


def engine_labels(requests: pl.DataFrame, steps: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``requests`` and ``steps`` with agreeing ``engine`` columns."""
    multi = _multi_rank(requests, steps)
    return requests.with_columns(_label(multi, requests)), steps.with_columns(_label(multi, steps))


def engines(requests: pl.DataFrame, steps: pl.DataFrame | None = None) -> list[str]:
    """The engine labels of a run, sorted (engines without requests included via ``steps``)."""
    frames = [f for f in (requests, steps) if f is not None and f.height]
    multi = _multi_rank(*frames)
    found: set[str] = set()
    for frame in frames:  # labelled per distinct pair, not per row
        pairs = _pairs(frame)
        found |= set(pairs.select(_label(multi, pairs))[ENGINE].to_list())
    return sorted(found)


def is_fleet(requests: pl.DataFrame, steps: pl.DataFrame | None = None) -> bool:
    """True when more than one engine served the run (see the module docstring)."""
    return len(engines(requests, steps)) > 1


def _duration_s(requests: pl.DataFrame) -> float:
    if requests.height == 0:
        return 0.0
    end = requests.select(
        (pl.col("arrival") + pl.duration(microseconds=pl.col("e2e_s").fill_null(0) * 1e6)).max()
    ).item()
    start = requests["arrival"].min()
    if start is None or end is None:
        return 0.0
    return max(float((end - start).total_seconds()), 1e-9)


def engine_stats(requests: pl.DataFrame, steps: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per engine (:data:`ENGINE_STATS`), in :func:`engines` order.

    Throughputs divide by the fleet's duration (first arrival to last finish over all engines),
    so they add up to the fleet's; shares are of the fleet's requests and output tokens. Latency
    percentiles are over the engine's requests that neither failed nor were cancelled;
    KV-cache and queue figures are over its steps.
    """
    steps = steps if steps is not None else pl.DataFrame()
    multi = _multi_rank(requests, steps)
    req = requests
    duration = _duration_s(req)
    total_req = req.height
    total_tok = int(req["output_tokens"].sum() or 0) if req.height else 0
    ok = ~pl.col("cancelled").fill_null(False) & pl.col("error_type").is_null()

    def q(col: str, p: float) -> pl.Expr:
        return (
            pl.col(col)
            .filter(ok)
            .quantile(p, interpolation="linear")
            .alias(f"{col.removesuffix('_s')}_p{int(p * 100)}_s")
        )

    per_req = _per_engine(
        req,
        multi,
        pl.len().alias("requests"),
        ok.sum().alias("ok"),
        pl.col("error_type").is_not_null().sum().alias("failed"),
        pl.col("input_tokens").sum(),
        pl.col("output_tokens").sum(),
        q("ttft_s", 0.5),
        q("ttft_s", 0.99),
        q("tpot_s", 0.5),
        q("e2e_s", 0.5),
        q("e2e_s", 0.99),
        q("queue_s", 0.5),
        q("queue_s", 0.99),
    )
    per_step = _per_engine(
        steps,
        multi,
        pl.len().alias("steps"),
        pl.col("kv_cache_usage").mean().alias("kv_usage_mean"),
        pl.col("kv_cache_usage").max().alias("kv_usage_peak"),
        pl.col("running").mean().alias("running_mean"),
        pl.col("waiting").mean().alias("waiting_mean"),
        pl.col("waiting").max().alias("waiting_peak"),
        pl.col("prefix_queries").sum().alias("_queries"),
        pl.col("prefix_hits").sum().alias("_hits"),
    ).rename({"engine_id": "_step_engine_id", "engine_idx": "_step_engine_idx"}, strict=False)
    names = sorted({*per_req[ENGINE].to_list(), *per_step[ENGINE].to_list()})
    if not names:
        return pl.DataFrame(schema=ENGINE_STATS)
    out = (
        pl.DataFrame({ENGINE: names})
        .join(per_req, on=ENGINE, how="left")
        .join(per_step, on=ENGINE, how="left")
    )
    cols = out.columns

    def col(name: str) -> pl.Expr:
        return pl.col(name) if name in cols else pl.lit(None)

    out = out.with_columns(
        pl.coalesce(col("engine_id"), col("_step_engine_id")).alias("engine_id"),
        pl.coalesce(col("engine_idx"), col("_step_engine_idx")).alias("engine_idx"),
        col("requests").fill_null(0).alias("requests"),
        col("ok").fill_null(0).alias("ok"),
        col("failed").fill_null(0).alias("failed"),
        col("input_tokens").fill_null(0).alias("input_tokens"),
        col("output_tokens").fill_null(0).alias("output_tokens"),
        col("steps").fill_null(0).alias("steps"),
        pl.when(col("_queries") > 0).then(col("_hits") / col("_queries")).alias("prefix_hit_rate"),
    ).with_columns(
        (pl.col("requests") / total_req if total_req else pl.lit(0.0)).alias("request_share"),
        (pl.col("output_tokens") / total_tok if total_tok else pl.lit(0.0)).alias("token_share"),
        (pl.col("ok") / duration if duration else pl.lit(0.0)).alias("request_throughput"),
        (pl.col("output_tokens") / duration if duration else pl.lit(0.0)).alias(
            "output_token_throughput"
        ),
    )
    return out.select(
        (pl.col(c) if c in out.columns else pl.lit(None)).cast(t).alias(c)
        for c, t in ENGINE_STATS.items()
    ).sort(ENGINE)


def _per_engine(frame: pl.DataFrame, multi: set[str], *aggs: pl.Expr) -> pl.DataFrame:
    """``aggs`` per engine: grouped on the stored (engine_id, engine_idx) pair, labelled after, so
    millions of rows are never labelled one by one."""
    if frame.height == 0:
        return pl.DataFrame(schema={ENGINE: pl.String})
    eid = pl.col("engine_id") if "engine_id" in frame.columns else pl.lit(None, pl.String)
    out = frame.group_by(eid.alias("engine_id"), _idx(frame).alias("engine_idx")).agg(*aggs)
    out = out.with_columns(_label(multi, out))
    if out[ENGINE].n_unique() < out.height:  # two stored ids with one label (null, "unknown")
        return (
            frame.with_columns(_label(multi, frame))
            .group_by(ENGINE)
            .agg(
                eid.first().alias("engine_id"),
                _idx(frame).first().alias("engine_idx"),
                *aggs,
            )
        )
    return out


def slowest_engine(
    requests: pl.DataFrame, steps: pl.DataFrame | None = None, *, metric: str = "ttft_s"
) -> dict[str, Any] | None:
    """The engine with the highest p99 of ``metric`` and the fleet's p99, or None without data.

    Returns:
        ``{"engine", "metric", "p99_s", "fleet_p99_s", "ratio"}``: ``ratio`` is the engine's
        p99 over the fleet's (> 1: that engine holds the fleet's tail back).
    """
    return slowest_of(engine_stats(requests, steps), requests, metric=metric)


def slowest_of(
    stats: pl.DataFrame, requests: pl.DataFrame, *, metric: str = "ttft_s"
) -> dict[str, Any] | None:
    """:func:`slowest_engine` from :func:`engine_stats` already computed (a chart that shows
    both computes them once)."""
    name = f"{metric.removesuffix('_s')}_p99_s"
    if name not in stats.columns:
        raise ValueError(f"no p99 of {metric!r} in engine_stats (ttft_s, e2e_s, queue_s)")
    known = stats.filter(pl.col(name).is_not_null())
    if known.height == 0:
        return None
    top = known.sort(name, descending=True).row(0, named=True)
    ok = requests.filter(~pl.col("cancelled").fill_null(False) & pl.col("error_type").is_null())[
        metric
    ].drop_nulls()
    fleet = float(ok.quantile(0.99, interpolation="linear") or 0.0) if ok.len() else 0.0
    return {
        "engine": top[ENGINE],
        "metric": metric,
        "p99_s": float(top[name]),
        "fleet_p99_s": fleet,
        "ratio": float(top[name]) / fleet if fleet else None,
    }


def engine_shares(
    requests: pl.DataFrame, *, every: str | None = None, steps: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Each engine's share of the requests and output tokens that arrived per time bucket.

    Args:
        requests: The requests frame.
        every: Bucket width (Polars duration, e.g. ``"1s"``); default about 30 buckets.
        steps: The steps frame, only to label engines as :func:`engine_labels` does.

    Returns:
        Columns ``time`` (bucket start), ``engine``, ``requests``, ``output_tokens``,
        ``request_share`` and ``token_share`` (0..1 of the bucket's totals); one row per bucket
        and engine that had requests in it, sorted by time and engine.
    """
    schema: dict[str, Any] = {
        "time": requests.schema.get("arrival", pl.Datetime("ns", "UTC")),
        ENGINE: pl.String,
        "requests": pl.UInt32,
        "output_tokens": pl.Int64,
        "request_share": pl.Float64,
        "token_share": pl.Float64,
    }
    if requests.height == 0:
        return pl.DataFrame(schema=schema)
    req = (
        engine_labels(requests, steps)[0]
        if steps is not None and steps.height
        else with_engine(requests)
    )
    if every is None:
        span = _duration_s(req)
        every = _every(span / 30)
    per = (
        req.sort("arrival")
        .group_by_dynamic("arrival", every=every, group_by=ENGINE)
        .agg(pl.len().alias("requests"), pl.col("output_tokens").fill_null(0).sum())
        .rename({"arrival": "time"})
    )
    totals = pl.col("requests").sum().over("time"), pl.col("output_tokens").sum().over("time")
    return (
        per.with_columns(
            (pl.col("requests") / totals[0]).alias("request_share"),
            pl.when(totals[1] > 0)
            .then(pl.col("output_tokens") / totals[1])
            .otherwise(0.0)
            .alias("token_share"),
        )
        .select(list(schema))
        .sort("time", ENGINE)
    )


def _every(seconds: float) -> str:
    for n in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if seconds <= n:
            return f"{int(n * 1000)}ms" if n < 1 else f"{int(n)}s"
    return "1h"
