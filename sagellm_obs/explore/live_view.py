"""A live view of a run in Jupyter: charts that refresh while the run is written.

:func:`sagellm_obs.explore.live` builds a :class:`LiveView` over a run folder. A background
thread polls a :class:`~sagellm_obs.frames.tail.Tail` every few seconds (only the lines appended
since the last poll are read) and hands new Altair charts to ``alt.JupyterChart`` widgets, which
redraw in place: KV-cache usage, running and waiting requests, TTFT percentiles over time, the
prefix-cache hit rate and the output token throughput, over a sliding window. It needs no server:
the run folder is the only source. Pause/resume with the button or :meth:`LiveView.pause`; the
view stops refreshing when the run ends and keeps the final picture.

The view must not slow down the engine it watches, which often shares its cores: each chart
draws at most :data:`LIVE_POINTS` rows (the window aggregated into time buckets), and the
refresh thread measures its own CPU and waits longer between refreshes when needed to stay
under ``cpu_budget`` of one core (:func:`refresh_interval`).
"""

from __future__ import annotations

import html
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import altair as alt
import ipywidgets as widgets  # type: ignore[import-untyped]
import polars as pl
from altair.typing import ChartType

from sagellm_obs import charts
from sagellm_obs.charts._data import auto_every, engine_column, time_span
from sagellm_obs.explore.views import message_chart
from sagellm_obs.frames.analysis import QUANTILES
from sagellm_obs.frames.loaded import Frames
from sagellm_obs.frames.tail import Tail
from sagellm_obs.watch import Snapshot, snapshot

_log = logging.getLogger(__name__)

VIEWS: Final = ("kv", "queue", "ttft", "hit_rate", "throughput")
"""The charts of a live view, top to bottom."""


INPUTS: Final = {
    "kv": ("steps",),
    "queue": ("steps",),
    "ttft": ("spans", "client"),
    "hit_rate": ("steps",),
    "throughput": ("steps",),
}
"""The tail's frames each chart is drawn from (see :attr:`Tail.versions`)."""


LIVE_POINTS: Final = 300
"""Most rows of data a live chart's spec carries, however many steps and requests the window
holds (each refresh sends every chart whose input changed, whole, to the browser)."""

CPU_BUDGET: Final = 0.02
"""Default share of one core the refresh thread may use (see :func:`refresh_interval`)."""

_SMOOTHING: Final = 0.3  # weight of the newest refresh's cost in the running estimate


def _every(frame: pl.DataFrame, column: str, *, per_bucket: int, most: int) -> str | None:
    """A bucket width giving at most ``most`` buckets (as the chart's own default otherwise)."""
    if frame.height == 0 or time_span(frame, column) is None:
        return None  # the chart draws its "no data" picture
    # auto_every's ``most`` bounds span / width; aligned buckets may number one more.
    return auto_every(frame, column, per_bucket=per_bucket, most=max(1, most - 1))


def live_charts(
    frames: Frames, views: Iterable[str] = VIEWS, *, points: int = LIVE_POINTS
) -> dict[str, ChartType]:
    """The live view's charts (those named in ``views``) of a window's frames (a tail's).

    The charts are the package's own (:mod:`sagellm_obs.charts`) with bucket widths and dot
    samples chosen so that each spec carries at most ``points`` rows of data: the window's
    thousands of steps are aggregated as each chart does (KV usage: mean and peak per bucket;
    running/waiting: bucket means; throughput: tokens per second per bucket; hit rate: the
    rolling rate at each bucket's end, plus a fixed-seed sample of steps; TTFT: quantiles per
    bucket, plus a fixed-seed sample of requests).
    """
    steps, requests = frames.steps, frames.requests
    if steps.height == 0 and requests.height == 0:
        waiting = message_chart("", "waiting for the run's first steps and requests…")
        return dict.fromkeys(views, waiting)
    engines = max(1, engine_column(steps)["engine_id"].n_unique()) if steps.height else 1
    half = points // 2
    quantiles = len(QUANTILES)  # latency_over_time's default
    build: dict[str, Callable[[], ChartType]] = {
        # one row per bucket and engine
        "kv": lambda: charts.kv_usage(
            steps, every=_every(steps, "time", per_bucket=2, most=points // engines)
        ),
        # running and waiting, summed over engines: two rows per bucket
        "queue": lambda: charts.concurrency(
            steps, every=_every(steps, "time", per_bucket=2, most=half)
        ),
        # a row per bucket and quantile, and the dots
        "ttft": lambda: charts.latency_over_time(
            requests,
            "ttft_s",
            every=_every(requests, "arrival", per_bucket=10, most=half // quantiles),
            points=points - half,
        ),
        # the rolling line, one row per bucket, and the dots
        "hit_rate": lambda: charts.prefix_hit_rate(
            steps, every=_every(steps, "time", per_bucket=2, most=half), points=points - half
        ),
        "throughput": lambda: charts.throughput(
            steps, every=_every(steps, "time", per_bucket=5, most=points)
        ),
    }
    return {name: build[name]() for name in views}


def refresh_interval(every: float, cost_s: float | None, budget: float | None) -> float:
    """Seconds to wait after a refresh: ``every``, or longer when a refresh's CPU needs it.

    A refresh costing ``cost_s`` seconds of CPU followed by a wait of ``cost_s / budget`` keeps
    the refresh thread under ``budget`` of one core (``cost / (cost + wait) < budget``).

    Args:
        every: The interval asked for.
        cost_s: CPU seconds of a refresh (an estimate: see :func:`smoothed_cost`); None before
            the first one.
        budget: Share of one core (0.02: 2%); None for no budget.
    """
    if budget is None or cost_s is None:
        return every
    if not budget > 0:
        raise ValueError(f"cpu_budget must be positive or None, got {budget!r}")
    return max(every, cost_s / budget)


def smoothed_cost(previous: float | None, cost_s: float, weight: float = _SMOOTHING) -> float:
    """A running estimate of a refresh's CPU: an exponential moving average (so that one
    refresh that read a large batch, or none, does not swing the interval alone)."""
    if previous is None:
        return cost_s
    return previous + weight * (cost_s - previous)


def status_html(
    s: Snapshot,
    refreshes: int,
    paused: bool,
    *,
    interval: float | None = None,
    every: float | None = None,
    budget: float | None = None,
) -> str:
    """The line above the charts: the run's state and headline numbers, and the refresh
    interval when the CPU budget stretched it beyond ``every``."""
    state = "ended" if s.ended else ("paused" if paused else "live")
    kv = "–" if s.kv_usage is None else f"{s.kv_usage:.1%}"
    hit = "–" if s.hit_rate_run is None else f"{s.hit_rate_run:.1%}"
    ttft = "–" if s.ttft_p99 is None else f"{s.ttft_p99 * 1000:,.1f} ms"
    text = (
        f"{s.run_id}: {state} · {s.requests:,} requests finished ({s.errors:,} failed or "
        f"cancelled) · KV {kv} · running {s.running if s.running is not None else '–'}, "
        f"waiting {s.waiting if s.waiting is not None else '–'} · TTFT p99 {ttft} (window) · "
        f"prefix hit rate {hit} (run) · refresh {refreshes}"
    )
    stretched = interval is not None and every is not None and interval > every
    if stretched and budget is not None and state == "live":
        text += f" · refreshing every {interval:.1f} s to stay under {budget:.0%} CPU"
    color = "#2a7d2a" if s.ended else "#444"
    return f'<span style="color:{color}">{html.escape(text)}</span>'


class LiveView:
    """Charts of a run that refresh while it runs. Display it by leaving it last in a cell.

    Args:
        run_dir: The run folder (written by ``sagellm-obs run``/``serve`` or ``configure()``).
        every: Seconds between refreshes (at least: see ``cpu_budget``).
        window_s: The charts cover this many seconds (the newest).
        start: Start refreshing in the background now (False: call :meth:`refresh` yourself).
        cpu_budget: Share of one core the background refreshes may use (0.02: 2%): the thread
            measures each refresh's CPU and waits longer than ``every`` when needed
            (:attr:`interval`, said in the status line). None: always ``every``.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        every: float = 2.0,
        window_s: float | None = 120.0,
        start: bool = True,
        cpu_budget: float | None = CPU_BUDGET,
    ) -> None:
        refresh_interval(every, 0.0, cpu_budget)  # a bad budget fails here, not in the thread
        self.tail = Tail(run_dir, window_s=window_s)
        self.every = every
        self.cpu_budget = cpu_budget
        self.refresh_cpu_s: float | None = None
        """Estimated CPU seconds of one background refresh (None before the first)."""
        self.refreshes = 0
        self._last_refresh = time.monotonic()  # when the latest refresh ended, whoever ran it
        self.snapshot: Snapshot | None = None
        self.charts: dict[str, ChartType] = {}
        self._drawn: dict[str, tuple[int, ...]] = {}  # each chart's input versions when drawn
        self._lock = threading.Lock()
        self._ended = False
        self._running = threading.Event()
        self._stop = threading.Event()
        self.status = widgets.HTML()
        self.pause_button = widgets.ToggleButton(
            value=False, description="Pause", icon="pause", layout=widgets.Layout(width="110px")
        )
        self.pause_button.observe(self._on_pause, names="value")
        self.views = {name: alt.JupyterChart(message_chart("", "loading…")) for name in VIEWS}
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.pause_button, self.status]),
                widgets.HBox([self.views["kv"], self.views["queue"]]),
                self.views["ttft"],
                widgets.HBox([self.views["hit_rate"], self.views["throughput"]]),
            ],
            layout=widgets.Layout(width="100%"),
        )
        self.widget.add_class("sagellm-live")
        if start:
            self._running.set()  # before the first picture, whose status would say "paused"
        self.refresh()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._loop, name="sagellm-live", daemon=True)
            self._thread.start()

    @property
    def ended(self) -> bool:
        """True once the run ended and the view drew its final picture (it then stops)."""
        return self._ended

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def interval(self) -> float:
        """Seconds the background thread waits between refreshes now: ``every``, or longer
        to keep its CPU under ``cpu_budget`` (see :func:`refresh_interval`)."""
        return refresh_interval(self.every, self.refresh_cpu_s, self.cpu_budget)

    def refresh(self) -> int:
        """Read what the run appended and redraw; returns the rows read."""
        with self._lock:
            added = self.tail.poll()
            if added or self.snapshot is None or self.tail.ended:
                self.redraw()
            self.snapshot = snapshot(self.tail)
            self.refreshes += 1
            self._last_refresh = time.monotonic()
            self._show_status()
            # Said only now: whoever waits for the end sees the final picture drawn.
            self._ended = self.tail.ended
            return added

    def redraw(self) -> None:
        """Hand the charts of the tail's current window to the widgets.

        Only charts whose input frames changed since they were drawn are rebuilt (the TTFT chart
        waits for the next batch of spans while the step charts move every refresh). Each widget
        gets its new Vega-Lite spec directly, without Altair's JSON-schema validation (which
        setting ``JupyterChart.chart`` runs on every refresh); the live charts have no selections
        or params, so nothing else of the widget depends on the chart.
        """
        keys = {name: tuple(self.tail.versions[i] for i in INPUTS[name]) for name in VIEWS}
        stale = [name for name in VIEWS if self._drawn.get(name) != keys[name]]
        for name, chart in live_charts(self.tail.frames, stale).items():
            self.charts[name] = chart
            self.views[name].spec = chart.to_dict(validate=False)
            self._drawn[name] = keys[name]

    def pause(self) -> None:
        """Stop refreshing (the charts keep what they show)."""
        self.pause_button.value = True

    def resume(self) -> None:
        """Refresh again."""
        self.pause_button.value = False

    def stop(self) -> None:
        """Stop the background refresh for good."""
        self._stop.set()
        self._running.set()  # wake a paused loop so that it can exit
        if self._thread is not None:
            self._thread.join(10)

    def _on_pause(self, change: Any) -> None:
        if change["new"]:
            self._running.clear()
            self.pause_button.description, self.pause_button.icon = "Resume", "play"
        else:
            self._running.set()
            self.pause_button.description, self.pause_button.icon = "Pause", "pause"
        if self.snapshot is not None:
            self._show_status()

    def _show_status(self) -> None:
        assert self.snapshot is not None
        self.status.value = status_html(
            self.snapshot,
            self.refreshes,
            self.paused,
            interval=self.interval,
            every=self.every,
            budget=self.cpu_budget,
        )

    def _loop(self) -> None:
        while True:
            # The interval runs from the latest refresh, this thread's or not (one by hand, one
            # just before a pause): the budget is CPU per second of wall time.
            if self._stop.wait(max(0.0, self._last_refresh + self.interval - time.monotonic())):
                return
            self._running.wait()
            if self._stop.is_set():
                return
            if time.monotonic() < self._last_refresh + self.interval:
                continue  # refreshed meanwhile: wait for the rest of the interval
            # This thread's CPU: reading, charts, and the widgets' messages, which the kernel
            # JSON-encodes in the thread that sets them (the send itself is the IOPub thread's).
            t0 = time.thread_time()
            try:
                self.refresh()
            except Exception:  # a live view must not die on one bad read: say so, go on
                _log.exception("sagellm-obs: live view refresh failed")
            self.refresh_cpu_s = smoothed_cost(self.refresh_cpu_s, time.thread_time() - t0)
            if self._ended:
                return

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Displays as its widget tree."""
        return self.widget._repr_mimebundle_(**kwargs)
