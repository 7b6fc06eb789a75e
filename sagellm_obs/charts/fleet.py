"""Charts of a fleet: engines side by side, and the balance between them.

Every function takes the requests and/or steps frames of a run that more than one engine served
(see :mod:`sagellm_obs.frames.fleet`: an engine is one ``engine_id``/``engine_idx`` pair, labelled
``engine``), reduces them in Polars (percentiles per engine, time buckets per engine) and returns
an Altair chart. Engines keep one colour across the charts (:func:`engine_scale`).

* :func:`engine_latency`: p50/p99 of TTFT, TPOT and E2E per engine, side by side.
* :func:`engine_kv_usage` / :func:`engine_queue`: KV-cache usage and waiting requests over
  time, one line per engine.
* :func:`engine_imbalance`: each engine's share of the requests and of the output tokens per time
  bucket (stacked to 100 %): an even fleet shows flat, equal bands.
* :func:`slowest_engine_chart`: each engine's p99 against the fleet's, the slowest marked.
* :func:`fleet_dashboard`: all of them, stacked.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import polars as pl
from altair.typing import ChartType

from sagellm_obs.charts._data import (
    auto_every,
    epoch_ms,
    finite,
    metric_label,
    no_data,
    ok_requests,
    resample,
    time_x,
)
from sagellm_obs.charts.theme import CATEGORY
from sagellm_obs.frames import fleet
from sagellm_obs.frames.analysis import MEDIAN_AND_TAIL, quantile_label

__all__ = [
    "engine_imbalance",
    "engine_kv_usage",
    "engine_latency",
    "engine_latency_rows",
    "engine_queue",
    "engine_scale",
    "fleet_dashboard",
    "imbalance_rows",
    "slowest_engine_chart",
]

LATENCY_METRICS = ("ttft_s", "tpot_s", "e2e_s")
_QUANTILES = tuple((quantile_label(q), q) for q in MEDIAN_AND_TAIL)
_MEDIAN, _TAIL = (name for name, _ in _QUANTILES)


def engine_scale(engines: Sequence[str]) -> alt.Scale:
    """One fixed colour per engine label (the category palette, in sorted order)."""
    names = sorted(engines)
    return alt.Scale(domain=names, range=[CATEGORY[i % len(CATEGORY)] for i in range(len(names))])


def _color(engines: Sequence[str]) -> alt.Color:
    return alt.Color("engine:N", scale=engine_scale(engines), title="engine")


def engine_latency_rows(
    requests: pl.DataFrame, metrics: Sequence[str] = LATENCY_METRICS
) -> pl.DataFrame:
    """p50 and p99 per engine and metric (ok requests): ``engine``, ``metric``, ``quantile``,
    ``seconds``, ``ms``, ``requests``."""
    schema = {
        "engine": pl.String,
        "metric": pl.String,
        "quantile": pl.String,
        "seconds": pl.Float64,
        "ms": pl.Float64,
        "requests": pl.UInt32,
    }
    req = fleet.with_engine(ok_requests(requests))
    parts = []
    for metric in metrics:
        data = finite(req, metric)
        if data.height == 0:
            continue
        parts.append(
            data.group_by("engine")
            .agg(
                pl.len().alias("requests"),
                *(
                    pl.col(metric).quantile(q, interpolation="linear").alias(name)
                    for name, q in _QUANTILES
                ),
            )
            .unpivot(
                index=["engine", "requests"],
                on=[n for n, _ in _QUANTILES],
                variable_name="quantile",
                value_name="seconds",
            )
            .with_columns(pl.lit(metric_label(metric)).alias("metric"))
        )
    if not parts:
        return pl.DataFrame(schema=schema)
    out = pl.concat(parts).with_columns((pl.col("seconds") * 1000).alias("ms"))
    return out.select(list(schema)).cast(schema).sort("metric", "engine", "quantile")  # type: ignore[arg-type]


def engine_latency(
    requests: pl.DataFrame, *, metrics: Sequence[str] = LATENCY_METRICS
) -> ChartType:
    """p50 (bar) and p99 (tick) of each latency per engine, one panel per metric.

    Args:
        requests: The requests frame (``engine_id``, ``engine_idx`` and the latency columns).
        metrics: Requests-frame latency columns.

    Returns:
        A faceted bar chart, or a "no data" chart.
    """
    title = "Latency per engine"
    data = engine_latency_rows(requests, metrics)
    if data.height == 0:
        return no_data(title)
    engines = sorted(set(data["engine"].to_list()))
    tooltip = [
        alt.Tooltip("engine:N"),
        alt.Tooltip("metric:N"),
        alt.Tooltip("quantile:N"),
        alt.Tooltip("ms:Q", format=",.1f", title="ms"),
        alt.Tooltip("requests:Q", format=","),
    ]
    base = alt.Chart().encode(
        x=alt.X("engine:N", title=None, sort=engines, axis=alt.Axis(labelAngle=-30)),
        color=_color(engines),
        tooltip=tooltip,
    )
    bars = base.transform_filter(alt.datum.quantile == _MEDIAN).mark_bar(opacity=0.8)
    bars = bars.encode(y=alt.Y("ms:Q", title=f"ms (bar {_MEDIAN}, tick {_TAIL})"))
    ticks = base.transform_filter(alt.datum.quantile == _TAIL).mark_tick(
        thickness=3, size=24, color="#c0392b"
    )
    ticks = ticks.encode(y="ms:Q")
    layered = alt.layer(bars, ticks, data=data).properties(width=160, height=200)
    chart = layered.facet(column=alt.Column("metric:N", title=None, sort=["TTFT", "TPOT", "E2E"]))
    out: alt.FacetChart = chart.resolve_scale(y="independent").properties(
        title=alt.Title(title, subtitle=f"ok requests; bar: {_MEDIAN}, tick: {_TAIL}")
    )
    return out


def _engine_series(
    steps: pl.DataFrame, column: str, every: str | None, agg: pl.Expr, requests: pl.DataFrame
) -> pl.DataFrame | None:
    frame = finite(steps, "time", column)
    if frame.height == 0:
        return None
    frame = fleet.engine_labels(requests, frame)[1] if requests.height else fleet.with_engine(frame)
    groups = frame["engine"].n_unique()
    every = every or auto_every(frame, "time", per_bucket=8, groups=groups)
    return resample(frame, every, [agg.alias("value")], group_by="engine").select(
        "engine", time=epoch_ms("time"), value=pl.col("value").cast(pl.Float64)
    )


def _lines(data: pl.DataFrame, title: str, y: alt.Y, fmt: str, subtitle: str) -> ChartType:
    engines = sorted(set(data["engine"].to_list()))
    chart: alt.Chart = (
        alt.Chart(data)
        .mark_line(interpolate="step-after")
        .encode(
            x=time_x(),
            y=y,
            color=_color(engines),
            tooltip=[
                alt.Tooltip("time:T", format="%H:%M:%S.%L", title="bucket"),
                alt.Tooltip("engine:N"),
                alt.Tooltip("value:Q", format=fmt),
            ],
        )
    )
    return chart.properties(title=alt.Title(title, subtitle=subtitle))


def engine_kv_usage(
    steps: pl.DataFrame, *, every: str | None = None, requests: pl.DataFrame | None = None
) -> ChartType:
    """KV-cache usage over time, one line per engine (bucket maxima).

    Args:
        steps: The steps frame (``time``, ``kv_cache_usage``, ``engine_id``, ``engine_idx``).
        every: Bucket width (Polars duration); by default at most about 300 buckets.
        requests: The requests frame, so engine labels agree with the other fleet charts.
    """
    title = "KV-cache usage per engine"
    req = requests if requests is not None else pl.DataFrame()
    data = _engine_series(steps, "kv_cache_usage", every, pl.col("kv_cache_usage").max(), req)
    if data is None:
        return no_data(title)
    y = alt.Y(
        "value:Q", title="KV usage", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])
    )
    return _lines(data, title, y, ".1%", "max per bucket")


def engine_queue(
    steps: pl.DataFrame, *, every: str | None = None, requests: pl.DataFrame | None = None
) -> ChartType:
    """Waiting requests (queue depth) over time, one line per engine (bucket means)."""
    title = "Queue depth per engine"
    req = requests if requests is not None else pl.DataFrame()
    data = _engine_series(steps, "waiting", every, pl.col("waiting").mean(), req)
    if data is None:
        return no_data(title)
    return _lines(
        data, title, alt.Y("value:Q", title="waiting requests"), ",.1f", "mean per bucket"
    )


def imbalance_rows(
    requests: pl.DataFrame, *, every: str | None = None, steps: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Shares per bucket and engine in long form: ``time`` (epoch ms), ``engine``, ``share``
    (``"requests"``/``"output tokens"``), ``value`` (0..1) and ``count``."""
    shares = fleet.engine_shares(requests, every=every, steps=steps)
    if shares.height == 0:
        return pl.DataFrame(
            schema={
                "time": pl.Float64,
                "engine": pl.String,
                "share": pl.String,
                "value": pl.Float64,
                "count": pl.Int64,
            }
        )
    base = shares.with_columns(time=epoch_ms("time"))
    return pl.concat(
        [
            base.select(
                "time",
                "engine",
                share=pl.lit("requests"),
                value="request_share",
                count=pl.col("requests").cast(pl.Int64),
            ),
            base.select(
                "time",
                "engine",
                share=pl.lit("output tokens"),
                value="token_share",
                count="output_tokens",
            ),
        ]
    ).sort("share", "time", "engine")


def engine_imbalance(
    requests: pl.DataFrame, *, every: str | None = None, steps: pl.DataFrame | None = None
) -> ChartType:
    """Each engine's share of the requests and output tokens arriving per time bucket.

    Stacked to 100 % per bucket, one panel for requests and one for output tokens: an even fleet
    shows equal flat bands; a band that swells is an engine taking more than its share.
    """
    title = "Load balance between engines"
    data = imbalance_rows(requests, every=every, steps=steps)
    if data.height == 0:
        return no_data(title)
    engines = sorted(set(data["engine"].to_list()))
    chart = (
        alt.Chart()
        .mark_area(interpolate="step-after", opacity=0.85)
        .encode(
            x=time_x(),
            y=alt.Y(
                "value:Q",
                stack="normalize",
                title="share",
                axis=alt.Axis(format="%"),
            ),
            color=_color(engines),
            order=alt.Order("engine:N"),
            tooltip=[
                alt.Tooltip("time:T", format="%H:%M:%S.%L", title="bucket"),
                alt.Tooltip("engine:N"),
                alt.Tooltip("share:N"),
                alt.Tooltip("value:Q", format=".1%", title="share"),
                alt.Tooltip("count:Q", format=","),
            ],
        )
        .properties(width=600, height=120)
    )
    return (
        alt.layer(chart, data=data)
        .facet(row=alt.Row("share:N", title=None, sort=["requests", "output tokens"]))
        .properties(
            title=alt.Title(title, subtitle="share per bucket of arrivals (stacked to 100 %)")
        )
    )


def slowest_engine_chart(
    requests: pl.DataFrame, *, metric: str = "ttft_s", steps: pl.DataFrame | None = None
) -> ChartType:
    """Each engine's p99 of ``metric`` against the fleet's (a rule); the slowest is marked.

    Args:
        requests: The requests frame.
        metric: ``ttft_s``, ``e2e_s`` or ``queue_s``.
        steps: The steps frame, only to label engines as the other fleet charts do.
    """
    label = metric_label(metric)
    title = f"Slowest engine: {label} p99"
    stats = fleet.engine_stats(requests, steps)
    col = f"{metric.removesuffix('_s')}_p99_s"
    if col not in stats.columns:
        raise ValueError(f"no p99 of {metric!r} per engine (ttft_s, e2e_s, queue_s)")
    top = fleet.slowest_of(stats, requests, metric=metric)
    if top is None:
        return no_data(title)
    data = stats.filter(pl.col(col).is_not_null()).select(
        "engine",
        "requests",
        ms=pl.col(col) * 1000,
        slowest=pl.col("engine") == top["engine"],
    )
    engines = sorted(data["engine"].to_list())
    fleet_ms = top["fleet_p99_s"] * 1000
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("engine:N", title=None, sort=engines),
            x=alt.X("ms:Q", title=f"{label} p99 (ms)"),
            color=_color(engines),
            opacity=alt.condition(alt.datum.slowest, alt.value(1.0), alt.value(0.45)),
            tooltip=[
                alt.Tooltip("engine:N"),
                alt.Tooltip("ms:Q", format=",.1f", title=f"{label} p99 ms"),
                alt.Tooltip("requests:Q", format=","),
                alt.Tooltip("slowest:N"),
            ],
        )
    )
    rule_data = pl.DataFrame({"ms": [fleet_ms], "what": [f"fleet p99 {fleet_ms:,.1f} ms"]})
    rule = (
        alt.Chart(rule_data)
        .mark_rule(color="#c0392b", strokeDash=[4, 3], size=2)
        .encode(x="ms:Q", tooltip=[alt.Tooltip("what:N", title="")])
    )
    ratio = top["ratio"]
    subtitle = f"slowest: {top['engine']}" + (f" ({ratio:.2f}x the fleet's p99)" if ratio else "")
    return alt.layer(bars, rule).properties(
        width=500, height=alt.Step(22), title=alt.Title(title, subtitle=subtitle)
    )


def fleet_dashboard(requests: pl.DataFrame, steps: pl.DataFrame) -> ChartType:
    """The fleet charts stacked: latency side by side, slowest engine, balance, KV, queue."""
    out: alt.VConcatChart = alt.vconcat(
        engine_latency(requests),
        slowest_engine_chart(requests, steps=steps),
        engine_imbalance(requests, steps=steps),
        engine_kv_usage(steps, requests=requests),
        engine_queue(steps, requests=requests),
    ).resolve_scale(color="independent")
    return out
