"""KV usage, prefix hit rate per step (rolling) and per request."""

from __future__ import annotations

import json
from datetime import timedelta

import polars as pl
import pytest
from chart_frames import (
    START,
    empty_steps,
    is_no_data,
    requests_frame,
    rows_of,
    synthetic_steps,
    units_with_mark,
)

from sagellm_obs.charts import (
    cached_share_by_request,
    kv_usage,
    prefix_hit_by_request,
    prefix_hit_rate,
)
from sagellm_obs.frames.schemas import STEPS, conform


def _steps(n: int = 20, engines: int = 1) -> pl.DataFrame:
    """One step every 100 ms; usage i/n; 100 prefix tokens queried, i*5 of them hit."""
    return conform(
        pl.DataFrame(
            {
                "time": [START + timedelta(milliseconds=100 * (i // engines)) for i in range(n)],
                "engine_id": [f"e{i % engines}" for i in range(n)],
                "kv_cache_usage": [i / n for i in range(n)],
                "prefix_queries": [100] * n,
                "prefix_hits": [min(i * 5, 100) for i in range(n)],
                "running": [1] * n,
                "waiting": [0] * n,
                "generation_tokens": [4] * n,
            }
        ),
        STEPS,
    )


def test_kv_usage_mean_and_peak_per_bucket() -> None:
    spec = kv_usage(_steps(), every="1s").to_dict()
    (line,) = units_with_mark(spec, "line")
    (area,) = units_with_mark(spec, "area")
    assert (line["encoding"]["x"]["field"], line["encoding"]["x"]["type"]) == ("time", "temporal")
    assert area["encoding"]["y"]["scale"] == {"domain": [0, 1]}
    (bucket, second) = rows_of(spec, line)
    assert bucket["steps"] == 10
    assert bucket["mean"] == pytest.approx(sum(i / 20 for i in range(10)) / 10)
    assert bucket["peak"] == pytest.approx(9 / 20)
    assert second["peak"] == pytest.approx(19 / 20)


def test_kv_usage_colours_engines_when_there_are_several() -> None:
    single = units_with_mark(kv_usage(_steps()).to_dict(), "line")[0]["encoding"]["color"]
    assert "value" in single
    several = units_with_mark(kv_usage(_steps(engines=2)).to_dict(), "line")[0]
    assert several["encoding"]["color"]["field"] == "engine_id"


def test_prefix_hit_rate_rolling_window() -> None:
    spec = prefix_hit_rate(_steps(), window="1s", every="100ms").to_dict()
    points = units_with_mark(spec, "circle")[0]
    per_step = rows_of(spec, points)
    assert [r["rate"] for r in per_step] == pytest.approx(
        [min(i * 5, 100) / 100 for i in range(20)]
    )
    (line,) = units_with_mark(spec, "line")
    rolling = rows_of(spec, line)
    last = max(rolling, key=lambda r: r["time"])
    # The trailing 1 s window at the last step holds steps 10..19: hits 50..95.
    assert last["rate"] == pytest.approx(sum(range(50, 100, 5)) / 1000)
    assert line["encoding"]["color"]["scale"]["domain"] == ["per step", "rolling"]


def test_prefix_hit_rate_ignores_steps_without_queries() -> None:
    steps = _steps().with_columns(prefix_queries=pl.lit(0, pl.Int64))
    assert is_no_data(prefix_hit_rate(steps).to_dict())


def test_prefix_hit_rate_resamples_many_steps() -> None:
    spec = prefix_hit_rate(synthetic_steps(100_000)).to_dict()
    (line,) = units_with_mark(spec, "line")
    assert len(rows_of(spec, line)) <= 301
    (dots,) = units_with_mark(spec, "circle")
    assert len(rows_of(spec, dots)) == 2000


def test_cached_share_by_request_bins_zero_to_one() -> None:
    frame = requests_frame(
        [
            {"request_id": str(i), "cached_prompt_share": r}
            for i, r in enumerate([0.0, 0.0, 0.5, 1.0])
        ]
    )
    spec = cached_share_by_request(frame, bins=10).to_dict()
    assert "hit rate" not in json.dumps(spec["title"])  # a share of the prompt, not hits/queries
    (bars,) = units_with_mark(spec, "bar")
    rows = rows_of(spec, bars)
    assert {(r["bin_start"], r["bin_end"], r["count"]) for r in rows} == {
        (0.0, 0.1, 2),
        (0.5, 0.6, 1),
        (0.9, 1.0, 1),
    }
    (rule,) = units_with_mark(spec, "rule")
    assert rows_of(spec, rule)[0]["mean"] == pytest.approx(0.375)


def test_the_old_name_still_draws_it_and_warns() -> None:
    frame = requests_frame([{"request_id": "0", "cached_prompt_share": 0.5}])
    with pytest.warns(DeprecationWarning, match="cached_share_by_request"):
        old = prefix_hit_by_request(frame, bins=10).to_dict()
    assert old == cached_share_by_request(frame, bins=10).to_dict()


def test_empty_steps_give_no_data() -> None:
    assert is_no_data(kv_usage(empty_steps()).to_dict())
    assert is_no_data(prefix_hit_rate(empty_steps()).to_dict())
