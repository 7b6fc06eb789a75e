"""write_report on a run folder written by the real pipeline: tables, specs, no network."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest
from report_html import EXTERNAL, specs, table_dict, tables
from report_run import build_run

from sagellm_obs.frames import Frames
from sagellm_obs.report import REPORT_NAME, write_report
from sagellm_obs.run_summary import summarize

CHARTS = {
    "ttft",
    "e2e",
    "ttft-over-time",
    "ttft-vs-prompt",
    "waterfall",
    "cached-share-by-request",
    "kv-usage",
    "prefix-hit-rate",
    "throughput",
    "concurrency",
    "dashboard",
}


@pytest.fixture(scope="module")
def page(run_a: Path) -> str:
    path = write_report(run_a)
    assert path == run_a / REPORT_NAME
    return path.read_text(encoding="utf-8")


def test_summary_tables_hold_the_summary_numbers(run_a: Path, page: str) -> None:
    summary = summarize(run_a)
    found = tables(page)
    latency = table_dict(found["Latency (ms) - 50 requests"])
    assert latency["metric"] == ["p50", "p90", "p99", "mean"]
    assert set(latency) >= {"TTFT", "TPOT", "E2E", "queue", "prefill", "decode"}
    for label, q in summary.latency.items():
        assert latency[label] == [f"{q[k] * 1000:,.1f}" for k in ("p50", "p90", "p99", "mean")]
    run = table_dict(found["Run"])
    assert run["requests"] == ["50"]
    assert run["ok"] == ["50"]
    assert run["duration (s)"] == [f"{summary.duration_s:,.2f}"]
    assert run["output token throughput (tok/s)"] == [f"{summary.output_token_throughput:,.1f}"]
    assert run["prefix-cache hit rate (tokens)"] == [f"{summary.prefix_hit_rate:.1%}"]
    assert run["KV-cache usage peak"] == [f"{summary.kv_usage_peak:.1%}"]
    assert "model <code>tiny-test</code>" in page


def test_every_chart_is_an_embedded_vega_lite_spec_with_data(page: str) -> None:
    found = specs(page)
    assert set(found) == CHARTS
    for key, spec in found.items():
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6"), key
        assert spec["config"]["title"]["anchor"] == "start", key  # the sagellm theme
        rows = [r for data in spec.get("datasets", {}).values() for r in data]
        assert rows, key
        assert not any(str(r.get("message", "")).startswith("no ") for r in rows), key
    assert page.count('<div class="vega" data-spec="spec-') == len(CHARTS)


def test_self_contained(page: str) -> None:
    assert not EXTERNAL.search(page)
    assert "<link" not in page
    assert not re.search(r"@import|url\(\s*['\"]?https?:", page)
    scripts = re.findall(r'<script type="text/javascript">', page)
    assert len(scripts) == 2  # the vega bundle once, then the embedding script
    assert page.count("vegaEmbed(el, spec, options)") == 1
    assert "cdn.jsdelivr" not in page


def test_out_and_slo(run_a: Path, tmp_path: Path) -> None:
    out = write_report(run_a, tmp_path / "elsewhere" / "r.html", slo={"ttft_s": 0.06})
    assert out == tmp_path / "elsewhere" / "r.html"
    run = table_dict(tables(out.read_text())["Run"])
    goodput = summarize(run_a, slo={"ttft_s": 0.06}).goodput
    assert goodput is not None
    assert run["goodput (ttft ≤ 60 ms)"] == [f"{goodput:.1%}"]


def test_run_without_requests_still_reports(tmp_path: Path) -> None:
    run = build_run(tmp_path / "idle", 0)
    page = write_report(run).read_text()
    found = specs(page)
    assert set(found) == CHARTS
    ttft_rows = [r for d in found["ttft"]["datasets"].values() for r in d]
    assert ttft_rows == [{"message": "no data"}]
    assert table_dict(tables(page)["Run"])["requests"] == ["0"]


def test_summary_and_report_leave_the_spans_unloaded(
    run_a: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sagellm_obs.frames
    import sagellm_obs.report.html

    real = sagellm_obs.frames.load
    loads: list[Frames] = []

    def spy(*args: Any, **kwargs: Any) -> Frames:
        loads.append(real(*args, **kwargs))
        return loads[-1]

    monkeypatch.setattr(sagellm_obs.frames, "load", spy)
    monkeypatch.setattr(sagellm_obs.report.html, "load", spy)
    lazy = summarize(run_a)
    write_report(run_a, tmp_path / "report.html")
    assert len(loads) == 3  # the summary; the report: its summary and its charts
    assert not any(f.spans_loaded for f in loads)
    assert lazy.warm_cache["checked"] > 0  # the warm-cache check ran, on the spans' blocks
    monkeypatch.setattr(sagellm_obs.frames, "load", functools.partial(real, spans="eager"))
    assert summarize(run_a) == lazy


def test_the_vega_bundle_is_built_once_per_version_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new process reads the bundle it kept instead of building it (~2 s); a kept file that is
    not a bundle is built again."""
    import vl_convert

    from sagellm_obs.report import page

    built: list[object] = []
    real = vl_convert.javascript_bundle

    def counting(*args: object, **kw: object) -> str:
        built.append(args)
        return str(real(*args, **kw))  # type: ignore[arg-type]

    monkeypatch.setattr(vl_convert, "javascript_bundle", counting)
    monkeypatch.setattr(page, "bundle_cache", lambda: tmp_path / "vega")

    def fresh() -> str:
        page._bundle.cache_clear()  # as in a new process
        return page._bundle()

    try:
        first = fresh()
        (kept,) = (tmp_path / "vega").iterdir()
        assert len(built) == 1 and kept.read_text(encoding="utf-8") == first
        assert fresh() == first and len(built) == 1
        kept.write_text("<html>half a bundle", encoding="utf-8")
        assert fresh() == first and len(built) == 2
        assert kept.read_text(encoding="utf-8") == first
    finally:
        page._bundle.cache_clear()
