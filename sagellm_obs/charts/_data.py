"""Polars preparation shared by the charts: units, time buckets, sampling, binning, "no data".

Every chart reduces its frame here before Altair sees it, so a chart's spec stays small however
many requests or steps the run holds: histograms are binned, time series are resampled into at
most :data:`MAX_BUCKETS` buckets and point clouds are sampled to at most :data:`MAX_POINTS` rows
with a fixed seed (the same frame always gives the same chart).

Times handed to Altair are epoch **milliseconds** as floats (``*_ms`` columns encoded ``:T``):
numbers are compact in the spec, and an interval selection over them filters other views by plain
numeric comparison.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Final

import altair as alt
import polars as pl

from sagellm_obs.frames.analysis import QUANTILES, quantile_label

MAX_POINTS: Final = 5000
"""Most points a scatter or linked-view sample puts into a spec."""

MAX_BUCKETS: Final = 300
"""About how many time buckets a resampled time series has at most."""

SEED: Final = 0
"""Seed of every sample, so a frame always gives the same chart."""


METRIC_LABELS: Final = {
    "ttft_s": "TTFT",
    "tpot_s": "TPOT",
    "e2e_s": "E2E",
    "queue_s": "queue",
    "prefill_s": "prefill",
    "decode_s": "decode",
    "inference_s": "inference",
    "client_ttft_s": "client TTFT",
    "client_e2e_s": "client E2E",
}

# Nice bucket widths for resampling, as (polars duration string, seconds).
_EVERY: Final = tuple(
    (f"{n}{unit}", n * scale)
    for unit, scale, steps in (
        ("ms", 1e-3, (1, 2, 5, 10, 20, 50, 100, 200, 500)),
        ("s", 1.0, (1, 2, 5, 10, 15, 30)),
        ("m", 60.0, (1, 2, 5, 10, 15, 30)),
        ("h", 3600.0, (1, 2, 3, 6, 12)),
        ("d", 86400.0, (1, 2, 7, 14, 28)),
    )
    for n in steps
)


def metric_label(metric: str) -> str:
    """Human name of a requests-frame latency column (``"ttft_s"`` gives ``"TTFT"``)."""
    return METRIC_LABELS.get(metric, metric.removesuffix("_s"))


def epoch_ms(column: str) -> pl.Expr:
    """Epoch milliseconds (float, microsecond precision) of a datetime column."""
    return pl.col(column).dt.epoch("us").cast(pl.Float64) / 1000.0


def ok_requests(requests: pl.DataFrame) -> pl.DataFrame:
    """Requests that neither failed nor were cancelled (what the summary's latencies use)."""
    cond = pl.lit(True)
    if "error_type" in requests.columns:
        cond = cond & pl.col("error_type").is_null()
    if "cancelled" in requests.columns:
        cond = cond & ~pl.col("cancelled").fill_null(False)
    return requests.filter(cond)


def finite(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Rows whose ``columns`` are all present and finite (JSON has no NaN)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        return frame.clear()
    cond = pl.lit(True)
    for c in columns:
        dtype = frame.schema[c]
        cond = cond & pl.col(c).is_not_null()
        if dtype.is_float():
            cond = cond & pl.col(c).is_finite()
    return frame.filter(cond)


def sample(frame: pl.DataFrame, n: int, *, seed: int = SEED) -> pl.DataFrame:
    """At most ``n`` rows, drawn without replacement with a fixed seed, in the original order."""
    if frame.height <= n:
        return frame
    idx = pl.int_range(frame.height, eager=True).sample(n, seed=seed).sort()
    return frame[idx]


def choose_every(start: datetime, end: datetime, target: int = MAX_BUCKETS) -> tuple[str, float]:
    """The smallest nice bucket width giving at most ``target`` buckets over ``[start, end]``.

    Returns:
        The width as a Polars duration string (``"500ms"``, ``"1m"``...) and in seconds.
    """
    span = max((end - start) / timedelta(seconds=1), 0.0)
    for every, seconds in _EVERY:
        if span / seconds <= target:
            return every, seconds
    return _EVERY[-1]


def auto_every(
    frame: pl.DataFrame,
    column: str,
    *,
    per_bucket: int,
    groups: int = 1,
    most: int = MAX_BUCKETS,
) -> str:
    """A bucket width for ``frame[column]``: about ``per_bucket`` rows per bucket and group,
    at most about ``most`` buckets (``frame`` must have a non-null value).

    Buckets start at multiples of the width, so ``[first, last]`` meets at most ``most + 1``.
    """
    span = time_span(frame, column)
    if span is None:
        raise ValueError(f"no {column} values to bucket")
    rows = frame.height // max(groups, 1)
    return choose_every(*span, target=max(1, min(most, rows // max(per_bucket, 1))))[0]


def time_x(
    field: str = "time", title: str | None = "time", *, ticks: int = 6, full: bool = False
) -> alt.X:
    """A temporal x channel with about ``ticks`` ticks (Vega's default crowds labels).

    Args:
        field: Column (epoch ms).
        title: Axis title.
        ticks: About how many ticks.
        full: Label every tick ``HH:MM:SS.mmm`` (for views that zoom in); otherwise labels are
            :data:`CLOCK_LABEL`'s.
    """
    if full:
        axis = alt.Axis(tickCount=ticks, format="%H:%M:%S.%L")
    else:
        axis = alt.Axis(tickCount=ticks, labelExpr=CLOCK_LABEL)
    return alt.X(f"{field}:T", title=title, axis=axis)


CLOCK_LABEL: Final = "timeFormat(datum.value, datum.value % 1000 ? '%H:%M:%S.%L' : '%H:%M:%S')"
"""Time-axis labels as clock times: ``12:00:15``, and ``12:00:15.500`` only for a tick between
whole seconds (Vega's default labels show such a tick as a bare ``.500``, whole seconds as
``:15`` and the hour as ``12 PM``)."""


def count_y(field: str = "count", title: str = "requests") -> alt.Y:
    """A y channel of whole counts (no fractional ticks)."""
    return alt.Y(f"{field}:Q", title=title, axis=alt.Axis(tickMinStep=1))


def auto_bins(n: int, bins: int) -> int:
    """No more than ``bins`` bins, and fewer for small samples (about 2√n, at least 10)."""
    return max(1, min(bins, max(10, int(2 * math.sqrt(n)))))


def parse_every(every: str) -> float:
    """Seconds of a Polars duration string such as ``"250ms"``, ``"1s"``, ``"5m"`` or ``"1h"``."""
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    total, number = 0.0, ""
    i = 0
    while i < len(every):
        ch = every[i]
        if ch.isdigit():
            number += ch
            i += 1
            continue
        unit = every[i : i + 2] if every[i : i + 2] in units else ch
        if unit not in units or not number:
            raise ValueError(f"unsupported duration {every!r}")
        total += int(number) * units[unit]
        number = ""
        i += len(unit)
    if number:
        raise ValueError(f"duration {every!r} lacks a unit")
    return total


def time_span(frame: pl.DataFrame, column: str) -> tuple[datetime, datetime] | None:
    """First and last value of a datetime column, or None when it is empty."""
    start, end = frame[column].min(), frame[column].max()
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return None
    return start, end


def nice_step(raw: float) -> float:
    """The 1, 2 or 5 times a power of ten at or above ``raw``."""
    if not raw > 0 or not math.isfinite(raw):
        return 1.0
    exp = math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * 10.0**exp >= raw * (1 - 1e-9):
            return m * 10.0**exp
    return 10.0 ** (exp + 1)


def histogram(
    values: pl.Series, bins: int = 50, *, extent: tuple[float, float] | None = None
) -> pl.DataFrame:
    """Counts of ``values`` in nice equal-width bins (only non-empty bins are returned).

    Args:
        values: Finite numbers.
        bins: About how many bins (the width is rounded to 1, 2 or 5 times a power of ten).
        extent: Range the bins cover (values outside go to the end bins); by default the
            values' min and max.

    Returns:
        Columns ``bin_start``, ``bin_end`` (f64) and ``count`` (i64), sorted by ``bin_start``.
    """
    schema = {"bin_start": pl.Float64, "bin_end": pl.Float64, "count": pl.Int64}
    if values.is_empty():
        return pl.DataFrame(schema=schema)
    if extent is None:
        lo, hi = float(values.min()), float(values.max())  # type: ignore[arg-type]
    else:
        lo, hi = extent
    step = nice_step((hi - lo) / max(bins, 1)) if hi > lo else nice_step(abs(lo) or 1.0) / 10
    origin = math.floor(lo / step + 1e-9) * step
    last = max(math.ceil((hi - origin) / step - 1e-9) - 1, 0)
    return (
        values.to_frame("v")
        .select(((pl.col("v") - origin) / step).floor().cast(pl.Int64).clip(0, last).alias("i"))
        .group_by("i")
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .sort("i")
        .select(
            (origin + pl.col("i") * step).round_sig_figs(12).alias("bin_start"),
            (origin + (pl.col("i") + 1) * step).round_sig_figs(12).alias("bin_end"),
            "count",
        )
    )


def short_number(value: float) -> str:
    """Three significant digits below 1000 (``"50.5"``, ``"0.0123"``), else whole with commas."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def quantile_values(
    values: pl.Series, quantiles: tuple[float, ...] = QUANTILES, *, unit: str = ""
) -> pl.DataFrame:
    """Linear-interpolated quantiles (as in the summary) with a label per quantile.

    Args:
        values: Finite numbers.
        quantiles: Which quantiles.
        unit: Appended to the labels (``"ms"`` gives ``"p50 12.3 ms"``).

    Returns:
        Columns ``quantile`` (``"p50"``...), ``value`` and ``label``; empty when ``values`` is.
    """
    rows = []
    suffix = f" {unit}" if unit else ""
    if not values.is_empty():
        for q in quantiles:
            value = float(values.quantile(q, interpolation="linear") or 0.0)
            name = quantile_label(q)
            rows.append(
                {"quantile": name, "value": value, "label": f"{name} {short_number(value)}{suffix}"}
            )
    return pl.DataFrame(
        rows, schema={"quantile": pl.String, "value": pl.Float64, "label": pl.String}
    )


def ecdf(values: pl.Series, points: int = 1000) -> pl.DataFrame:
    """The empirical CDF at no more than ``points`` values (evenly spaced ranks).

    Returns:
        Columns ``value`` (sorted) and ``fraction`` (share of values at or below it).
    """
    s = values.sort()
    n = s.len()
    if n == 0:
        return pl.DataFrame(schema={"value": pl.Float64, "fraction": pl.Float64})
    if n > points:
        idx = pl.linear_space(0, n - 1, points, eager=True).round().cast(pl.Int64).unique()
    else:
        idx = pl.int_range(n, eager=True)
    return pl.DataFrame({"value": s.gather(idx).cast(pl.Float64), "fraction": (idx + 1) / n})


def no_data(title: str, *, message: str = "no data") -> alt.Chart:
    """A small text chart standing in for a chart whose frame has nothing to plot."""
    chart: alt.Chart = (
        alt.Chart(pl.DataFrame({"message": [message]}), title=title, width=300, height=60)
        .mark_text(fontSize=14, color="#888")
        .encode(text="message:N")
    )
    return chart


def sample_note(shown: int, total: int) -> str:
    """``""`` or a subtitle saying a chart shows a sample."""
    return f"{shown:,} of {total:,} shown (fixed-seed sample)" if shown < total else ""


def resample(
    frame: pl.DataFrame,
    every: str,
    aggs: list[pl.Expr],
    *,
    time: str = "time",
    group_by: str | None = None,
) -> pl.DataFrame:
    """Aggregates ``frame`` into ``every``-wide time buckets (per ``group_by`` value if given).

    Buckets start at multiples of ``every``, so buckets of different groups line up. The bucket
    start stays in ``time`` (a datetime); empty buckets are absent.
    """
    keys = [group_by, time] if group_by else [time]
    return frame.sort(keys).group_by_dynamic(time, every=every, group_by=group_by).agg(aggs)


def engine_column(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with an ``engine_id`` column (``"engine"`` when it has none, nulls filled)."""
    if "engine_id" not in frame.columns:
        return frame.with_columns(engine_id=pl.lit("engine"))
    return frame.with_columns(pl.col("engine_id").fill_null("engine"))
