"""Latency charts: encodings, quantile rules with known values, sampling, failed requests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from chart_frames import (
    START,
    is_no_data,
    requests_frame,
    rows_of,
    synthetic_requests,
    units_with_mark,
)

from sagellm_obs.charts import latency_distribution, latency_over_time, ttft_vs_prompt
from sagellm_obs.charts.theme import QUANTILE_COLORS


def _known() -> list[dict[str, Any]]:
    """TTFT 1..100 ms (so p50 50.5, p90 90.1, p99 99.01 with linear interpolation), plus a
    failed and a cancelled request with huge TTFTs that must not count."""
    rows: list[dict[str, Any]] = [
        {
            "request_id": f"r{i}",
            "arrival": START + timedelta(milliseconds=10 * i),
            "ttft_s": i / 1000,
            "e2e_s": i / 100,
            "input_tokens": 10 * i,
            "cached_tokens": i,
            "cancelled": False,
        }
        for i in range(1, 101)
    ]
    rows.append({**rows[0], "request_id": "bad", "ttft_s": 10.0, "error_type": "timeout"})
    rows.append({**rows[0], "request_id": "gone", "ttft_s": 20.0, "cancelled": True})
    return rows


def _rules(spec: dict[str, Any]) -> dict[str, float]:
    (rule,) = units_with_mark(spec, "rule")
    return {r["quantile"]: r["value"] for r in rows_of(spec, rule)}


def test_histogram_bins_are_precomputed_and_count_ok_requests() -> None:
    spec = latency_distribution(requests_frame(_known()), "ttft_s").to_dict()
    (bars,) = units_with_mark(spec, "bar")
    enc = bars["encoding"]
    assert enc["x"] == {
        "field": "bin_start",
        "type": "quantitative",
        "bin": "binned",
        "title": "TTFT (ms)",
    }
    assert enc["x2"] == {"field": "bin_end"}
    assert enc["y"]["field"] == "count"
    assert enc["y"]["type"] == "quantitative"
    rows = rows_of(spec, bars)
    assert sum(r["count"] for r in rows) == 100
    assert rows[0]["bin_start"] <= 1.0
    assert rows[-1]["bin_end"] >= 100.0
    assert "bin" not in str(bars.get("transform", ""))  # binned in Polars, not in the browser


@pytest.mark.parametrize("kind", ["histogram", "ecdf"])
def test_quantile_rules_have_the_summary_values(kind: str) -> None:
    spec = latency_distribution(requests_frame(_known()), "ttft_s", kind=kind).to_dict()  # type: ignore[arg-type]
    assert _rules(spec) == pytest.approx({"p50": 50.5, "p90": 90.1, "p99": 99.01})
    (rule,) = units_with_mark(spec, "rule")
    assert rule["encoding"]["x"]["field"] == "value"
    color = rule["encoding"]["color"]["scale"]
    assert color["domain"] == ["p50", "p90", "p99"]
    assert color["range"] == [QUANTILE_COLORS[q] for q in ("p50", "p90", "p99")]
    labels = {r["label"] for u in units_with_mark(spec, "text") for r in rows_of(spec, u)}
    assert labels == {"p50 50.5 ms", "p90 90.1 ms", "p99 99 ms"}
    assert spec["title"]["text"] == "TTFT distribution"


def test_ecdf_ends_at_one_and_is_sorted() -> None:
    spec = latency_distribution(requests_frame(_known()), "e2e_s", kind="ecdf").to_dict()
    (line,) = units_with_mark(spec, "line")
    assert line["encoding"]["x"]["title"] == "E2E (ms)"
    rows = rows_of(spec, line)
    values = [r["value"] for r in rows]
    assert values == sorted(values)
    assert rows[-1]["fraction"] == 1.0
    assert values[0] == pytest.approx(10.0)


def test_ecdf_is_thinned_for_many_requests() -> None:
    spec = latency_distribution(synthetic_requests(50_000), kind="ecdf").to_dict()
    (line,) = units_with_mark(spec, "line")
    assert len(rows_of(spec, line)) <= 1000


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="kind must be"):
        latency_distribution(requests_frame(_known()), kind="violin")  # type: ignore[arg-type]


def test_latency_over_time_buckets_quantiles() -> None:
    spec = latency_over_time(requests_frame(_known()), "ttft_s", every="500ms").to_dict()
    (line,) = units_with_mark(spec, "line")
    enc = line["encoding"]
    assert (enc["x"]["field"], enc["x"]["type"]) == ("time", "temporal")
    assert (enc["y"]["field"], enc["color"]["field"]) == ("ms", "quantile")
    rows = rows_of(spec, line)
    # Arrivals at 10..1000 ms: buckets [0, 500) and [500, 1000) and [1000, 1500).
    assert {r["requests"] for r in rows if r["quantile"] == "p50"} == {49, 50, 1}
    first = min(r["time"] for r in rows)
    assert first == START.timestamp() * 1000
    p50_first = next(r["ms"] for r in rows if r["time"] == first and r["quantile"] == "p50")
    assert p50_first == pytest.approx(25.0)  # median of 1..49 ms
    (dots,) = units_with_mark(spec, "circle")
    assert len(rows_of(spec, dots)) == 100


def test_latency_over_time_rejects_bad_bucket() -> None:
    with pytest.raises(ValueError, match="duration"):
        latency_over_time(requests_frame(_known()), every="soon")


def test_ttft_vs_prompt_colours_by_cached_share() -> None:
    spec = ttft_vs_prompt(requests_frame(_known())).to_dict()
    (dots,) = units_with_mark(spec, "circle")
    enc = dots["encoding"]
    assert (enc["x"]["field"], enc["x"]["type"]) == ("input_tokens", "quantitative")
    assert (enc["y"]["field"], enc["y"]["type"]) == ("ttft_ms", "quantitative")
    assert enc["color"]["field"] == "cached_share"
    assert enc["color"]["scale"]["domain"] == [0, 1]
    # A symbol legend: a gradient legend's url(#...) fill did not draw in JupyterLab.
    assert enc["color"]["legend"]["type"] == "symbol"
    assert enc["color"]["legend"]["values"] == [0, 0.25, 0.5, 0.75, 1.0]
    rows = rows_of(spec, dots)
    assert len(rows) == 100
    assert {r["cached_share"] for r in rows} == {0.1}
    assert {t["field"] for t in enc["tooltip"]} >= {"request_id", "input_tokens", "cached_tokens"}


def test_ttft_vs_prompt_samples_with_a_fixed_seed() -> None:
    frame = synthetic_requests(20_000)
    a = ttft_vs_prompt(frame).to_dict()
    b = ttft_vs_prompt(frame).to_dict()
    assert a == b
    (dots,) = units_with_mark(a, "circle")
    assert len(rows_of(a, dots)) == 5000
    assert "5,000 of" in a["title"]["subtitle"]


def test_only_failed_requests_give_no_data() -> None:
    rows = [r for r in _known() if r["request_id"] in ("bad", "gone")]
    assert is_no_data(latency_distribution(requests_frame(rows)).to_dict())
