"""Arrival patterns: burst, Poisson, closed loop, duration bound and parsing."""

from __future__ import annotations

import itertools
import statistics

import pytest

import sagellm_obs.workload as wl


def _gaps(times: list[float | None]) -> list[float]:
    values = [0.0] + [t for t in times if t is not None]
    return [b - a for a, b in itertools.pairwise(values)]


def test_poisson_gaps_are_exponential() -> None:
    rate = 20.0
    times = wl.arrival_times(wl.poisson(rate, seed=123), 2000)
    gaps = _gaps(times)
    assert len(gaps) == 2000
    assert all(g >= 0 for g in gaps)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(1 / rate, rel=0.05)
    cv = statistics.pstdev(gaps) / mean
    assert 0.9 <= cv <= 1.1
    # exponential: about e^-1 of the gaps exceed the mean
    above = sum(g > 1 / rate for g in gaps) / len(gaps)
    assert above == pytest.approx(0.368, abs=0.04)


def test_poisson_is_seeded() -> None:
    assert wl.poisson(5, seed=1).times(50) == wl.poisson(5, seed=1).times(50)
    assert wl.poisson(5, seed=1).times(50) != wl.poisson(5, seed=2).times(50)


def test_burst_and_closed_loop() -> None:
    items = wl.shared_prefix(n_requests=10, arrival=wl.burst())
    assert [i.at for i in items] == [0.0] * 10
    items = wl.apply_arrivals(items, wl.fixed_concurrency(3))
    assert [i.at for i in items] == [None] * 10


def test_apply_arrivals_keeps_order_and_requests() -> None:
    items = wl.shared_prefix(n_requests=30)
    scheduled = wl.apply_arrivals(items, wl.poisson(10, seed=0))
    assert [i.request for i in scheduled] == [i.request for i in items]
    times = [i.at for i in scheduled]
    assert times == sorted(times)  # type: ignore[type-var]
    assert times == wl.poisson(10, seed=0).times(30)


def test_within_duration() -> None:
    items = wl.shared_prefix(n_requests=400, arrival=wl.poisson(20, seed=7))
    kept = wl.within_duration(items, 5.0)
    assert 0 < len(kept) < len(items)
    assert all(i.at is not None and i.at <= 5.0 for i in kept)
    assert kept == items[: len(kept)]
    assert wl.shared_prefix(n_requests=400, arrival=wl.poisson(20, seed=7), duration=5.0) == kept
    closed = wl.apply_arrivals(items[:5], wl.fixed_concurrency(2))
    assert wl.within_duration(closed, 0.0) == closed  # unscheduled items are kept
    with pytest.raises(ValueError, match="duration"):
        wl.within_duration(items, -1)


def test_parse_arrival() -> None:
    assert wl.parse_arrival("burst") == wl.burst()
    assert wl.parse_arrival(" Poisson:2.5 ", seed=4) == wl.poisson(2.5, seed=4)
    assert wl.parse_arrival("concurrency:8") == wl.fixed_concurrency(8)
    assert wl.parse_arrival("fixed_concurrency:2") == wl.fixed_concurrency(2)
    assert str(wl.poisson(20)) == "poisson:20"
    assert str(wl.fixed_concurrency(4)) == "concurrency:4"
    for bad in ("poisson", "poisson:0", "poisson:-3", "poisson:nan", "concurrency:0", "x", ""):
        with pytest.raises(ValueError, match="arrival pattern"):
            wl.parse_arrival(bad)


def test_bad_patterns() -> None:
    with pytest.raises(ValueError, match="rate"):
        wl.poisson(0)
    with pytest.raises(ValueError, match="rate"):
        wl.poisson(float("inf"))
    with pytest.raises(ValueError, match="concurrency"):
        wl.fixed_concurrency(0)
