"""What the explorer shows, as pure functions of the filtered frames: charts, status, list rows.

:class:`~sagellm_obs.explore.widget.Explorer` keeps the state and the widgets; everything it
draws comes from here, so each view can be tested (and reused) without widgets.
"""

from __future__ import annotations

import math
from typing import Any, Final

import altair as alt
import polars as pl
from altair.typing import ChartType

from sagellm_obs import charts
from sagellm_obs.charts.dashboard import request_sample
from sagellm_obs.charts.theme import cached_share_color
from sagellm_obs.explore.data import Filters, RunData

PICK: Final = "pick"
"""Name of the click selection on the request scatter."""

TAB_VIEWS: Final = (("pick", "waterfall"), ("dashboard",), ("latency",), ("cache",), ("fleet",))
"""The views of each tab, in tab order; the last ("Engines") is shown only for fleets."""
"""The chart views of each tab, in tab order."""


def message_chart(title: str, message: str) -> alt.Chart:
    """A chart that only says ``message`` (where a view has nothing to draw)."""
    chart: alt.Chart = (
        alt.Chart(pl.DataFrame({"message": [message]}), title=title, width=420, height=60)
        .mark_text(fontSize=14, color="#888")
        .encode(text="message:N")
    )
    return chart


def status_text(
    name: str,
    run: RunData | None,
    error: str,
    requests: pl.DataFrame,
    steps: pl.DataFrame,
    filters: Filters,
    arrival_range: tuple[float, float],
) -> str:
    """The status line: what is shown of run ``name``, or why nothing is."""
    if run is None:
        return f"Could not load run {name!r}: {error}"
    total = run.frames.requests.height
    if total == 0:
        n_steps = run.frames.steps.height
        what = f"{n_steps:,} engine steps but no request spans" if n_steps else "no requests"
        return (
            f"Run {name!r} has {what} yet. Send some requests, flush the telemetry "
            "(engine.flush() or telemetry.flush()), then call explore() again."
        )
    if requests.height == 0:
        return (
            f"No request of run {name!r} matches the filters ({total:,} in the run): widen the "
            "time range or the latency limits, or press Reset filters."
        )
    parts = [f"{requests.height:,} of {total:,} requests"]
    if filters.model:
        parts.append(f"model {filters.model}")
    if filters.engine:
        parts.append(f"engine {filters.engine}")
    if filters.start_s is not None or filters.end_s is not None:
        lo, hi = arrival_range
        parts.append(f"arriving {lo:.2f}–{hi:.2f} s after the start")
    if filters.ttft_max_ms is not None:
        parts.append(f"TTFT ≤ {filters.ttft_max_ms:,.1f} ms")
    if filters.e2e_max_ms is not None:
        parts.append(f"E2E ≤ {filters.e2e_max_ms:,.1f} ms")
    return ", ".join(parts) + f"; {steps.height:,} engine steps in the window."


def pick_chart(requests: pl.DataFrame, sample: int) -> ChartType:
    """The request scatter (E2E over arrival) whose click selection picks a request."""
    title = "Requests: click one to see its waterfall and attributes"
    data = request_sample(requests, sample) if requests.height else pl.DataFrame()
    if data.height == 0:
        return message_chart(title, "no requests to show")
    pick = alt.selection_point(name=PICK, fields=["request_id"], on="click", empty=False)
    note = f"{data.height:,} of {requests.height:,} shown" if data.height < requests.height else ""
    chart: alt.Chart = (
        alt.Chart(data, title=alt.Title(title, subtitle=note), width=760, height=180)
        .mark_circle(stroke="#d62728")
        .encode(
            x=alt.X("time:T", title="arrival", axis=alt.Axis(format="%H:%M:%S.%L")),
            y=alt.Y("e2e_ms:Q", title="E2E (ms)"),
            color=cached_share_color(),
            size=alt.when(pick).then(alt.value(160)).otherwise(alt.value(40)),
            strokeWidth=alt.when(pick).then(alt.value(2)).otherwise(alt.value(0)),
            tooltip=[
                alt.Tooltip("request_id:N", title="request"),
                alt.Tooltip("ttft_ms:Q", title="TTFT (ms)", format=",.2f"),
                alt.Tooltip("e2e_ms:Q", title="E2E (ms)", format=",.2f"),
                alt.Tooltip("input_tokens:Q", title="prompt tokens", format=","),
                alt.Tooltip("cached_share:Q", title="cached share", format=".0%"),
            ],
        )
        .add_params(pick)
    )
    return chart


def tab_chart(
    name: str, run: RunData, requests: pl.DataFrame, steps: pl.DataFrame, sample: int
) -> ChartType:
    """The chart of view ``name`` (see :data:`TAB_VIEWS`) over the filtered frames."""
    if name == "pick":
        return pick_chart(requests, sample)
    if name == "dashboard":
        # replace: the view shares the run's spans, deferred (the dashboard does not read them)
        view = run.frames.replace(requests=requests, steps=steps)
        return charts.run_dashboard(view, sample=sample)
    if name == "latency":
        return alt.vconcat(
            alt.hconcat(
                charts.latency_distribution(requests, "ttft_s"),
                charts.latency_distribution(requests, "e2e_s"),
            ),
            charts.latency_over_time(requests, "ttft_s"),
        )
    if name == "cache":
        return alt.vconcat(charts.kv_usage(steps), charts.prefix_hit_rate(steps))
    if name == "fleet":
        return charts.fleet_dashboard(requests, steps)
    raise ValueError(f"unknown chart {name!r}")  # pragma: no cover - internal names


def list_label(row: dict[str, Any]) -> str:
    """A request list entry: its id, E2E, TTFT and queue time, and its error if any."""
    parts = [str(row["request_id"])]
    for col, label in (("e2e_s", "E2E"), ("ttft_s", "TTFT"), ("queue_s", "queue")):
        value = row.get(col)
        if value is not None and math.isfinite(value):
            parts.append(f"{label} {value * 1000.0:,.1f} ms")
    if row.get("error_type"):
        parts.append(f"error {row['error_type']}")
    return " · ".join(parts)


def request_waterfall(one: pl.DataFrame, request_id: str) -> ChartType:
    """One request's waterfall (frontend, queue, prefill, decode), sized for the side panel."""
    waterfall = charts.request_waterfall(one, 1)
    if isinstance(waterfall, alt.Chart):  # one row: no row axis, few time labels
        waterfall = waterfall.encode(
            x=alt.X(
                "start:T",
                title=None,
                axis=alt.Axis(format="%H:%M:%S.%L", tickCount=3, labelOverlap=True),
            ),
            y=alt.Y("row:O", axis=None),
        )
    return waterfall.properties(
        title=alt.Title(
            f"Request {request_id}",
            subtitle="from its arrival: TTFT = frontend + queue + prefill, then decode",
        ),
        width=440,
        height=50,
    )
