"""write_comparison: two summaries side by side with deltas, and the comparison charts."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from report_html import EXTERNAL, specs, tables
from rich.console import Console

from sagellm_obs import run_summary
from sagellm_obs.report import write_comparison, write_run_comparison
from sagellm_obs.run_comparison import comparison_table, render_comparison
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


def test_three_runs_against_one_baseline(run_a: Path, run_b: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    shutil.copytree(run_a, again)  # the baseline once more: its deltas must be zero
    out = write_run_comparison([run_a, run_b, again], tmp_path / "three.html")
    page = out.read_text()
    latency = {row[0][0]: row[1:] for row in tables(page)["Latency (ms)"] if row}
    header = [text for text, _ in latency["metric"]]
    assert header == [
        "baseline",
        "slower",
        "Δ (slower - baseline)",
        "Δ %",
        "again",
        "Δ (again - baseline)",
        "Δ %",
    ]
    sa, sb = summarize(run_a), summarize(run_b)
    a, b = sa.latency["TTFT"]["p50"] * 1000, sb.latency["TTFT"]["p50"] * 1000
    cells = [text for text, _ in latency["TTFT p50"]]
    assert cells[:4] == [f"{a:,.1f}", f"{b:,.1f}", f"{b - a:+,.4g}", f"{(b - a) / a:+.1%}"]
    assert cells[4:] == [f"{a:,.1f}", "+0", "+0.0%"]
    run = {row[0][0]: row[1:] for row in tables(page)["Run"] if row}
    texts = [t for t, _ in run["requests"]]
    assert [texts[0], texts[1], texts[4]] == ["50", "40", "50"]
    assert texts[5:] == ["+0", "+0.0%"]
    bars = specs(page)["compare-ttft"]["hconcat"][1]["layer"][0]
    assert bars["encoding"]["color"]["scale"]["domain"] == ["baseline", "slower", "again"]
    assert "sageLLM run comparison: baseline vs slower vs again" in page


def test_a_comparison_needs_two_runs_and_one_label_each(run_a: Path, run_b: Path) -> None:
    with pytest.raises(ValueError, match="two runs"):
        write_run_comparison([run_a])
    with pytest.raises(ValueError, match="1 labels for 2 runs"):
        write_run_comparison([run_a, run_b], labels=["x"])


def test_the_terminal_table_of_three_runs(run_a: Path, run_b: Path) -> None:
    table = comparison_table(summarize(run_a), summarize(run_b), summarize(run_a))
    headers = [str(c.header) for c in table.columns]
    assert headers == ["metric", "A", "B", "B - A", "B / A", "C", "C - A", "C / A"]
    rows = {cells[0]: cells for cells in zip(*(c._cells for c in table.columns), strict=True)}
    a = summarize(run_a).request_throughput
    assert rows["request throughput (req/s)"][5:] == (f"{a:.4g}", "+0", "1.000")


def test_rates_in_percent_with_differences_in_points(run_a: Path, run_b: Path) -> None:
    sa, sb = summarize(run_a), summarize(run_b)
    table = comparison_table(sa, sb)
    rows = {cells[0]: cells for cells in zip(*(c._cells for c in table.columns), strict=True)}
    for label, value in (
        ("prefix-cache hit rate", "prefix_hit_rate"),
        ("KV-cache usage peak", "kv_usage_peak"),
        ("mean cached share of prompts", "mean_cached_share"),
    ):
        va, vb = getattr(sa, value), getattr(sb, value)
        assert rows[label][1:] == (
            f"{va:.1%}",
            f"{vb:.1%}",
            f"{(vb - va) * 100:+.1f} pp",
            "",  # no ratio of rates
        ), label


def test_the_terminal_names_each_run_by_its_whole_folder(run_a: Path, run_b: Path) -> None:
    out = io.StringIO()
    Console(file=out, width=30).print(render_comparison(summarize(run_a), summarize(run_b)))
    text = out.getvalue()
    joined = text.replace("\n", "")  # folded at 30 columns, never cut
    assert f"A (baseline): {run_a}" in joined
    assert f"B: {run_b}" in joined
    assert "…" not in text.split("Run comparison")[0]
    assert "set-ups differ" not in text  # the fixture runs record no set-up to compare


def test_the_comparison_keeps_its_old_import_path() -> None:
    assert run_summary.render_comparison is render_comparison  # notebooks import it from there
    with pytest.raises(AttributeError):
        _ = run_summary.no_such_name
