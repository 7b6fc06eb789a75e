"""Offline renderers and the theme; importing sagellm_obs stays free of altair."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import altair as alt
import pytest
from chart_frames import requests_frame

from sagellm_obs.charts import THEME, latency_distribution, offline, register_theme


@pytest.fixture
def restore_renderer() -> Iterator[None]:
    active, options = alt.renderers.active, dict(alt.renderers.options)
    yield
    alt.renderers.enable(active, **options)


@pytest.mark.usefixtures("restore_renderer")
def test_prefers_the_offline_jupyter_widget_when_anywidget_is_there() -> None:
    assert offline.enable_offline_renderer() == "jupyter"
    assert alt.renderers.active == "jupyter"
    assert alt.renderers.options == {"offline": True}


@pytest.mark.usefixtures("restore_renderer")
def test_falls_back_to_inline_html_without_anywidget(monkeypatch: pytest.MonkeyPatch) -> None:
    real = offline._installed
    monkeypatch.setattr(offline, "_installed", lambda m: m != "anywidget" and real(m))
    assert offline.enable_offline_renderer() == "html"
    assert (alt.renderers.active, alt.renderers.options) == ("html", {"template": "inline"})
    chart = latency_distribution(requests_frame([{"request_id": "a", "ttft_s": 0.1}]))
    bundle = chart._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert data is not None
    html = data["text/html"]
    assert "vegaEmbed" in html
    assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']?https?://", html)
    with pytest.raises(ImportError, match="anywidget"):
        offline.enable_offline_renderer("jupyter")


@pytest.mark.usefixtures("restore_renderer")
def test_explicit_html_and_bad_choice() -> None:
    assert offline.enable_offline_renderer("html") == "html"
    with pytest.raises(ValueError, match="prefer"):
        offline.enable_offline_renderer("cdn")  # type: ignore[arg-type]


def test_theme_is_registered_and_scoped() -> None:
    register_theme(enable=False)
    assert THEME in alt.theme.names()
    with alt.theme.enable(THEME):
        spec = latency_distribution(requests_frame([{"request_id": "a", "ttft_s": 0.1}])).to_dict()
    assert spec["config"]["view"]["continuousWidth"] == 440
    assert spec["config"]["title"]["anchor"] == "start"


def test_import_sagellm_obs_does_not_load_altair() -> None:
    code = "import sys, sagellm_obs; sys.exit('altair' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    code = "import sys, sagellm_obs.charts; sys.exit('altair' not in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


EXTERNAL_SCRIPT = re.compile(r"<script[^>]+src=[\"']?https?://")


@pytest.mark.parametrize("compose", ["one", "layered", "concatenated"])
def test_chart_save_html_renders_offline(compose: str, tmp_path: Path) -> None:
    chart = latency_distribution(requests_frame([{"request_id": "a", "ttft_s": 0.1}]))
    shaped = {"one": chart, "layered": chart + chart, "concatenated": chart | chart}[compose]
    shaped.save(tmp_path / "x.html")  # a Path, as users pass it
    page = (tmp_path / "x.html").read_text()
    assert not EXTERNAL_SCRIPT.search(page)
    assert "vegaEmbed" in page and len(page) > 100_000  # the bundle is inlined
    with open(tmp_path / "y.page", "w") as fh:  # a file object: the format says HTML
        shaped.save(fh, format="html")
    assert not EXTERNAL_SCRIPT.search((tmp_path / "y.page").read_text())


def test_chart_save_keeps_altairs_choices(tmp_path: Path) -> None:
    chart = latency_distribution(requests_frame([{"request_id": "a", "ttft_s": 0.1}]))
    chart.save(tmp_path / "cdn.html", inline=False)  # asked for: the small file with CDN links
    assert EXTERNAL_SCRIPT.search((tmp_path / "cdn.html").read_text())
    chart.save(tmp_path / "x.json")  # other formats are Altair's own
    assert json.loads((tmp_path / "x.json").read_text())["$schema"].startswith("https://vega")
    offline.save_html_offline_by_default()  # idempotent: no wrapper around the wrapper
    assert alt.TopLevelMixin.save.__wrapped__ is not alt.TopLevelMixin.save  # type: ignore[attr-defined]
    assert not hasattr(alt.TopLevelMixin.save.__wrapped__, "_sagellm_offline")  # type: ignore[attr-defined]
