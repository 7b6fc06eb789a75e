"""The charts' look: one Altair theme plus fixed colours for phases, quantiles and series.

Choice: a **registered theme** (``alt.theme.register``), not per-chart ``.configure_*`` calls.
A chart carrying its own ``config`` can no longer be layered or concatenated, and the chart
functions return building blocks that users (and :func:`~sagellm_obs.charts.run_dashboard`)
combine. ``import sagellm_obs.charts`` registers the theme ``"sagellm"`` and enables it unless the
user already enabled another theme; ``alt.theme.enable("default")`` switches back, and
``with alt.theme.enable("sagellm"):`` scopes it (the HTML report does that).

Colours that carry meaning do not depend on the theme: the chart functions put them in explicit
scales (:func:`phase_scale`, :func:`quantile_scale`), so queue/prefill/decode look the same in
every chart, theme or not.
"""

from __future__ import annotations

from typing import Final

import altair as alt

THEME: Final = "sagellm"
"""Name of the registered theme."""

PHASES: Final = ("queue", "prefill", "decode")
"""Request phases in time order."""

PHASE_COLORS: Final = {"queue": "#b0b0b0", "prefill": "#4c78a8", "decode": "#f58518"}
"""Fixed colour of each phase: grey waiting, blue prompt processing, orange generation."""

FRONTEND: Final = "frontend"
"""The engine frontend's share of a request's TTFT, before its phases (``requests.frontend_s``)."""

FRONTEND_COLOR: Final = "#eeca3b"
"""The engine request's own colour (trace charts): its time that no phase covers."""

WATERFALL_PARTS: Final = (FRONTEND, *PHASES)
"""A request's parts from arrival in a waterfall: TTFT = frontend + queue + prefill, then decode."""

QUANTILE_COLORS: Final = {"p50": "#2f7d32", "p90": "#8e44ad", "p99": "#c0392b"}
"""Fixed colour of the quantile rules and lines."""

SERIES_COLORS: Final = {
    "running": "#4c78a8",
    "waiting": "#e45756",
    "output tokens/s": "#f58518",
    "KV usage": "#54a24b",
    "rolling": "#4c78a8",
    "per step": "#9d9d9d",
}
"""Fixed colours of named time series."""

CATEGORY: Final = (
    "#4c78a8",
    "#f58518",
    "#54a24b",
    "#e45756",
    "#72b7b2",
    "#b279a2",
    "#eeca3b",
    "#9d755d",
    "#ff9da6",
    "#bab0ac",
)
"""Palette for unordered categories (runs, engines)."""

FONT: Final = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def sagellm_theme() -> alt.theme.ThemeConfig:
    """The theme's configuration (fonts, sizes, grid, category palette)."""
    return {
        "config": {
            "font": FONT,
            "view": {"continuousWidth": 440, "continuousHeight": 220, "stroke": "#dddddd"},
            "title": {
                "fontSize": 14,
                "fontWeight": 600,
                "anchor": "start",
                "subtitleColor": "#666",
            },
            "axis": {
                "labelFontSize": 11,
                "titleFontSize": 12,
                "titleFontWeight": 500,
                "gridColor": "#ececec",
                "domainColor": "#999999",
                "tickColor": "#999999",
            },
            "legend": {"labelFontSize": 11, "titleFontSize": 12},
            "range": {"category": list(CATEGORY)},
            "bar": {"binSpacing": 0},
            "line": {"strokeWidth": 2},
        }
    }


def phase_scale() -> alt.Scale:
    """Colour scale of the request phases, in time order."""
    return alt.Scale(domain=list(PHASES), range=[PHASE_COLORS[p] for p in PHASES])


def waterfall_scale() -> alt.Scale:
    """Colour scale of :data:`WATERFALL_PARTS`: the frontend, then the phases' colours."""
    colors = {FRONTEND: FRONTEND_COLOR, **PHASE_COLORS}
    return alt.Scale(domain=list(WATERFALL_PARTS), range=[colors[p] for p in WATERFALL_PARTS])


def quantile_scale(names: list[str]) -> alt.Scale:
    """Colour scale of quantile names (``"p50"``...); unknown ones get neutral grey."""
    return alt.Scale(domain=names, range=[QUANTILE_COLORS.get(n, "#555555") for n in names])


def series_scale(names: list[str]) -> alt.Scale:
    """Colour scale of named time series from :data:`SERIES_COLORS`."""
    return alt.Scale(domain=names, range=[SERIES_COLORS.get(n, "#555555") for n in names])


def cached_share_color() -> alt.Color:
    """The colour of a request by its cached share of the prompt (0-100 %, viridis).

    A symbol legend at 0, 25, 50, 75 and 100 %, not a gradient: a gradient legend fills with an
    SVG ``url(#...)`` reference that the page's URL can break (vega/vega-lite#2541), and in the
    JupyterLab explorer it showed its labels without the gradient.
    """
    return alt.Color(
        "cached_share:Q",
        title="cached share",
        scale=alt.Scale(domain=[0, 1], scheme="viridis"),
        legend=alt.Legend(type="symbol", format="%", values=[0, 0.25, 0.5, 0.75, 1.0]),
    )


def register_theme(*, enable: bool | None = None) -> None:
    """Registers the ``"sagellm"`` theme (idempotent).

    Args:
        enable: True enables it, False leaves the active theme alone, None (the default at
            import) enables it only while Altair's ``"default"`` theme is active, so a theme
            the user chose is kept.
    """
    if THEME not in alt.theme.names():
        alt.theme.register(THEME, enable=False)(sagellm_theme)
    if enable or (enable is None and alt.theme.active == "default"):
        alt.theme.enable(THEME)
