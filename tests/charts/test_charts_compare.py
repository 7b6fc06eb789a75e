"""Run comparison: overlaid ECDFs and quantile bars per run."""

from __future__ import annotations

import pytest
from chart_frames import empty_requests, is_no_data, requests_frame, rows_of, units_with_mark

from sagellm_obs.charts import compare_quantiles, compare_runs


def _run(scale: float) -> object:
    return requests_frame(
        [{"request_id": str(i), "ttft_s": scale * i / 1000} for i in range(1, 101)]
    )


def test_quantile_bars_per_run() -> None:
    runs = {"A": _run(1.0), "B": _run(2.0)}
    spec = compare_runs(runs, "ttft_s").to_dict()  # type: ignore[arg-type]
    assert spec["title"]["text"] == "TTFT: A vs B"
    (bars,) = units_with_mark(spec, "bar")
    values = {(r["run"], r["quantile"]): r["value"] for r in rows_of(spec, bars)}
    assert values == pytest.approx(
        {
            ("A", "p50"): 50.5,
            ("A", "p90"): 90.1,
            ("A", "p99"): 99.01,
            ("B", "p50"): 101.0,
            ("B", "p90"): 180.2,
            ("B", "p99"): 198.02,
        }
    )
    enc = bars["encoding"]
    assert enc["xOffset"]["field"] == "run"
    assert enc["color"]["scale"]["domain"] == ["A", "B"]


def test_ecdf_lines_per_run() -> None:
    spec = compare_runs({"base": _run(1.0), "new": _run(0.5)}, "ttft_s").to_dict()  # type: ignore[dict-item]
    (line,) = units_with_mark(spec, "line")
    rows = rows_of(spec, line)
    assert {r["run"] for r in rows} == {"base", "new"}
    assert max(r["value"] for r in rows if r["run"] == "new") == pytest.approx(50.0)
    assert line["encoding"]["color"]["field"] == "run"


def test_compare_quantiles_frame() -> None:
    q = compare_quantiles({"A": _run(1.0)}, "ttft_s", (0.5,))  # type: ignore[dict-item]
    assert q.to_dicts() == [{"quantile": "p50", "value": 50.5, "label": "p50 50.5", "run": "A"}]


def test_one_empty_run_still_compares_and_all_empty_is_no_data() -> None:
    spec = compare_runs({"A": _run(1.0), "B": empty_requests()}).to_dict()  # type: ignore[dict-item]
    assert "B: 0 requests" in spec["title"]["subtitle"]
    assert is_no_data(compare_runs({"A": empty_requests()}).to_dict())
    assert is_no_data(compare_runs({}).to_dict())
