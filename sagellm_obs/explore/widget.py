"""The :class:`Explorer`: an ipywidgets dashboard over one or more runs.

Imported by :func:`sagellm_obs.explore.explore` only (it imports ipywidgets and Altair).

Every piece of state is a widget value or a traitlet: the pickers and sliders hold the filters,
:attr:`Explorer.selected_request_id` the selected request. Changing one of them (in the browser
or through the methods) recomputes the filtered frames in Polars and hands new Altair charts to
the ``alt.JupyterChart`` widgets, which redraw in place. Nothing needs a browser to be tested:
:attr:`Explorer.filtered_requests`, :attr:`Explorer.charts` and the tables hold the results.
"""

from __future__ import annotations

import contextlib
import html
import math
from collections.abc import Iterator, Mapping
from typing import Any, Final

import altair as alt
import ipywidgets as widgets  # type: ignore[import-untyped]
import polars as pl
import traitlets
from altair.typing import ChartType

from sagellm_obs import charts
from sagellm_obs.charts.dashboard import request_sample
from sagellm_obs.explore.data import (
    SORT_COLUMNS,
    Filters,
    RunData,
    RunInput,
    html_table,
    load_run,
    request_attributes,
    request_spans,
    slowest,
)
from sagellm_obs.frames import Frames

__all__ = ["ALL", "PICK", "Explorer"]

ALL: Final = ""
"""Value of the model and engine pickers meaning "all"."""

PICK: Final = "pick"
"""Name of the click selection on the request scatter."""

_EMBED: Final = {"actions": {"export": True, "source": False, "compiled": False, "editor": False}}
_KEEP: Final = object()
# The chart views of each tab, in tab order.
_TAB_VIEWS: Final = (("pick", "waterfall"), ("dashboard",), ("latency",), ("cache",))


def _message_chart(title: str, message: str) -> alt.Chart:
    chart: alt.Chart = (
        alt.Chart(pl.DataFrame({"message": [message]}), title=title, width=420, height=60)
        .mark_text(fontSize=14, color="#888")
        .encode(text="message:N")
    )
    return chart


def _nice_step(span: float, steps: int = 400) -> float:
    """A round slider step giving about ``steps`` positions over ``span``."""
    if span <= 0:
        return 0.001
    raw = span / steps
    power = 10.0 ** math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 5.0, 10.0):
        if raw <= mult * power:
            return max(mult * power, 0.001)
    return max(10.0 * power, 0.001)  # pragma: no cover - the loop always returns


def _ceil_to(value: float, step: float) -> float:
    return max(math.ceil(value / step - 1e-9) * step, step)


class Explorer(traitlets.HasTraits):
    """Pickers, filters, a request list and linked charts over one or more runs.

    Build it with :func:`sagellm_obs.explore.explore`; display it by leaving it last in a cell
    (or ``display(explorer)``). The widget tree is :attr:`widget`.

    Args:
        runs: Runs by name (loaded on first use).
        max_requests: Most requests listed in the request table (slowest first).
        sample: Most requests behind the scatter and the dashboard's request charts.
        run: The run shown first (default: the first).
    """

    selected_request_id = traitlets.Unicode(None, allow_none=True)
    """The request whose waterfall and attributes are shown (None: nothing selected)."""

    def __init__(
        self,
        runs: Mapping[str, RunInput],
        *,
        max_requests: int = 100,
        sample: int = 2000,
        run: str | None = None,
    ) -> None:
        super().__init__()
        if not runs:
            raise ValueError("Explorer needs at least one run")
        if run is not None and run not in runs:
            raise ValueError(f"unknown run {run!r}; runs: {', '.join(runs)}")
        self._sources = dict(runs)
        self._first = run if run is not None else next(iter(runs))
        self._loaded: dict[str, RunData | str] = {}
        self.max_requests = max(int(max_requests), 1)
        self.sample = max(int(sample), 1)
        self._quiet = 0
        self._run: RunData | None = None
        self._requests = pl.DataFrame()
        self._steps = pl.DataFrame()
        self._listed = pl.DataFrame()
        self._message = ""
        self._charts: dict[str, ChartType] = {}
        self._stale: set[str] = set()
        self.request_spans = pl.DataFrame(schema={"name": pl.String})
        """Spans of the selected request's trace (see :func:`~.data.request_spans`)."""
        self.request_attributes = pl.DataFrame(schema={"key": pl.String, "value": pl.String})
        """Key/value attributes of the selected request (see :func:`~.data.request_attributes`)."""
        self._build()
        self.observe(self._on_selected, names="selected_request_id")
        self._switch_run()

    # --- widgets -------------------------------------------------------------------------------

    def _build(self) -> None:
        names = list(self._sources)
        wide = {"description_width": "initial"}
        self.run_picker = widgets.Dropdown(
            options=names,
            value=self._first,
            description="run",
            disabled=len(names) < 2,
            style=wide,
            layout=widgets.Layout(width="360px"),
        )
        self.model_picker = widgets.Dropdown(
            options=[("all models", ALL)], description="model", style=wide
        )
        self.engine_picker = widgets.Dropdown(
            options=[("all engines", ALL)], description="engine", style=wide
        )
        self.time_range = widgets.FloatRangeSlider(
            value=(0.0, 1.0),
            min=0.0,
            max=1.0,
            step=0.01,
            description="arrival (s since start)",
            continuous_update=False,
            readout_format=".2f",
            style=wide,
            layout=widgets.Layout(width="640px"),
        )
        self.ttft_max = widgets.FloatSlider(
            value=1.0,
            min=0.0,
            max=1.0,
            description="TTFT ≤ (ms)",
            continuous_update=False,
            readout_format=".1f",
            style=wide,
            layout=widgets.Layout(width="420px"),
        )
        self.e2e_max = widgets.FloatSlider(
            value=1.0,
            min=0.0,
            max=1.0,
            description="E2E ≤ (ms)",
            continuous_update=False,
            readout_format=".1f",
            style=wide,
            layout=widgets.Layout(width="420px"),
        )
        self.reset_button = widgets.Button(
            description="Reset filters", icon="undo", layout=widgets.Layout(width="130px")
        )
        self.status = widgets.HTML()
        self.sort_picker = widgets.Dropdown(
            options=list(SORT_COLUMNS), value="e2e_s", description="list", style=wide
        )
        self.request_list = widgets.Select(
            options=[], rows=12, layout=widgets.Layout(width="430px", height="240px")
        )
        self.detail = widgets.HTML()
        empty = _message_chart("", "loading…")
        self.pick_view = alt.JupyterChart(empty, embed_options=_EMBED)
        self.waterfall_view = alt.JupyterChart(empty, embed_options=_EMBED)
        self.dashboard_view = alt.JupyterChart(empty, embed_options=_EMBED)
        self.latency_view = alt.JupyterChart(empty, embed_options=_EMBED)
        self.cache_view = alt.JupyterChart(empty, embed_options=_EMBED)

        requests_tab = widgets.VBox(
            [
                self.pick_view,
                widgets.HBox(
                    [
                        widgets.VBox(
                            [self.sort_picker, self.request_list],
                            layout=widgets.Layout(flex="0 0 auto", width="440px"),
                        ),
                        self.waterfall_view,
                    ]
                ),
                self.detail,
            ],
            layout=widgets.Layout(overflow="auto"),
        )
        scrolled = [
            widgets.VBox([view], layout=widgets.Layout(overflow="auto"))
            for view in (self.dashboard_view, self.latency_view, self.cache_view)
        ]
        self.tabs = widgets.Tab(
            children=[requests_tab, *scrolled],
            titles=("Requests", "Dashboard", "Latency", "KV & prefix cache"),
        )
        header = widgets.HTML("<b>sagellm-obs explorer</b>")
        self.widget = widgets.VBox(
            [
                header,
                widgets.HBox([self.run_picker, self.model_picker, self.engine_picker]),
                self.time_range,
                widgets.HBox([self.ttft_max, self.e2e_max, self.reset_button]),
                self.status,
                self.tabs,
            ],
            layout=widgets.Layout(width="100%"),
        )
        self.widget.add_class("sagellm-explorer")

        self.run_picker.observe(self._on_run, names="value")
        for w in (self.model_picker, self.engine_picker, self.time_range):
            w.observe(self._on_filter, names="value")
        for w in (self.ttft_max, self.e2e_max):
            w.observe(self._on_filter, names="value")
        self.sort_picker.observe(self._on_sort, names="value")
        self.request_list.observe(self._on_list, names="value")
        self.pick_view.observe(self._on_pick, names="_vl_selections")
        self.tabs.observe(self._on_tab, names="selected_index")
        self.reset_button.on_click(lambda _button: self.reset_filters())

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Displays as its widget tree."""
        return self.widget._repr_mimebundle_(**kwargs)

    # --- public state --------------------------------------------------------------------------

    @property
    def runs(self) -> list[str]:
        """Names of the runs in the run picker."""
        return list(self._sources)

    @property
    def run_name(self) -> str:
        """The run shown."""
        return str(self.run_picker.value)

    @property
    def run(self) -> RunData | None:
        """The run shown, or None when it could not be loaded."""
        return self._run

    @property
    def frames(self) -> Frames | None:
        """The frames of the run shown (unfiltered)."""
        return self._run.frames if self._run is not None else None

    @property
    def filters(self) -> Filters:
        """The filters the widgets hold (a limit at the end of its slider is no limit)."""
        lo, hi = self.time_range.value
        active = self._run is not None and self._run.t0 is not None
        return Filters(
            model=self.model_picker.value or None,
            engine=self.engine_picker.value or None,
            start_s=float(lo) if active and lo > self.time_range.min else None,
            end_s=float(hi) if active and hi < self.time_range.max else None,
            ttft_max_ms=self._limit(self.ttft_max),
            e2e_max_ms=self._limit(self.e2e_max),
        )

    def _limit(self, slider: Any) -> float | None:
        if slider.disabled or slider.value >= slider.max:
            return None
        return float(slider.value)

    @property
    def filtered_requests(self) -> pl.DataFrame:
        """The requests frame of the run after the filters (plus ``offset_s``), by arrival."""
        return self._requests

    @property
    def filtered_steps(self) -> pl.DataFrame:
        """The steps frame of the run inside the time window (and of the engine picked)."""
        return self._steps

    @property
    def listed_requests(self) -> pl.DataFrame:
        """The rows of the request list: the slowest filtered requests, slowest first."""
        return self._listed

    @property
    def message(self) -> str:
        """What the status line says (plain text)."""
        return self._message

    @property
    def charts(self) -> dict[str, ChartType]:
        """The Altair charts, by view: pick, waterfall, dashboard, latency, cache.

        Charts of hidden tabs are rebuilt when their tab is opened; reading this property
        rebuilds them all (and updates their widgets).
        """
        self._flush(everything=True)
        return dict(self._charts)

    def _show(self, name: str, chart: ChartType) -> None:
        self._charts[name] = chart
        getattr(self, f"{name}_view").chart = chart

    # --- programmatic control ------------------------------------------------------------------

    def select_run(self, name: str) -> None:
        """Shows run ``name`` (filters reset to the whole run)."""
        if name not in self._sources:
            raise KeyError(f"unknown run {name!r}; runs: {', '.join(self._sources)}")
        self.run_picker.value = name

    def set_model(self, model: str | None) -> None:
        """Keeps only requests of ``model`` (None: all models)."""
        self._set_choice(self.model_picker, model, "model")

    def set_engine(self, engine: str | None) -> None:
        """Keeps only requests and steps of engine ``engine`` (None: all engines)."""
        self._set_choice(self.engine_picker, engine, "engine")

    def _set_choice(self, picker: Any, value: str | None, what: str) -> None:
        want = value or ALL
        values = [v for _, v in picker.options]
        if want not in values:
            known = ", ".join(v for v in values if v) or "none"
            raise ValueError(f"no {what} {value!r} in run {self.run_name!r}; known: {known}")
        picker.value = want

    def set_time_range(self, start_s: float | None = None, end_s: float | None = None) -> None:
        """Keeps requests arriving (and steps) between ``start_s`` and ``end_s`` seconds after
        the run's start; None leaves that side open. Values are clamped to the run."""
        lo = self.time_range.min if start_s is None else float(start_s)
        hi = self.time_range.max if end_s is None else float(end_s)
        if hi < lo:
            raise ValueError(f"end {end_s} is before start {start_s}")
        self.time_range.value = (lo, hi)

    def set_latency_limits(self, *, ttft_ms: Any = _KEEP, e2e_ms: Any = _KEEP) -> None:
        """Keeps requests with TTFT ≤ ``ttft_ms`` and E2E ≤ ``e2e_ms``.

        None removes a limit; a limit left out keeps its current value.
        """
        with self._batch():
            for slider, value in ((self.ttft_max, ttft_ms), (self.e2e_max, e2e_ms)):
                if value is _KEEP:
                    continue
                slider.value = slider.max if value is None else min(float(value), slider.max)

    def reset_filters(self) -> None:
        """Back to the whole run: all models and engines, full time range, no latency limits."""
        with self._batch():
            self.model_picker.value = ALL
            self.engine_picker.value = ALL
            self.time_range.value = (self.time_range.min, self.time_range.max)
            self.ttft_max.value = self.ttft_max.max
            self.e2e_max.value = self.e2e_max.max

    def select_request(self, request_id: str | None) -> None:
        """Shows the waterfall and attributes of ``request_id`` (any request of the run)."""
        if request_id is not None and self._row(request_id) is None:
            raise ValueError(f"no request {request_id!r} in run {self.run_name!r}")
        self.selected_request_id = request_id

    # --- reactions -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Widget changes inside refresh once, at the end."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1
        if not self._quiet:
            self._refresh()

    @contextlib.contextmanager
    def _silent(self) -> Iterator[None]:
        """Widget changes inside do not refresh at all (the caller does)."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    def _on_run(self, _change: Any) -> None:
        if not self._quiet:
            self._switch_run()

    def _on_filter(self, _change: Any) -> None:
        if not self._quiet:
            self._refresh()

    def _on_sort(self, _change: Any) -> None:
        if not self._quiet:
            self._refresh_list()

    def _on_list(self, change: Any) -> None:
        if not self._quiet and change["new"]:
            self.selected_request_id = change["new"]

    def _on_pick(self, change: Any) -> None:
        state = (change["new"] or {}).get(PICK) or {}
        value = state.get("value") or {}
        points = value.get("vlPoint", {}).get("or", []) if isinstance(value, dict) else []
        ids = [p.get("request_id") for p in points if isinstance(p, dict)]
        if ids and ids[0] and self._row(str(ids[0])) is not None:
            self.selected_request_id = str(ids[0])

    def _on_selected(self, _change: Any) -> None:
        self._show_request()

    # --- recomputing ---------------------------------------------------------------------------

    def _load(self, name: str) -> RunData | str:
        if name not in self._loaded:
            try:
                self._loaded[name] = load_run(name, self._sources[name])
            except Exception as exc:  # a bad run must not break the others
                self._loaded[name] = f"{type(exc).__name__}: {exc}"
        return self._loaded[name]

    def _switch_run(self) -> None:
        loaded = self._load(self.run_name)
        self._run = loaded if isinstance(loaded, RunData) else None
        run = self._run
        with self._silent():
            models = run.models if run else []
            engines = run.engines if run else []
            self.model_picker.options = [("all models", ALL), *((m, m) for m in models)]
            self.model_picker.value = ALL
            self.model_picker.disabled = len(models) < 2
            self.engine_picker.options = [("all engines", ALL), *((e, e) for e in engines)]
            self.engine_picker.value = ALL
            self.engine_picker.disabled = len(engines) < 2
            timed = run is not None and run.t0 is not None
            span = run.duration_s if run is not None and timed else 0.0
            step = _nice_step(span)
            self.time_range.step = step
            self.time_range.max = _ceil_to(span, step) if timed else 1.0
            self.time_range.value = (0.0, self.time_range.max)
            self.time_range.disabled = not timed
            for slider, top in (
                (self.ttft_max, run.max_ttft_ms if run else 0.0),
                (self.e2e_max, run.max_e2e_ms if run else 0.0),
            ):
                slider.step = _nice_step(top, 200)
                slider.max = _ceil_to(top, slider.step) if top > 0 else 1.0
                slider.value = slider.max
                slider.disabled = top <= 0
        self._refresh()

    def _refresh(self) -> None:
        run = self._run
        filters = self.filters
        if run is None:
            self._requests = pl.DataFrame()
            self._steps = pl.DataFrame()
        else:
            self._requests = run.requests(filters)
            self._steps = run.steps(filters)
        self._set_message(run, filters)
        self._update_charts()
        self._refresh_list()
        current = self.selected_request_id
        if current is None or self._row(current, filtered=True) is None:
            first = self._listed["request_id"][0] if self._listed.height else None
            if first != current:
                self.selected_request_id = first  # observer shows it
                return
        self._show_request()  # same id, but maybe another run or filter: redraw

    def _set_message(self, run: RunData | None, filters: Filters) -> None:
        name = self.run_name
        if run is None:
            error = self._loaded.get(name, "")
            text = f"Could not load run {name!r}: {error}"
        elif run.frames.requests.height == 0:
            steps = run.frames.steps.height
            what = f"{steps:,} engine steps but no request spans" if steps else "no requests"
            text = (
                f"Run {name!r} has {what} yet. Send some requests, flush the telemetry "
                "(engine.flush() or telemetry.flush()), then call explore() again."
            )
        elif self._requests.height == 0:
            text = (
                f"No request of run {name!r} matches the filters "
                f"({run.frames.requests.height:,} in the run): widen the time range or the "
                "latency limits, or press Reset filters."
            )
        else:
            total = run.frames.requests.height
            parts = [f"{self._requests.height:,} of {total:,} requests"]
            if filters.model:
                parts.append(f"model {filters.model}")
            if filters.engine:
                parts.append(f"engine {filters.engine}")
            if filters.start_s is not None or filters.end_s is not None:
                lo, hi = self.time_range.value
                parts.append(f"arriving {lo:.2f}–{hi:.2f} s after the start")
            if filters.ttft_max_ms is not None:
                parts.append(f"TTFT ≤ {filters.ttft_max_ms:,.1f} ms")
            if filters.e2e_max_ms is not None:
                parts.append(f"E2E ≤ {filters.e2e_max_ms:,.1f} ms")
            steps = self._steps.height
            text = ", ".join(parts) + f"; {steps:,} engine steps in the window."
        self._message = text
        color = "#b35900" if run is None or self._requests.height == 0 else "#444"
        self.status.value = f'<span style="color:{color}">{html.escape(text)}</span>'

    def _pick_chart(self) -> ChartType:
        title = "Requests: click one to see its waterfall and attributes"
        req = self._requests
        data = request_sample(req, self.sample) if req.height else pl.DataFrame()
        if data.height == 0:
            return _message_chart(title, "no requests to show")
        pick = alt.selection_point(name=PICK, fields=["request_id"], on="click", empty=False)
        note = f"{data.height:,} of {req.height:,} shown" if data.height < req.height else ""
        chart: alt.Chart = (
            alt.Chart(data, title=alt.Title(title, subtitle=note), width=760, height=180)
            .mark_circle(stroke="#d62728")
            .encode(
                x=alt.X("time:T", title="arrival", axis=alt.Axis(format="%H:%M:%S.%L")),
                y=alt.Y("e2e_ms:Q", title="E2E (ms)"),
                color=alt.Color(
                    "cached_share:Q",
                    title="cached share",
                    scale=alt.Scale(domain=[0, 1], scheme="viridis"),
                    legend=alt.Legend(format="%"),
                ),
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

    def _update_charts(self) -> None:
        """Marks every filtered chart stale and redraws those of the visible tab."""
        self._stale = {name for names in _TAB_VIEWS for name in names} - {"waterfall"}
        self._flush()

    def _flush(self, *, everything: bool = False) -> None:
        """Rebuilds the stale charts of the visible tab (of every tab with ``everything``)."""
        visible = set(_TAB_VIEWS[self.tabs.selected_index or 0])
        for name in sorted(self._stale):
            if everything or name in visible:
                self._stale.discard(name)
                self._show(name, self._build_chart(name))

    def _on_tab(self, _change: Any) -> None:
        self._flush()

    def _build_chart(self, name: str) -> ChartType:
        req, steps = self._requests, self._steps
        if self._run is None:
            return _message_chart("", self._message)
        if name == "pick":
            return self._pick_chart()
        if name == "dashboard":
            frames = self._run.frames
            view = Frames(spans=frames.spans, requests=req, steps=steps, metrics=frames.metrics)
            return charts.run_dashboard(view, sample=self.sample)
        if name == "latency":
            return alt.vconcat(
                alt.hconcat(
                    charts.latency_distribution(req, "ttft_s"),
                    charts.latency_distribution(req, "e2e_s"),
                ),
                charts.latency_over_time(req, "ttft_s"),
            )
        if name == "cache":
            return alt.vconcat(charts.kv_usage(steps), charts.prefix_hit_rate(steps))
        raise ValueError(f"unknown chart {name!r}")  # pragma: no cover - internal names

    def _refresh_list(self) -> None:
        by = str(self.sort_picker.value)
        req = self._requests
        self._listed = slowest(req, by, self.max_requests) if req.height else req
        options = []
        for row in self._listed.iter_rows(named=True):
            parts = [str(row["request_id"])]
            for col, label in (("e2e_s", "E2E"), ("ttft_s", "TTFT"), ("queue_s", "queue")):
                value = row.get(col)
                if value is not None and math.isfinite(value):
                    parts.append(f"{label} {value * 1000.0:,.1f} ms")
            if row.get("error_type"):
                parts.append(f"error {row['error_type']}")
            options.append((" · ".join(parts), str(row["request_id"])))
        with self._silent():
            self.request_list.options = options
            ids = [v for _, v in options]
            self.request_list.value = (
                self.selected_request_id if self.selected_request_id in ids else None
            )

    def _row(self, request_id: str, *, filtered: bool = False) -> dict[str, Any] | None:
        if self._run is None:
            return None
        frame = self._requests if filtered else self._run.frames.requests
        if frame.height == 0:
            return None
        rows = frame.filter(pl.col("request_id") == request_id)
        return rows.row(0, named=True) if rows.height else None

    def _show_request(self) -> None:
        rid = self.selected_request_id
        with self._silent():
            ids = [v for _, v in self.request_list.options]
            self.request_list.value = rid if rid in ids else None
        row = self._row(rid) if rid is not None else None
        if row is None or self._run is None:
            self.request_spans = pl.DataFrame(schema={"name": pl.String})
            self.request_attributes = pl.DataFrame(schema={"key": pl.String, "value": pl.String})
            self._show(
                "waterfall",
                _message_chart("Request waterfall", "select a request in the list or the scatter"),
            )
            self.detail.value = ""
            return
        one = self._run.frames.requests.filter(pl.col("request_id") == rid).head(1)
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
        waterfall = waterfall.properties(
            title=alt.Title(
                f"Request {rid}", subtitle="queue, prefill and decode from its arrival"
            ),
            width=440,
            height=50,
        )
        self._show("waterfall", waterfall)
        spans = self._run.frames.spans
        self.request_spans = request_spans(spans, row)
        self.request_attributes = request_attributes(spans, row)
        span_table = html_table(
            self.request_spans,
            caption=f"Spans of trace {row.get('trace_id')}",
            headers={"start_ms": "start (ms after arrival)", "duration_ms": "duration (ms)"},
            highlight="is_request",
        )
        attr_table = html_table(self.request_attributes, caption="Attributes", max_rows=80)
        layout = "display:flex;flex-flow:row wrap;gap:8px 32px;align-items:flex-start"
        self.detail.value = f'<div style="{layout}">{span_table}{attr_table}</div>'
