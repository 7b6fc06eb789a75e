"""Rendering charts without internet access.

Altair's default renderer loads Vega from a CDN, so behind a firewall (or on a plane) a notebook
shows "Error loading script" instead of charts. :func:`enable_offline_renderer` picks a renderer
that carries the JavaScript itself (vl-convert bundles Vega, Vega-Lite and Vega-Embed):

* ``"jupyter"`` with ``offline=True`` when ``anywidget`` is installed: ``JupyterChart`` widgets,
  interactive (selections, tooltips) in JupyterLab and VS Code;
* otherwise ``"html"`` with the ``"inline"`` template: each chart's HTML output embeds the bundle.

Nothing calls it at import; notebooks and the explore helpers do.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import altair as alt

__all__ = ["enable_offline_renderer"]

Renderer = Literal["jupyter", "html"]


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def enable_offline_renderer(prefer: Literal["auto", "jupyter", "html"] = "auto") -> Renderer:
    """Enables an Altair renderer that works without network access.

    Args:
        prefer: ``"auto"`` takes ``"jupyter"`` when anywidget is importable, else ``"html"``;
            ``"jupyter"`` or ``"html"`` insist on one.

    Returns:
        The renderer enabled.

    Raises:
        ImportError: vl-convert-python (which supplies the bundled JavaScript) is missing, or
            anywidget is missing while ``prefer="jupyter"``.
        ValueError: Unknown ``prefer``.
    """
    if prefer not in ("auto", "jupyter", "html"):
        raise ValueError(f"prefer must be 'auto', 'jupyter' or 'html', got {prefer!r}")
    if not _installed("vl_convert"):
        raise ImportError(
            "offline chart rendering needs vl-convert-python: "
            "pip install 'sagellm-obs[notebook]' (or pip install vl-convert-python)"
        )
    use_widget = prefer == "jupyter" or (prefer == "auto" and _installed("anywidget"))
    if use_widget:
        if not _installed("anywidget"):
            raise ImportError("the jupyter renderer needs anywidget: pip install anywidget")
        alt.renderers.enable("jupyter", offline=True)
        return "jupyter"
    alt.renderers.enable("html", template="inline")
    return "html"
