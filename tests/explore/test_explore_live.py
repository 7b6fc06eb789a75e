"""The live view: its state advances while the real writer writes, pause holds it, the end stops it.

Charts are checked on their Vega-Lite specs (what the browser would draw); a browser test of the
widget is in tests/notebooks.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sagellm_obs.explore import live
from sagellm_obs.explore.live_view import VIEWS, LiveView
from sagellm_obs.frames import load
from tests.frames.frames_otlp import LiveRun


def _until(ok: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _values(view: Any) -> int:
    """Rows of data the spec a chart widget holds carries (all its datasets: what the browser
    draws)."""
    spec = view.spec
    return sum(len(rows) for rows in spec.get("datasets", {}).values())


def test_the_view_follows_the_run_and_stops_at_its_end(writer: LiveRun) -> None:
    view = live(writer.path, every=0.1, window_s=None)
    try:
        assert isinstance(view, LiveView)
        assert "waiting for the run" in str(view.charts["kv"].to_dict())
        assert ": live ·" in view.status.value  # the first picture already says so
        writer.batch(3)
        _until(lambda: view.snapshot is not None and view.snapshot.requests == 3)
        first = {name: _values(view.views[name]) for name in VIEWS}
        assert all(n > 0 for n in first.values()), first
        writer.batch(4, steps=20)
        _until(lambda: view.snapshot is not None and view.snapshot.requests == 7)
        later = {name: _values(view.views[name]) for name in VIEWS}
        assert later["kv"] > first["kv"] and later["ttft"] >= first["ttft"]
        assert "7 requests finished" in view.status.value and "live" in view.status.value
        writer.tel.shutdown()
        _until(lambda: view.ended)
        assert view._thread is not None
        view._thread.join(10)
        assert not view._thread.is_alive()  # it stopped by itself
        assert "ended" in view.status.value
        full = load(writer.path, cache=False)
        assert view.tail.frames.requests.height == full.requests.height
    finally:
        view.stop()


def test_pause_holds_the_picture(writer: LiveRun) -> None:
    view = LiveView(writer.path, every=0.05)
    try:
        view.pause()
        assert view.paused and view.pause_button.description == "Resume"
        assert "paused" in view.status.value
        writer.batch(2)
        time.sleep(0.5)
        assert view.snapshot is not None and view.snapshot.requests == 0
        view.resume()
        _until(lambda: view.snapshot is not None and view.snapshot.requests == 2)
    finally:
        view.stop()
    assert view._thread is not None and not view._thread.is_alive()


def test_manual_refresh(writer: LiveRun) -> None:
    view = LiveView(writer.path, start=False)
    assert view._thread is None
    writer.batch(2)
    assert view.refresh() > 0
    assert view.refresh() == 0
    assert view.snapshot is not None and view.snapshot.requests == 2
    assert view.refreshes == 3


def test_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        live(tmp_path / "nope")


def test_live_stays_callable_after_its_first_view(writer: LiveRun) -> None:
    """The view's module is not named ``live``: importing it must not shadow the function."""
    import sagellm_obs.explore as explore

    explore.live(writer.path, every=3600).stop()
    from sagellm_obs.explore import live as again

    assert callable(again) and again is live


def test_only_charts_whose_input_changed_are_redrawn(writer: LiveRun) -> None:
    view = LiveView(writer.path, start=False)
    writer.batch(2, steps=3)
    view.refresh()
    before = {name: view.views[name].spec for name in VIEWS}
    versions = dict(view.tail.versions)
    writer.batch(0, steps=5)  # steps only: no new spans
    view.refresh()
    assert view.tail.versions["steps"] > versions["steps"]
    assert view.tail.versions["spans"] == versions["spans"]
    assert view.views["ttft"].spec is before["ttft"]  # neither rebuilt nor sent again
    assert view.views["kv"].spec != before["kv"]
    assert view.tail.frames.steps.height == load(writer.path, cache=False).steps.height == 8
    for name in VIEWS:  # the specs sent unvalidated are those Altair's validation accepts
        assert view.views[name].spec == view.charts[name].to_dict(validate=True)


# --- the CPU budget -------------------------------------------------------------------------------


def test_refresh_interval_stretches_to_stay_under_the_budget() -> None:
    from sagellm_obs.explore.live_view import refresh_interval

    assert refresh_interval(1.0, 0.08, 0.02) == pytest.approx(4.0)  # 0.08 s of CPU per 4 s
    assert refresh_interval(1.0, 0.01, 0.02) == 1.0  # cheap enough: as asked
    assert refresh_interval(1.0, None, 0.02) == 1.0  # nothing measured yet
    assert refresh_interval(1.0, 0.5, None) == 1.0  # no budget
    for cost in (0.001, 0.02, 0.08, 0.3):
        wait = refresh_interval(0.5, cost, 0.05)
        assert cost / (cost + wait) < 0.05  # the thread's share of a core
    with pytest.raises(ValueError, match="cpu_budget"):
        refresh_interval(1.0, 0.1, 0.0)


def test_the_cost_estimate_is_smoothed() -> None:
    from sagellm_obs.explore.live_view import smoothed_cost

    assert smoothed_cost(None, 0.2) == 0.2
    assert smoothed_cost(0.1, 0.2, weight=0.3) == pytest.approx(0.13)
    estimate = None
    for _ in range(30):  # a steady cost: the estimate converges on it
        estimate = smoothed_cost(estimate if estimate is not None else 1.0, 0.05)
    assert estimate == pytest.approx(0.05, rel=1e-3)


def _burn(cpu_s: float) -> None:
    t0 = time.thread_time()
    while time.thread_time() - t0 < cpu_s:
        pass


def _slow_refreshes(view: LiveView, cpu_s: float) -> list[float]:
    """Makes the view's refresh burn ``cpu_s`` of its thread's CPU more (fault injection);
    returns the list of times (monotonic) the refreshes start at."""
    starts: list[float] = []
    refresh = view.refresh

    def slow() -> int:
        starts.append(time.monotonic())
        _burn(cpu_s)
        return refresh()

    view.refresh = slow  # type: ignore[method-assign]
    return starts


def test_a_slow_refresh_stretches_the_interval(writer: LiveRun) -> None:
    writer.batch(2)
    view = LiveView(writer.path, every=0.02, cpu_budget=0.1, start=False)
    starts = _slow_refreshes(view, 0.03)  # >= 0.03 s of CPU a refresh: >= 0.3 s apart
    view._thread = threading.Thread(target=view._loop, daemon=True)
    view._running.set()
    view._thread.start()
    try:
        _until(lambda: len(starts) >= 4 and "refreshing every" in view.status.value)
        assert view.refresh_cpu_s is not None and view.refresh_cpu_s >= 0.03
        assert view.interval == pytest.approx(view.refresh_cpu_s / 0.1)
        assert "to stay under 10% CPU" in view.status.value
        gaps = [b - a for a, b in itertools.pairwise(starts[1:])]
        assert gaps and min(gaps) >= 0.3  # waited (at least) cost / budget, not 0.02 s
    finally:
        view.stop()


def test_without_a_budget_the_interval_is_as_asked(writer: LiveRun) -> None:
    writer.batch(2)
    view = LiveView(writer.path, every=0.02, cpu_budget=None, start=False)
    starts = _slow_refreshes(view, 0.03)
    view._thread = threading.Thread(target=view._loop, daemon=True)
    view._running.set()
    view._thread.start()
    try:
        _until(lambda: len(starts) >= 4)
        assert view.interval == 0.02 and "refreshing every" not in view.status.value
    finally:
        view.stop()


def test_a_stretched_interval_is_said_only_while_live() -> None:
    from sagellm_obs.explore.live_view import status_html
    from sagellm_obs.watch import Snapshot

    s = Snapshot(
        run_id="r",
        model=None,
        ended=False,
        requests=1,
        errors=0,
        window_s=120.0,
        window_requests=1,
        ttft_p50=None,
        ttft_p99=None,
        e2e_p50=None,
        e2e_p99=None,
        kv_usage=None,
        running=None,
        waiting=None,
        preemptions=0,
        hit_rate_window=None,
        hit_rate_run=None,
        tokens_per_s=[],
    )
    said = status_html(s, 3, False, interval=3.2, every=1.0, budget=0.02)
    assert "refreshing every 3.2 s to stay under 2% CPU" in said
    assert "refreshing" not in status_html(s, 3, False, interval=1.0, every=1.0, budget=0.02)
    assert "refreshing" not in status_html(s, 3, True, interval=3.2, every=1.0, budget=0.02)


def test_the_interval_runs_from_the_latest_refresh_whoever_made_it(writer: LiveRun) -> None:
    """A refresh by hand while paused (as the benchmark brings a view up to date between its
    rounds) counts: resuming does not refresh again before the interval is over."""
    writer.batch(2)
    view = LiveView(writer.path, every=0.5, cpu_budget=None)
    try:
        view.pause()
        time.sleep(0.7)  # the loop is due, waiting for the resume
        starts = _slow_refreshes(view, 0.0)
        view.refresh()
        manual = time.monotonic()
        view.resume()
        _until(lambda: len(starts) >= 2)
        assert starts[1] >= manual + 0.5 - 0.02  # not at once on resume
    finally:
        view.stop()
