"""Rendering charts without internet access.

Altair's default renderer loads Vega from a CDN, so behind a firewall (or on a plane) a notebook
shows "Error loading script" instead of charts. :func:`enable_offline_renderer` picks a renderer
that carries the JavaScript itself (vl-convert bundles Vega, Vega-Lite and Vega-Embed):

* ``"jupyter"`` with ``offline=True`` when ``anywidget`` is installed: ``JupyterChart`` widgets,
  interactive (selections, tooltips) in JupyterLab and VS Code;
* otherwise ``"html"`` with the ``"inline"`` template: each chart's HTML output embeds the bundle.

Nothing calls it at import; notebooks and the explore helpers do.

Saved files are offline too: importing :mod:`sagellm_obs.charts` makes ``chart.save("x.html")``
inline the JavaScript (Altair's ``inline=True``) whenever vl-convert is installed, for every
Altair chart; pass ``inline=False`` for the smaller file that loads Vega from a CDN
(:func:`save_html_offline_by_default`).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import PurePath
from typing import Any, Literal

import altair as alt

__all__ = ["enable_offline_renderer", "save_html_offline_by_default"]

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


def _is_html(fp: Any, format: str | None) -> bool:
    if format is not None:
        return format == "html"
    name = fp if isinstance(fp, str | PurePath) else getattr(fp, "name", "")
    return str(name).lower().endswith(".html")


def save_html_offline_by_default() -> None:
    """Makes Altair's ``chart.save`` write HTML that renders offline unless told otherwise.

    An HTML target (a ``.html`` path, or ``format="html"``) gets ``inline=True`` when
    the call does not pass ``inline`` and vl-convert-python (which bundles the JavaScript) is
    installed; every other call is Altair's own. Idempotent; applies to every Altair chart.
    """
    save = alt.TopLevelMixin.save
    if getattr(save, "_sagellm_offline", False):
        return

    @functools.wraps(save)
    def offline_save(self: Any, fp: Any, format: Any = None, *args: Any, **kwargs: Any) -> None:
        if "inline" not in kwargs and _is_html(fp, format) and _installed("vl_convert"):
            kwargs["inline"] = True
        return save(self, fp, format, *args, **kwargs)

    offline_save._sagellm_offline = True  # type: ignore[attr-defined]
    alt.TopLevelMixin.save = offline_save  # type: ignore[method-assign]
