"""One self-contained HTML page holding tables and Vega-Lite charts that renders offline.

The Vega, Vega-Lite and Vega-Embed JavaScript comes from vl-convert's bundle
(``vl_convert.javascript_bundle()``) and is inlined **once** in the page head; each chart's spec
sits in a ``<script type="application/json">`` block and a small script hands it to ``vegaEmbed``.
Nothing is loaded over the network: no CDN, no fonts, no images.

While rendering, the page keeps ``window.sagellmCharts`` up to date (``total``, ``rendered``,
``failed``, ``done``), so a headless browser can wait for the charts and report failures; a chart
that fails shows its error in place.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import altair as alt

from sagellm_obs.charts import THEME, register_theme

__all__ = ["ChartBlock", "chart_spec", "render_page", "write_atomic"]

# In every vl-convert bundle (its default snippet's global): a kept file without it is rebuilt.
_BUNDLE_MARK = "vegaEmbed"
_EMBED_OPTIONS = {
    "renderer": "svg",
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}

_STYLE = """
:root { --fg: #1f2328; --muted: #656d76; --line: #d8dee4; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; color: var(--fg); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 12px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
p.meta { color: var(--muted); margin: 0 0 16px; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.tables { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 0 0 6px; }
th, td { padding: 4px 12px; border-bottom: 1px solid var(--line); }
thead th { background: var(--bg); text-align: right; }
thead th:first-child, tbody th { text-align: left; font-weight: 500; }
td { text-align: right; }
th.part { padding-left: 28px; }
table.setup thead th { text-align: left; }
td.setup { text-align: left; max-width: 520px; }
td.setup.differs { background: #fff8c5; }
p.note { color: var(--muted); font-size: 12px; max-width: 900px; }
div.warning { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px;
  padding: 8px 12px; margin: 0 0 16px; }
div.warning ul { margin: 4px 0 0; padding-left: 20px; }
td.better { color: #1a7f37; }
td.worse { color: #cf222e; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 24px; }
figure.chart { margin: 0; padding: 12px; border: 1px solid var(--line); border-radius: 6px;
  overflow-x: auto; }
figure.chart.wide { grid-column: 1 / -1; }
figure.chart div.vega { width: 100%; }
figure.chart figcaption { color: var(--muted); font-size: 12px; margin-top: 6px; }
.vega.error { color: #cf222e; white-space: pre-wrap; font: 12px ui-monospace, monospace; }
"""

_RENDER = """
(function () {
  const state = { total: 0, rendered: 0, failed: [], done: false };
  window.sagellmCharts = state;
  const options = __OPTIONS__;
  const jobs = [];
  for (const el of document.querySelectorAll("div.vega[data-spec]")) {
    state.total += 1;
    let spec;
    try {
      spec = JSON.parse(document.getElementById(el.dataset.spec).textContent);
    } catch (err) {
      state.failed.push(el.dataset.spec + ": " + err);
      continue;
    }
    jobs.push(
      vegaEmbed(el, spec, options)
        .then(() => { state.rendered += 1; })
        .catch((err) => {
          state.failed.push(el.dataset.spec + ": " + err);
          el.classList.add("error");
          el.textContent = "This chart failed to render: " + err;
        })
    );
  }
  Promise.all(jobs).then(() => {
    state.done = true;
    document.body.dataset.charts = state.failed.length ? "failed" : "rendered";
  });
})();
"""


@dataclass(frozen=True)
class ChartBlock:
    """One chart on the page.

    Attributes:
        key: Unique id (``ttft``...), used in element ids.
        spec: The Vega-Lite spec (``chart.to_dict()``).
        caption: Short text under the chart.
        wide: Spans the full page width.
    """

    key: str
    spec: Mapping[str, Any]
    caption: str = ""
    wide: bool = False


@contextmanager
def _chart_settings() -> Iterator[None]:
    """The project's theme and no row limit (charts already reduced their data)."""
    register_theme(enable=False)
    with alt.theme.enable(THEME), alt.data_transformers.enable("default", max_rows=None):
        yield


def chart_spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """``chart.to_dict()`` under the project's theme, whatever theme the user enabled."""
    with _chart_settings():
        return chart.to_dict()


@lru_cache(maxsize=1)
def _bundle() -> str:
    """vl-convert's Vega bundle (~0.9 MB): built once per version of it and kept in the user's
    cache, since building it takes ~2 s (a report written by a new process would pay it)."""
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    vl_version = vl_version_for_vl_convert()
    try:
        kept: Path | None = (
            bundle_cache() / f"vega-{metadata.version('vl-convert-python')}-{vl_version}.js"
        )
    except metadata.PackageNotFoundError:  # installed without its metadata: no version to key on
        kept = None
    with suppress(OSError, UnicodeDecodeError):
        code = kept.read_text(encoding="utf-8") if kept is not None else ""
        if _BUNDLE_MARK in code:
            return code
    # snippet=None selects vl-convert's default (vegaEmbed, vegaLite, vega as globals), as
    # Altair's inline template does; the stub wrongly requires a string.
    code = vlc.javascript_bundle(None, vl_version=vl_version)  # type: ignore[arg-type]
    # Defensive: the bundle must not close its own <script> element.
    code = code.replace("</script", "<\\/script")
    if kept is not None:
        with suppress(OSError):  # a read-only cache only costs the next process the build
            write_atomic(kept, code)
    return code


def bundle_cache() -> Path:
    """Where :func:`_bundle` keeps the bundle: ``<user cache dir>/sagellm-obs/vega``."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("sagellm-obs")) / "vega"


def _json_for_script(obj: Any) -> str:
    """JSON that cannot end a ``<script>`` element or open a comment inside it."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_COMPOUND = ("hconcat", "vconcat", "concat", "facet", "repeat")


def fit_card(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """A single or layered view as wide as its card, legend included (``width: "container"``);
    compound views (the dashboard, concatenations) keep their own layout.

    A fixed width plus a legend on the right was wider than a card in a two-column page, which
    then scrolled sideways.
    """
    if any(key in spec for key in _COMPOUND):
        return spec
    return {**spec, "width": "container", "autosize": {"type": "fit-x", "contains": "padding"}}


def _figure(block: ChartBlock) -> str:
    key = html.escape(block.key, quote=True)
    caption = f"<figcaption>{html.escape(block.caption)}</figcaption>" if block.caption else ""
    classes = "chart wide" if block.wide else "chart"
    return (
        f'<figure class="{classes}" id="chart-{key}">'
        f'<div class="vega" data-spec="spec-{key}"></div>{caption}'
        f'<script type="application/json" id="spec-{key}">'
        f"{_json_for_script(fit_card(block.spec))}</script>"
        "</figure>"
    )


def render_page(
    title: str,
    *,
    intro: str = "",
    sections: Sequence[tuple[str, str]] = (),
    charts: Sequence[tuple[str, Sequence[ChartBlock]]] = (),
) -> str:
    """The whole HTML document.

    Args:
        title: Page title and heading (plain text).
        intro: HTML under the heading (trusted: build it with ``html.escape``).
        sections: ``(heading, trusted HTML)`` pairs shown before the charts.
        charts: ``(heading, blocks)`` pairs: chart sections in order.

    Returns:
        The page, with the Vega libraries inlined once.
    """
    keys = [b.key for _, blocks in charts for b in blocks]
    if len(keys) != len(set(keys)):
        raise ValueError(f"chart keys must be unique, got {keys}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        f'<script type="text/javascript">{_bundle()}</script>',
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        intro,
    ]
    for heading, body in sections:
        parts.append(f"<section><h2>{html.escape(heading)}</h2>{body}</section>")
    for heading, blocks in charts:
        figures = "".join(_figure(b) for b in blocks)
        parts.append(
            f'<section><h2>{html.escape(heading)}</h2><div class="charts">{figures}</div></section>'
        )
    options = json.dumps(_EMBED_OPTIONS)
    parts.append(
        f'<script type="text/javascript">{_RENDER.replace("__OPTIONS__", options)}</script>'
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_atomic(path: Path, text: str) -> Path:
    """Writes ``text`` to ``path`` through a temporary file and a rename (no half-written page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
