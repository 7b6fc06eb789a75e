"""A live view of a run in Jupyter: charts that refresh while the run is written.

:func:`sagellm_obs.explore.live` builds a :class:`LiveView` over a run folder. A background
thread polls a :class:`~sagellm_obs.frames.tail.Tail` every few seconds (only the lines appended
since the last poll are read) and hands new Altair charts to ``alt.JupyterChart`` widgets, which
redraw in place: KV-cache usage, running and waiting requests, TTFT percentiles over time, the
prefix-cache hit rate and the output token throughput, over a sliding window. It needs no server:
the run folder is the only source. Pause/resume with the button or :meth:`LiveView.pause`; the
view stops refreshing when the run ends and keeps the final picture.
"""

from __future__ import annotations

import html
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final

import altair as alt
import ipywidgets as widgets  # type: ignore[import-untyped]
from altair.typing import ChartType

from sagellm_obs import charts
from sagellm_obs.explore.views import message_chart
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


def live_charts(tail: Tail, views: Iterable[str] = VIEWS) -> dict[str, ChartType]:
    """The live view's charts (those named in ``views``) over the tail's current window."""
    frames = tail.frames
    if frames.steps.height == 0 and frames.requests.height == 0:
        waiting = message_chart("", "waiting for the run's first steps and requests…")
        return dict.fromkeys(views, waiting)
    build: dict[str, Callable[[], ChartType]] = {
        "kv": lambda: charts.kv_usage(frames.steps),
        "queue": lambda: charts.concurrency(frames.steps),
        "ttft": lambda: charts.latency_over_time(frames.requests, "ttft_s"),
        "hit_rate": lambda: charts.prefix_hit_rate(frames.steps),
        "throughput": lambda: charts.throughput(frames.steps),
    }
    return {name: build[name]() for name in views}


def status_html(s: Snapshot, refreshes: int, paused: bool) -> str:
    """The line above the charts: the run's state and headline numbers."""
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
    color = "#2a7d2a" if s.ended else "#444"
    return f'<span style="color:{color}">{html.escape(text)}</span>'


class LiveView:
    """Charts of a run that refresh while it runs. Display it by leaving it last in a cell.

    Args:
        run_dir: The run folder (written by ``sagellm-obs run``/``serve`` or ``configure()``).
        every: Seconds between refreshes.
        window_s: The charts cover this many seconds (the newest).
        start: Start refreshing in the background now (False: call :meth:`refresh` yourself).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        every: float = 2.0,
        window_s: float | None = 120.0,
        start: bool = True,
    ) -> None:
        self.tail = Tail(run_dir, window_s=window_s)
        self.every = every
        self.refreshes = 0
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

    def refresh(self) -> int:
        """Read what the run appended and redraw; returns the rows read."""
        with self._lock:
            added = self.tail.poll()
            if added or self.snapshot is None or self.tail.ended:
                self.redraw()
            self.snapshot = snapshot(self.tail)
            self.refreshes += 1
            self.status.value = status_html(self.snapshot, self.refreshes, self.paused)
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
        for name, chart in live_charts(self.tail, stale).items():
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
            self.status.value = status_html(self.snapshot, self.refreshes, self.paused)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._running.wait()
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception:  # a live view must not die on one bad read: say so, go on
                _log.exception("sagellm-obs: live view refresh failed")
            if self._ended:
                return

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Displays as its widget tree."""
        return self.widget._repr_mimebundle_(**kwargs)
