"""ClockAnchor conversion and the latency arithmetic on Timestamps."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest

import sagellm_obs.protocol as p

# vLLM's sample from the notes: arrival on the frontend wall clock, *_ts on EngineCore monotonic.
ARRIVAL = 1795299554.5173717
QUEUED, SCHEDULED, FIRST, LAST = 513.9535243, 513.953601664, 514.247130078, 515.643286301
ANCHOR = p.ClockAnchor(wall_s=1795299554.5, mono_s=513.95)


def test_anchor_conversion_is_exact_arithmetic() -> None:
    assert ANCHOR.offset_s == pytest.approx(1795299554.5 - 513.95)
    assert ANCHOR.to_epoch(513.95) == 1795299554.5
    assert ANCHOR.to_epoch(515.95) == pytest.approx(1795299556.5, abs=1e-6)
    assert ANCHOR.to_mono(ANCHOR.to_epoch(FIRST)) == pytest.approx(FIRST, abs=1e-6)
    # Intervals survive conversion up to float resolution at epoch magnitude (~0.24 µs).
    assert ANCHOR.to_epoch(LAST) - ANCHOR.to_epoch(FIRST) == pytest.approx(LAST - FIRST, abs=1e-6)


def test_to_epoch_ns_keeps_nanoseconds() -> None:
    anchor = p.ClockAnchor(wall_s=1_700_000_000.25, mono_s=100.0)
    assert anchor.to_epoch_ns(100.0) == 1_700_000_000_250_000_000
    assert anchor.to_epoch_ns(100.000000123) == 1_700_000_000_250_000_123
    assert anchor.to_epoch_ns(99.5) == 1_699_999_999_750_000_000
    assert isinstance(anchor.to_epoch_ns(1.0), int)


def test_anchor_now_matches_the_clocks() -> None:
    anchor = p.ClockAnchor.now()
    wall_now, mono_now = time.time(), time.monotonic()
    assert 0 <= anchor.uncertainty_s < 0.01
    # Converting "now" lands on the wall clock within a few ms (scheduling noise only).
    assert abs(anchor.to_epoch(mono_now) - wall_now) < 0.05
    assert abs(anchor.to_epoch_ns(mono_now) / 1e9 - wall_now) < 0.05
    assert anchor.mono_s <= mono_now


def test_an_anchor_from_before_a_wall_clock_step_is_replaced() -> None:
    now = p.ClockAnchor.now()
    assert now.stepped() is None  # the clocks still agree with a fresh anchor
    # As taken before the wall clock stepped forward by 53 ms (a VM restored from a snapshot).
    before = p.ClockAnchor(wall_s=now.wall_s - 0.053, mono_s=now.mono_s)
    fresh = before.stepped()
    assert fresh is not None
    wall_now, mono_now = time.time(), time.monotonic()
    assert abs(fresh.to_epoch(mono_now) - wall_now) < 0.001  # in the wall clock's new frame
    assert fresh.stepped() is None
    # A difference under the tolerance is no step.
    assert p.ClockAnchor(wall_s=now.wall_s - 0.0002, mono_s=now.mono_s).stepped() is None


def test_anchor_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ANCHOR.wall_s = 0.0  # type: ignore[misc]


def test_timestamps_from_engine_converts_all_four() -> None:
    ts = p.timestamps_from_engine(ARRIVAL, QUEUED, SCHEDULED, FIRST, LAST, ANCHOR)
    assert ts.queued_at == pytest.approx(ANCHOR.to_epoch(QUEUED))
    assert ts.scheduled_at == pytest.approx(ANCHOR.to_epoch(SCHEDULED))
    assert ts.executed_at == pytest.approx(ANCHOR.to_epoch(FIRST))  # executed_at = first token
    assert ts.completed_at == pytest.approx(ANCHOR.to_epoch(LAST))
    assert p.check_timestamps(ts) == []
    # Intervals equal the monotonic differences, regardless of the anchor.
    assert p.ttft_ms(ts, "schedule") == pytest.approx((FIRST - SCHEDULED) * 1000, abs=1e-3)


def test_timestamps_from_engine_missing_stamps_collapse_onto_previous() -> None:
    ts = p.timestamps_from_engine(ARRIVAL, None, 0.0, None, None, ANCHOR)
    assert ts.queued_at == ARRIVAL
    assert ts.scheduled_at == ts.executed_at == ts.completed_at == ARRIVAL
    ts2 = p.timestamps_from_engine(ARRIVAL, QUEUED, SCHEDULED, None, None, ANCHOR)
    assert ts2.executed_at == ts2.completed_at == ts2.scheduled_at
    assert p.ttft_ms(ts2, "schedule") == 0.0


def test_timestamps_from_engine_default_anchor_is_now() -> None:
    mono = time.monotonic()
    ts = p.timestamps_from_engine(time.time(), mono, mono, mono, mono)
    assert abs(ts.queued_at - time.time()) < 0.05


TS = p.Timestamps(queued_at=1000.0, scheduled_at=1000.5, executed_at=1001.0, completed_at=1003.0)


def test_ttft_queue_vs_schedule() -> None:
    assert p.ttft_ms(TS) == 1000.0
    assert p.ttft_ms(TS, "queue") == 1000.0
    assert p.ttft_ms(TS, from_="schedule") == 500.0
    with pytest.raises(ValueError, match="from_"):
        p.ttft_ms(TS, "arrival")  # type: ignore[arg-type]


def test_tpot_and_total() -> None:
    assert p.tpot_ms(TS, 5) == 500.0  # 2 s over 4 intervals
    assert p.tpot_ms(TS, 2) == 2000.0
    assert p.tpot_ms(TS, 1) == 0.0
    assert p.tpot_ms(TS, 0) == 0.0
    assert p.total_time_ms(TS) == 3000.0


def test_itl_list() -> None:
    assert p.itl_list_ms([]) == []
    assert p.itl_list_ms([5.0]) == []
    assert p.itl_list_ms([1.0, 1.25, 1.5, 2.5]) == [250.0, 250.0, 1000.0]
    assert p.itl_list_ms((2.0, 1.0)) == [-1000.0]  # not clamped


def test_metrics_from_timestamps() -> None:
    fields = p.metrics_from_timestamps(TS, output_tokens=5, token_times=[1.0, 1.5, 2.0, 2.5, 3.0])
    assert fields == {
        "ttft_ms": 1000.0,
        "tbt_ms": 500.0,
        "tpot_ms": 500.0,
        "throughput_tps": 5 / 3,
        "itl_list": [500.0, 500.0, 500.0, 500.0],
        "timestamps": TS,
    }
    metrics = p.Metrics(**fields, peak_mem_mb=0, error_rate=0.0)
    assert metrics.timestamps == TS
    sched = p.metrics_from_timestamps(TS, output_tokens=1, ttft_from="schedule")
    assert (sched["ttft_ms"], sched["tpot_ms"], sched["tbt_ms"], sched["itl_list"]) == (
        500.0,
        0.0,
        0.0,
        [],
    )


def test_metrics_from_zero_length_timestamps() -> None:
    zero = p.Timestamps(queued_at=5.0, scheduled_at=5.0, executed_at=5.0, completed_at=5.0)
    assert p.metrics_from_timestamps(zero, output_tokens=3)["throughput_tps"] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "token_times", "match"),
    [
        ({"scheduled_at": 999.0}, None, "scheduled_at<queued_at"),
        ({"executed_at": -1.0}, None, "executed_at<0"),
        ({"completed_at": math.nan}, None, "completed_at is not finite"),
        ({}, [1.0, 0.5], "token_times"),
        ({}, [1.0, math.nan], "token_times"),
    ],
)
def test_metrics_from_timestamps_refuses_inconsistent_input(
    kwargs: dict[str, float], token_times: list[float] | None, match: str
) -> None:
    ts = TS.model_copy(update=kwargs)
    with pytest.raises(ValueError, match=match):
        p.metrics_from_timestamps(ts, output_tokens=2, token_times=token_times)


def test_metrics_from_timestamps_rejects_negative_token_count() -> None:
    with pytest.raises(ValueError, match="output_tokens"):
        p.metrics_from_timestamps(TS, output_tokens=-1)


GOOD = p.Timestamps(
    queued_at=1_700_000_000.0,
    scheduled_at=1_700_000_000.1,
    executed_at=1_700_000_000.2,
    completed_at=1_700_000_000.3,
)


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ({}, []),
        ({"scheduled_at": 1_699_999_999.0}, ["scheduled_at<queued_at"]),
        ({"executed_at": 1_700_000_000.05}, ["executed_at<scheduled_at"]),
        ({"completed_at": 1_700_000_000.15}, ["completed_at<executed_at"]),
        (
            {"queued_at": 1_700_000_000.25},
            ["scheduled_at<queued_at"],
        ),
        ({"queued_at": -1.0}, ["queued_at<0"]),
        (
            {"completed_at": -2.0},
            ["completed_at<0", "completed_at<executed_at"],
        ),
        ({"scheduled_at": math.inf}, ["scheduled_at is not finite", "executed_at<scheduled_at"]),
        ({"executed_at": math.nan}, ["executed_at is not finite"]),
        ({"queued_at": 513.95}, ["queued_at<2000-01-01 (monotonic reading?)"]),
        (
            {"completed_at": 1.7e18},
            ["completed_at>2100-01-01 (not seconds?)"],
        ),
    ],
)
def test_check_timestamps(update: dict[str, float], expected: list[str]) -> None:
    assert p.check_timestamps(GOOD.model_copy(update=update)) == expected


def test_check_timestamps_plausibility_can_be_disabled() -> None:
    assert p.check_timestamps(TS) == [
        "queued_at<2000-01-01 (monotonic reading?)",
        "scheduled_at<2000-01-01 (monotonic reading?)",
        "executed_at<2000-01-01 (monotonic reading?)",
        "completed_at<2000-01-01 (monotonic reading?)",
    ]
    assert p.check_timestamps(TS, plausible_epoch=False) == []


def test_timestamps_model_accepts_anything() -> None:
    # The protocol model itself validates nothing beyond "float"; checks live in check_timestamps.
    ts = p.Timestamps(queued_at=5, scheduled_at=-1, executed_at=0, completed_at=1)
    assert ts.scheduled_at == -1.0
    assert p.check_timestamps(ts, plausible_epoch=False) == [
        "scheduled_at<0",
        "scheduled_at<queued_at",
    ]
