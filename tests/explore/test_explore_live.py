"""The live view: its state advances while the real writer writes, pause holds it, the end stops it.

Charts are checked on their Vega-Lite specs (what the browser would draw); a browser test of the
widget is in tests/notebooks.
"""

from __future__ import annotations

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
