"""The request waterfall: contiguous phases from arrival, fixed colours, limits and selection."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from chart_frames import START, requests_frame, rows_of, synthetic_requests, units_with_mark

from sagellm_obs.charts import FRONTEND_COLOR, PHASE_COLORS, WATERFALL_PARTS, request_waterfall
from sagellm_obs.frames.spans import TTFT_PHASES, frontend_share


def _frame() -> Any:
    return requests_frame(
        [
            {
                "request_id": f"r{i}",
                "trace_id": f"t{i}",
                "arrival": START + timedelta(milliseconds=100 * i),
                "frontend_s": 0.002,
                "queue_s": 0.001 * i,
                "prefill_s": 0.010,
                "decode_s": 0.050 + 0.01 * i,
                "e2e_s": 0.061 + 0.011 * i,
                "input_tokens": 100 + i,
                "output_tokens": 20,
                "cached_tokens": 0,
            }
            for i in range(10)
        ]
    )


def test_phases_follow_each_other_from_arrival() -> None:
    spec = request_waterfall(_frame()).to_dict()
    (bars,) = units_with_mark(spec, "bar")
    rows = rows_of(spec, bars)
    assert len(rows) == 40
    by_request: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_request.setdefault(r["request_id"], {})[r["phase"]] = r
    r3 = by_request["r3"]
    arrival_ms = (START + timedelta(milliseconds=300)).timestamp() * 1000
    # The frontend's share of TTFT comes first: the queue starts when the frontend hands over.
    assert r3["frontend"]["start"] == pytest.approx(arrival_ms)
    assert r3["frontend"]["ms"] == pytest.approx(2.0)
    assert r3["queue"]["start"] == pytest.approx(arrival_ms + 2.0)
    assert r3["queue"]["end"] == pytest.approx(arrival_ms + 2.0 + 3.0)
    assert r3["prefill"]["start"] == pytest.approx(r3["queue"]["end"])
    assert r3["decode"]["start"] == pytest.approx(r3["prefill"]["end"])
    assert r3["decode"]["end"] == pytest.approx(arrival_ms + 2.0 + 3.0 + 10.0 + 80.0)
    assert r3["decode"]["ms"] == pytest.approx(80.0)
    assert {r["row"] for r in rows} == set(range(10))


def test_encodings_and_fixed_phase_colours() -> None:
    spec = request_waterfall(_frame()).to_dict()
    (bars,) = units_with_mark(spec, "bar")
    enc = bars["encoding"]
    assert (enc["x"]["field"], enc["x"]["type"]) == ("start", "temporal")
    assert enc["x2"] == {"field": "end"}
    assert (enc["y"]["field"], enc["y"]["type"]) == ("row", "ordinal")
    assert enc["color"]["scale"] == {
        "domain": ["frontend", "queue", "prefill", "decode"],
        "range": [FRONTEND_COLOR, *(PHASE_COLORS[p] for p in WATERFALL_PARTS[1:])],
    }
    tooltip = {t["field"] for t in enc["tooltip"]}
    assert tooltip >= {"request_id", "trace_id", "input_tokens", "output_tokens", "cached_tokens"}


def test_limit_and_selection() -> None:
    frame = _frame()
    first = rows_of(*_bars(request_waterfall(frame, limit=3).to_dict()))
    assert {r["request_id"] for r in first} == {"r0", "r1", "r2"}
    slowest = rows_of(*_bars(request_waterfall(frame, limit=2, select="slowest").to_dict()))
    assert {r["request_id"] for r in slowest} == {"r8", "r9"}
    with pytest.raises(ValueError, match="select must be"):
        request_waterfall(frame, select="random")  # type: ignore[arg-type]


def test_large_frames_are_cut_to_the_limit() -> None:
    spec = request_waterfall(synthetic_requests(100_000), limit=200, select="sample").to_dict()
    rows = rows_of(*_bars(spec))
    assert len({r["request_id"] for r in rows}) == 200
    assert spec["title"]["subtitle"] == "sampled 200 of 100,000 requests"


def test_missing_phases_count_as_zero() -> None:
    frame = _frame().with_columns(queue_s=None).cast({"queue_s": float})
    rows = rows_of(*_bars(request_waterfall(frame).to_dict()))
    assert {r["ms"] for r in rows if r["phase"] == "queue"} == {0.0}


def test_the_first_token_comes_where_prefill_ends() -> None:
    # TTFT = frontend + queue + prefill: with the frames' definition of the frontend's share,
    # each request's prefill bar ends at its arrival + TTFT (nothing of TTFT is left unlabelled).
    frame = _frame().with_columns(ttft_s=pl.col("queue_s") + pl.col("prefill_s") + 0.0117)
    frame = frame.with_columns(frontend_share("ttft_s", TTFT_PHASES).alias("frontend_s"))
    rows = rows_of(*_bars(request_waterfall(frame).to_dict()))
    for r in rows:
        if r["phase"] == "prefill":
            assert r["end"] == pytest.approx(r["time"] + r["ttft_ms"]), r["request_id"]
        if r["phase"] == "frontend":
            assert r["ms"] == pytest.approx(11.7)


def _bars(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    (bars,) = units_with_mark(spec, "bar")
    return spec, bars
