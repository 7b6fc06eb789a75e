"""The acts of a phased workload: their spans from the requests frame, bands behind timelines."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from chart_frames import (
    START,
    requests_frame,
    rows_of,
    synthetic_steps,
    units,
    units_with_mark,
)

from sagellm_obs.charts import (
    concurrency,
    kv_usage,
    prefix_hit_rate,
    with_workload_phases,
    workload_phases,
)
from sagellm_obs.charts._data import epoch_ms


def _requests() -> pl.DataFrame:
    """Three acts; the warm act's last request is still in flight when pressure begins."""
    rows = []
    for i, (phase, at_s, e2e_s) in enumerate(
        [
            ("warm", 0.0, 1.0),
            ("warm", 0.5, 3.0),  # ends at 3.5 s, after pressure began
            ("pressure", 2.0, 2.0),
            ("pressure", 2.5, 4.0),
            ("recover", 6.0, 1.0),
            ("recover", 6.5, 2.5),  # the run ends at 9.0 s
        ]
    ):
        rows.append(
            {
                "request_id": f"r{i}",
                "arrival": START + timedelta(seconds=at_s),
                "e2e_s": e2e_s,
                "workload_phase": phase,
            }
        )
    rows.append({"request_id": "other", "arrival": START, "e2e_s": 20.0})  # no phase: ignored
    return requests_frame(rows)


def _ms(seconds: float) -> float:
    """Epoch ms of START + seconds, as the charts compute it."""
    at = pl.DataFrame({"t": [START + timedelta(seconds=seconds)]})
    return float(at.select(epoch_ms("t")).item())


def test_spans_follow_the_acts_and_meet_at_their_boundaries() -> None:
    spans = workload_phases(_requests())
    assert spans["workload_phase"].to_list() == ["warm", "pressure", "recover"]
    assert spans["requests"].to_list() == [2, 2, 2]
    assert spans["start"].to_list() == [_ms(0.0), _ms(2.0), _ms(6.0)]
    # An act ends where the next begins; the last where its last request finished.
    assert spans["end"].to_list() == [_ms(2.0), _ms(6.0), _ms(9.0)]


def test_no_phases_no_bands() -> None:
    plain = requests_frame([{"request_id": "a", "arrival": START, "e2e_s": 1.0}])
    assert workload_phases(plain).height == 0
    assert workload_phases(plain.drop("workload_phase")).height == 0
    chart = kv_usage(synthetic_steps(200))
    assert with_workload_phases(chart, workload_phases(plain)) is chart
    assert with_workload_phases(chart, None) is chart


def test_bands_and_labels_lie_behind_each_engine_timeline() -> None:
    spans = workload_phases(_requests())
    steps = synthetic_steps(200)
    for make in (kv_usage, prefix_hit_rate, concurrency):
        plain = make(steps)
        spec = with_workload_phases(plain, spans).to_dict()
        assert spec["title"] == plain.to_dict()["title"]  # the chart keeps its title
        (rect,) = units_with_mark(spec, "rect")
        bands = rows_of(spec, rect)
        assert [b["workload_phase"] for b in bands] == ["warm", "pressure", "recover"]
        assert rect["encoding"]["x"]["field"] == "start"
        assert rect["encoding"]["x2"]["field"] == "end"
        labels = [u for u in units_with_mark(spec, "text") if u["encoding"].get("text")]
        assert any(u["encoding"]["text"]["field"] == "workload_phase" for u in labels)
        # The bands come first, so the chart's own marks are drawn over them.
        assert spec["layer"][0]["mark"]["type"] == "rect"
        # The chart's own layers are all still there.
        assert len(units_with_mark(spec, "line")) >= len(units_with_mark(plain.to_dict(), "line"))


def test_every_time_axis_of_a_timeline_asks_for_several_ticks() -> None:
    """Issue #19: timelines showed a single tick label. Every temporal x channel, the bands'
    included, asks for a tick count, so layers agree on one axis with several labels."""
    spans = workload_phases(_requests())
    steps = synthetic_steps(200)
    for make in (kv_usage, prefix_hit_rate, concurrency):
        for spec in (make(steps).to_dict(), with_workload_phases(make(steps), spans).to_dict()):
            timed = [
                u["encoding"]["x"]
                for u in units(spec)
                if u.get("encoding", {}).get("x", {}).get("type") == "temporal"
            ]
            assert timed, make.__name__
            for x in timed:
                assert x["axis"]["tickCount"] >= 2, (make.__name__, x)
