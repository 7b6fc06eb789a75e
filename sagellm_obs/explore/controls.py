"""The explorer's widget tree: filter controls, the request list, chart views and their layout.

:class:`ExplorerWidgets` builds the widgets as attributes of the
:class:`~sagellm_obs.explore.widget.Explorer` (which inherits it), so the state and the event
handlers there read them by name (``explorer.run_picker``, ``explorer.request_list``...).
"""

from __future__ import annotations

from typing import Final

import altair as alt
import ipywidgets as widgets  # type: ignore[import-untyped]

from sagellm_obs.explore.data import SORT_COLUMNS, RunInput
from sagellm_obs.explore.views import message_chart

ALL: Final = ""
"""Value of the model and engine pickers meaning "all"."""

EMBED: Final = {"actions": {"export": True, "source": False, "compiled": False, "editor": False}}
"""vega-embed options of the chart views: export only."""


TAB_TITLES = ("Requests", "Dashboard", "Latency", "KV & prefix cache", "Engines")
"""Tab titles, in the order of :data:`~sagellm_obs.explore.views.TAB_VIEWS`."""


class ExplorerWidgets:
    """Builds the explorer's widgets (see :class:`~sagellm_obs.explore.widget.Explorer`)."""

    _sources: dict[str, RunInput]
    _first: str

    def _build_filters(self) -> None:
        """The pickers and sliders that hold the filters, and the status line."""
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

    def _build_views(self) -> None:
        """The request list, the detail panel and one chart widget per view."""
        wide = {"description_width": "initial"}
        self.sort_picker = widgets.Dropdown(
            options=list(SORT_COLUMNS), value="e2e_s", description="list", style=wide
        )
        self.request_list = widgets.Select(
            options=[], rows=12, layout=widgets.Layout(width="430px", height="240px")
        )
        self.detail = widgets.HTML()
        empty = message_chart("", "loading…")
        self.pick_view = alt.JupyterChart(empty, embed_options=EMBED)
        self.waterfall_view = alt.JupyterChart(empty, embed_options=EMBED)
        self.dashboard_view = alt.JupyterChart(empty, embed_options=EMBED)
        self.latency_view = alt.JupyterChart(empty, embed_options=EMBED)
        self.cache_view = alt.JupyterChart(empty, embed_options=EMBED)
        self.fleet_view = alt.JupyterChart(empty, embed_options=EMBED)

    def _build_layout(self) -> None:
        """Tabs of views under the filters: :attr:`widget`."""
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
            for view in (self.dashboard_view, self.latency_view, self.cache_view, self.fleet_view)
        ]
        self._all_tabs = ([requests_tab, *scrolled], TAB_TITLES)
        self.tabs = widgets.Tab(children=[requests_tab, *scrolled[:-1]], titles=TAB_TITLES[:-1])
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

    def _show_fleet_tab(self, show: bool) -> None:
        """Adds the "Engines" tab (last) for a fleet, removes it otherwise."""
        children, titles = self._all_tabs
        n = len(children) if show else len(children) - 1
        if len(self.tabs.children) == n:
            return
        if not show and (self.tabs.selected_index or 0) >= n:
            self.tabs.selected_index = 0
        self.tabs.children = children[:n]
        self.tabs.titles = titles[:n]
