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

import polars as pl
import traitlets
from altair.typing import ChartType

from sagellm_obs.explore.controls import ALL, ExplorerWidgets
from sagellm_obs.explore.data import (
    Filters,
    RunData,
    RunInput,
    html_table,
    load_run,
    request_attributes,
    request_spans,
    slowest,
)
from sagellm_obs.explore.views import (
    PICK,
    TAB_VIEWS,
    list_label,
    message_chart,
    request_waterfall,
    status_text,
    tab_chart,
)
from sagellm_obs.frames import Frames

__all__ = ["ALL", "PICK", "Explorer"]


_KEEP: Final = object()


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


class Explorer(ExplorerWidgets, traitlets.HasTraits):
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
        self._build_filters()
        self._build_views()
        self._build_layout()
        self._wire()

    def _wire(self) -> None:
        """Every control's change handler."""
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
        """The Altair charts, by view: pick, waterfall, dashboard, latency, cache, fleet (the
        "Engines" tab: drawn for every run, shown for fleets only).

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
            self._show_fleet_tab(run is not None and run.fleet)
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
        self._message = status_text(
            self.run_name,
            run,
            str(self._loaded.get(self.run_name, "")),
            self._requests,
            self._steps,
            filters,
            self.time_range.value,
        )
        color = "#b35900" if run is None or self._requests.height == 0 else "#444"
        self.status.value = f'<span style="color:{color}">{html.escape(self._message)}</span>'
        self._update_charts()
        self._refresh_list()
        current = self.selected_request_id
        if current is None or self._row(current, filtered=True) is None:
            first = self._listed["request_id"][0] if self._listed.height else None
            if first != current:
                self.selected_request_id = first  # observer shows it
                return
        self._show_request()  # same id, but maybe another run or filter: redraw

    def _update_charts(self) -> None:
        """Marks every filtered chart stale and redraws those of the visible tab."""
        self._stale = {name for names in TAB_VIEWS for name in names} - {"waterfall"}
        self._flush()

    def _flush(self, *, everything: bool = False) -> None:
        """Rebuilds the stale charts of the visible tab (of every tab with ``everything``)."""
        visible = set(TAB_VIEWS[self.tabs.selected_index or 0])
        for name in sorted(self._stale):
            if everything or name in visible:
                self._stale.discard(name)
                chart = (
                    message_chart("", self._message)
                    if self._run is None
                    else tab_chart(name, self._run, self._requests, self._steps, self.sample)
                )
                self._show(name, chart)

    def _on_tab(self, _change: Any) -> None:
        self._flush()

    def _refresh_list(self) -> None:
        by = str(self.sort_picker.value)
        req = self._requests
        self._listed = slowest(req, by, self.max_requests) if req.height else req
        options = [
            (list_label(row), str(row["request_id"])) for row in self._listed.iter_rows(named=True)
        ]
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

    def _trace_spans(self, row: dict[str, Any]) -> pl.DataFrame:
        """The spans of the request's trace: from the spans frame once it is loaded, else read
        for this trace alone, so that clicking through a 10M-span run does not load 4 GB."""
        assert self._run is not None
        frames = self._run.frames
        if frames.spans_loaded:
            return frames.spans
        return frames.scan_spans().filter(pl.col("trace_id") == row.get("trace_id")).collect()

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
                message_chart("Request waterfall", "select a request in the list or the scatter"),
            )
            self.detail.value = ""
            return
        one = self._run.frames.requests.filter(pl.col("request_id") == rid).head(1)
        self._show("waterfall", request_waterfall(one, str(rid)))
        spans = self._trace_spans(row)
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
