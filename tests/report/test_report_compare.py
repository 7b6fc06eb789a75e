"""write_comparison: two summaries side by side with deltas, and the comparison charts."""

from __future__ import annotations

from pathlib import Path

from report_html import EXTERNAL, specs, tables

from sagellm_obs.report import write_comparison
from sagellm_obs.run_summary import summarize


def test_comparison_tables_and_charts(run_a: Path, run_b: Path, tmp_path: Path) -> None:
    out = write_comparison(run_a, run_b, tmp_path / "compare.html")
    page = out.read_text()
    assert not EXTERNAL.search(page)
    sa, sb = summarize(run_a), summarize(run_b)
    latency = {row[0][0]: row[1:] for row in tables(page)["Latency (ms)"] if row}
    header = [text for text, _ in latency["metric"]]
    assert header == ["baseline", "slower", "Δ (slower - baseline)", "Δ %"]
    a, b = sa.latency["TTFT"]["p50"] * 1000, sb.latency["TTFT"]["p50"] * 1000
    (va, _), (vb, _), (delta, cls), (rel, _) = latency["TTFT p50"]
    assert (va, vb) == (f"{a:,.1f}", f"{b:,.1f}")
    assert delta == f"{b - a:+,.4g}"
    assert rel == f"{(b - a) / a:+.1%}"
    assert cls == "worse"  # the slower run's TTFT went up
    run = {row[0][0]: row[1:] for row in tables(page)["Run"] if row}
    assert [t for t, _ in run["requests"][:2]] == ["50", "40"]
    found = specs(page)
    assert set(found) == {"compare-ttft", "compare-e2e", "compare-tpot", "compare-queue"}
    bars = found["compare-ttft"]["hconcat"][1]["layer"][0]
    assert bars["mark"]["type"] == "bar"
    assert bars["encoding"]["color"]["scale"]["domain"] == ["baseline", "slower"]


def test_labels_and_default_output(run_a: Path, run_b: Path) -> None:
    out = write_comparison(run_a, run_b, labels=("before", "after"))
    assert out == run_b / "comparison.html"
    page = out.read_text()
    assert "sageLLM run comparison: before vs after" in page
    latency = tables(page)["Latency (ms)"]
    assert [t for t, _ in latency[0]][1:3] == ["before", "after"]
