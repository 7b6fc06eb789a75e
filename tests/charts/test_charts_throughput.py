"""Throughput and concurrency from steps: per-bucket rates, sums over engines."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from chart_frames import START, empty_steps, is_no_data, rows_of, units_with_mark

from sagellm_obs.charts import concurrency, throughput
from sagellm_obs.charts.throughput import concurrency_rows, throughput_rows
from sagellm_obs.frames.schemas import STEPS, conform


def _steps(engines: int = 1) -> pl.DataFrame:
    """2 s of steps every 100 ms per engine; 5 tokens each; engine k runs k+1 and queues 2."""
    n = 20 * engines
    return conform(
        pl.DataFrame(
            {
                "time": [START + timedelta(milliseconds=100 * (i // engines)) for i in range(n)],
                "engine_id": [f"e{i % engines}" for i in range(n)],
                "generation_tokens": [5] * n,
                "running": [i % engines + 1 for i in range(n)],
                "waiting": [2] * n,
            }
        ),
        STEPS,
    )


def test_output_tokens_per_second() -> None:
    rows = throughput_rows(_steps(), every="1s")
    assert rows["tokens_s"].to_list() == [50.0, 50.0]
    assert rows_of(*_unit(throughput(_steps(engines=2), every="1s").to_dict(), "area"))[0][
        "tokens_s"
    ] == pytest.approx(100.0)


def test_throughput_encoding() -> None:
    spec = throughput(_steps()).to_dict()
    _, area = _unit(spec, "area")
    assert (area["encoding"]["x"]["field"], area["encoding"]["x"]["type"]) == ("time", "temporal")
    assert area["encoding"]["y"]["title"] == "output tokens/s"


def test_concurrency_sums_engines() -> None:
    rows = concurrency_rows(_steps(engines=3), every="1s")
    running = rows.filter(pl.col("series") == "running")["requests"].to_list()
    waiting = rows.filter(pl.col("series") == "waiting")["requests"].to_list()
    assert running == [6.0, 6.0]  # 1 + 2 + 3
    assert waiting == [6.0, 6.0]
    spec = concurrency(_steps()).to_dict()
    _, line = _unit(spec, "line")
    assert line["encoding"]["color"]["scale"]["domain"] == ["running", "waiting"]


def test_empty_steps_give_no_data() -> None:
    assert is_no_data(throughput(empty_steps()).to_dict())
    assert is_no_data(concurrency(empty_steps()).to_dict())


def _unit(spec: dict, mark: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
    (unit,) = units_with_mark(spec, mark)
    return spec, unit
