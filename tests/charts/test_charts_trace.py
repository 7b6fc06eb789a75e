"""The trace timeline and the "where the time went" bars: rows, order, colours, limits, empties."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import pytest
from chart_frames import is_no_data, rows_of, units_with_mark

from sagellm_obs import charts
from sagellm_obs.charts import CATEGORY_COLORS, PART_COLORS, PHASE_COLORS
from sagellm_obs.charts.trace import PARTS
from sagellm_obs.frames import CALL_TREE, CATEGORIES, TIME_BREAKDOWN
from sagellm_obs.frames.schemas import conform, empty

INDENT = "\u00b7\u00a0\u00a0"  # a dot and two no-break spaces per level


def tree_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    return conform(pl.DataFrame(rows, infer_schema_length=None), CALL_TREE)


def a_tree() -> pl.DataFrame:
    spans = [
        ("Assistant.answer", 0, "application", 0.0, 0.100),
        ("chat tiny", 1, "model call", 0.005, 0.040),
        ("POST /v1/chat/completions", 2, "server", 0.008, 0.034),
        ("chat tiny", 3, "engine request", 0.010, 0.030),
        ("queue", 4, "queue", 0.011, 0.002),
        ("prefill", 4, "prefill", 0.013, 0.008),
        ("decode", 4, "decode", 0.021, 0.018),
        ("execute_tool get_weather", 1, "tool call", 0.050, 0.005),
    ]
    return tree_frame(
        [
            {
                "trace_id": "t" * 32,
                "span_id": f"{i:016x}",
                "name": name,
                "depth": depth,
                "position": i,
                "category": category,
                "offset_s": offset,
                "duration_s": duration,
                "self_s": duration / 2,
                "request_id": "req-1" if category == "engine request" else None,
            }
            for i, (name, depth, category, offset, duration) in enumerate(spans)
        ]
    )


def breakdown_frame(n: int = 2, **override: Any) -> pl.DataFrame:
    rows = []
    for i in range(n):
        row = {
            "trace_id": "t" * 32,
            "request_id": f"req-{i}",
            "client_name": "chat tiny",
            "stream": i == 1,
            "client_s": 0.040,
            "server_s": 0.034,
            "engine_s": 0.030,
            "queue_s": 0.002,
            "prefill_s": 0.008,
            "decode_s": 0.018,
            "network_s": 0.006,
            "server_overhead_s": 0.004,
            "engine_other_s": 0.002,
            "output_tokens": 5,
        }
        row.update(override)
        rows.append(row)
    return conform(pl.DataFrame(rows, infer_schema_length=None), TIME_BREAKDOWN)


def bars(spec: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    (unit,) = units_with_mark(spec, "bar")
    return unit, rows_of(spec, unit)


def label(row: dict[str, Any]) -> str:
    """What the axis shows for a row key (the chart's labelExpr drops ``000012|``)."""
    key = str(row["row"])
    assert key[6] == "|"
    return key[7:]


def test_every_category_has_a_fixed_colour() -> None:
    assert set(CATEGORY_COLORS) == set(CATEGORIES)
    for phase, colour in PHASE_COLORS.items():
        assert CATEGORY_COLORS[phase] == colour == PART_COLORS[phase]


def test_timeline_rows_in_tree_order_indented_by_depth() -> None:
    spec = charts.trace_timeline(a_tree()).to_dict()
    _, rows = bars(spec)
    assert [label(r) for r in rows] == [
        "Assistant.answer",
        f"{INDENT * 1}chat tiny",
        f"{INDENT * 2}POST /v1/chat/completions",
        f"{INDENT * 3}chat tiny",
        f"{INDENT * 4}queue",
        f"{INDENT * 4}prefill",
        f"{INDENT * 4}decode",
        f"{INDENT * 1}execute_tool get_weather",
    ]
    decode = rows[6]
    assert (decode["start_ms"], decode["end_ms"], decode["ms"]) == pytest.approx((21, 39, 18))
    assert decode["bar_end_ms"] == decode["end_ms"]
    assert decode["self_ms"] == pytest.approx(9.0)
    assert spec["title"]["subtitle"] == "1 trace, 8 spans"


def test_timeline_encodings() -> None:
    spec = charts.trace_timeline(a_tree()).to_dict()
    unit, _ = bars(spec)
    enc = unit["encoding"]
    assert (enc["x"]["field"], enc["x"]["type"]) == ("start_ms", "quantitative")
    assert enc["x2"] == {"field": "bar_end_ms"}
    assert (enc["y"]["field"], enc["y"]["type"], enc["y"]["sort"]) == ("row", "nominal", None)
    axis = enc["y"]["axis"]
    assert axis["labelExpr"] == "slice(datum.value, 7)"
    assert axis["labelAlign"] == "left"  # so that the indentation shows
    assert axis["labelPadding"] == axis["labelLimit"] > 100
    assert enc["color"]["field"] == "category"
    assert enc["color"]["scale"] == {
        "domain": list(CATEGORY_COLORS),
        "range": list(CATEGORY_COLORS.values()),
    }
    tooltip = {t["field"] for t in enc["tooltip"]}
    assert tooltip >= {"name", "category", "ms", "self_ms", "request_id", "trace_id"}
    (text,) = units_with_mark(spec, "text")
    assert text["encoding"]["x"]["field"] == "bar_end_ms"
    assert text["encoding"]["text"]["field"] == "label"


def test_very_short_spans_stay_visible() -> None:
    tree = a_tree().with_columns(
        duration_s=pl.when(pl.col("category") == "tool call")
        .then(pl.lit(1e-8))
        .otherwise(pl.col("duration_s"))
    )
    _, rows = bars(charts.trace_timeline(tree).to_dict())
    tool = rows[7]
    assert tool["ms"] == pytest.approx(1e-5)
    assert tool["bar_end_ms"] - tool["start_ms"] == pytest.approx(0.004 * 100.0)


def test_timeline_limit() -> None:
    spec = charts.trace_timeline(a_tree(), limit=3).to_dict()
    _, rows = bars(spec)
    assert len(rows) == 3
    assert spec["title"]["subtitle"] == "first 3 of 8 spans (1 trace)"


def test_breakdown_parts_stack_to_the_client_time() -> None:
    spec = charts.time_breakdown_chart(breakdown_frame()).to_dict()
    unit, rows = bars(spec)
    assert len(rows) == 2 * len(PARTS)
    first = [r for r in rows if r["request_id"] == "req-0"]
    assert [r["part"] for r in first] == list(PART_COLORS)
    assert [r["order"] for r in first] == list(range(len(PARTS)))
    assert sum(r["ms"] for r in first) == pytest.approx(first[0]["client_ms"]) == 40.0
    assert {label(r) for r in rows} == {"1. chat tiny", "2. chat tiny, streamed"}
    enc = unit["encoding"]
    assert (enc["x"]["field"], enc["x"]["stack"]) == ("ms", "zero")
    assert enc["order"] == {"field": "order", "type": "quantitative"}
    assert enc["color"]["scale"] == {
        "domain": list(PART_COLORS),
        "range": list(PART_COLORS.values()),
    }
    assert spec["title"]["subtitle"] == "2 model calls"


def test_breakdown_negative_and_missing_parts_draw_as_zero() -> None:
    frame = breakdown_frame(1, network_s=-0.001, server_s=None, server_overhead_s=None)
    _, rows = bars(charts.time_breakdown_chart(frame).to_dict())
    by_part = {r["part"]: r for r in rows}
    assert by_part["network"]["ms"] == 0.0
    assert by_part["network"]["raw_ms"] == pytest.approx(-1.0)
    assert by_part["server"]["ms"] == 0.0 and by_part["server"]["raw_ms"] is None


def test_breakdown_limit() -> None:
    spec = charts.time_breakdown_chart(breakdown_frame(5), limit=2).to_dict()
    _, rows = bars(spec)
    assert len({r["request_id"] for r in rows}) == 2
    assert spec["title"]["subtitle"] == "first 2 of 5 model calls"


@pytest.mark.parametrize(
    "chart",
    [
        lambda: charts.trace_timeline(empty(CALL_TREE)),
        lambda: charts.trace_timeline(a_tree(), limit=0),
        lambda: charts.time_breakdown_chart(empty(TIME_BREAKDOWN)),
    ],
)
def test_empty_frames_give_no_data(chart: Any) -> None:
    assert is_no_data(chart().to_dict())


def test_the_old_chart_name_is_a_deprecated_alias() -> None:
    frame = breakdown_frame()
    with pytest.warns(DeprecationWarning, match="time_breakdown_chart"):
        spec = charts.time_breakdown(frame).to_dict()
    assert spec == charts.time_breakdown_chart(frame).to_dict()
