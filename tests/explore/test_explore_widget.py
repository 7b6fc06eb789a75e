"""The explorer's widget state, without a browser: filters, selection, pickers, empty runs.

Every run folder is written by the real telemetry pipeline (see ``explore_run.py``). Charts are
checked through their Vega-Lite specs (``to_dict()``), never as pixels.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sagellm_obs.explore import Explorer, explore
from sagellm_obs.explore.data import request_attributes, request_spans
from sagellm_obs.frames import load


def _rows(chart: Any) -> list[dict[str, Any]]:
    """Every data row of a chart's spec (inline datasets, all of them)."""
    spec = chart.to_dict()
    rows: list[dict[str, Any]] = []
    for values in spec.get("datasets", {}).values():
        rows.extend(values)
    return rows


def _ids(chart: Any) -> set[str]:
    return {r["request_id"] for r in _rows(chart) if "request_id" in r}


def _offsets(frames_requests: pl.DataFrame) -> pl.Series:
    t0 = frames_requests["arrival"].min()
    return (frames_requests["arrival"] - t0).dt.total_microseconds() / 1e6


@pytest.fixture
def ex(run_a: Path) -> Explorer:
    return explore(run_a, max_requests=15)


def test_importing_explore_is_light() -> None:
    code = (
        "import sys, sagellm_obs, sagellm_obs.explore; "
        "print([m for m in ('altair', 'ipywidgets', 'anywidget') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_initial_state_shows_the_whole_run(ex: Explorer, run_a: Path) -> None:
    frames = load(run_a)
    assert ex.runs == ["baseline"] and ex.run_name == "baseline"
    assert ex.filtered_requests.height == frames.requests.height == 40
    assert ex.filtered_steps.height == frames.steps.height
    assert ex.filters.start_s is None and ex.filters.ttft_max_ms is None
    assert ex.message.startswith("40 of 40 requests")
    # The list: the 15 slowest by E2E, slowest first, and the slowest is selected.
    listed = ex.listed_requests
    assert listed.height == 15
    e2e = listed["e2e_s"].to_list()
    assert e2e == sorted(e2e, reverse=True)
    assert e2e[0] == frames.requests["e2e_s"].max()
    assert ex.selected_request_id == listed["request_id"][0]
    assert ex.request_list.value == ex.selected_request_id
    assert [v for _, v in ex.request_list.options] == listed["request_id"].to_list()
    # The scatter holds every request, with a click selection named "pick".
    pick = ex.charts["pick"].to_dict()
    assert any(p.get("name") == "pick" for p in pick.get("params", []))
    assert _ids(ex.charts["pick"]) == set(frames.requests["request_id"].to_list())


def test_time_filter_keeps_requests_and_steps_in_the_window(ex: Explorer, run_a: Path) -> None:
    frames = load(run_a)
    ex.set_time_range(2.0, 5.0)
    req = ex.filtered_requests
    assert 0 < req.height < 40
    assert req["offset_s"].min() >= 2.0 and req["offset_s"].max() <= 5.0
    t0 = min(frames.requests["arrival"].min(), frames.steps["time"].min())
    expected = frames.requests.filter(
        ((pl.col("arrival") - t0).dt.total_microseconds() / 1e6).is_between(2.0, 5.0)
    )
    assert req["request_id"].to_list() == expected["request_id"].to_list()
    steps = ex.filtered_steps
    offsets = (steps["time"] - t0).dt.total_microseconds() / 1e6
    assert 0 < steps.height < frames.steps.height
    assert offsets.min() >= 2.0 and offsets.max() <= 5.0
    assert ex.filters.start_s == 2.0 and ex.filters.end_s == 5.0
    assert "arriving 2.00–5.00 s" in ex.message
    # The linked charts follow: scatter and dashboard hold only the window's requests.
    assert _ids(ex.charts["pick"]) == set(req["request_id"].to_list())
    assert _ids(ex.charts["dashboard"]) <= set(req["request_id"].to_list())
    assert ex.time_range.value == (2.0, 5.0)
    # An open end goes to the end of the run.
    ex.set_time_range(2.0, None)
    assert ex.filters.end_s is None and ex.filtered_requests["offset_s"].min() >= 2.0
    with pytest.raises(ValueError, match="before start"):
        ex.set_time_range(3.0, 1.0)


def test_latency_limits_filter_and_reset(ex: Explorer, run_a: Path) -> None:
    frames = load(run_a)
    median_ttft = float(frames.requests["ttft_s"].median()) * 1000.0  # type: ignore[arg-type]
    ex.set_latency_limits(ttft_ms=median_ttft)
    req = ex.filtered_requests
    assert 0 < req.height < 40
    assert (req["ttft_s"] * 1000.0).max() <= median_ttft
    assert ex.filters.ttft_max_ms == pytest.approx(median_ttft)
    # The other limit is kept when only one is changed.
    median_e2e = float(frames.requests["e2e_s"].median()) * 1000.0  # type: ignore[arg-type]
    ex.set_latency_limits(e2e_ms=median_e2e)
    both = ex.filtered_requests
    assert (both["ttft_s"] * 1000.0).max() <= median_ttft
    assert (both["e2e_s"] * 1000.0).max() <= median_e2e
    assert both.height <= req.height
    # The listed and selected requests come from the filtered ones.
    assert set(ex.listed_requests["request_id"]) <= set(both["request_id"])
    assert ex.selected_request_id in set(both["request_id"])
    ex.set_latency_limits(ttft_ms=None, e2e_ms=None)
    assert ex.filtered_requests.height == 40
    ex.set_latency_limits(ttft_ms=median_ttft)
    ex.set_time_range(1.0, 3.0)
    ex.reset_filters()
    assert ex.filters == type(ex.filters)()
    assert ex.filtered_requests.height == 40


def test_widget_values_are_the_state(ex: Explorer) -> None:
    """Moving a slider (what the browser does) filters like the methods do."""
    top = ex.e2e_max.max
    ex.e2e_max.value = top / 4
    assert ex.filters.e2e_max_ms == pytest.approx(top / 4)
    assert (ex.filtered_requests["e2e_s"] * 1000.0).max() <= top / 4
    ex.e2e_max.value = top  # the end of the slider is "no limit"
    assert ex.filters.e2e_max_ms is None and ex.filtered_requests.height == 40
    ex.time_range.value = (ex.time_range.max / 2, ex.time_range.max)
    assert ex.filtered_requests["offset_s"].min() >= ex.time_range.max / 2
    ex.reset_button.click()
    assert ex.filtered_requests.height == 40


def test_selecting_a_request_updates_waterfall_and_attributes(ex: Explorer, run_a: Path) -> None:
    frames = load(run_a)
    rid = "req-007"
    ex.select_request(rid)
    assert ex.selected_request_id == rid
    rows = _rows(ex.charts["waterfall"])
    assert {r["request_id"] for r in rows} == {rid}
    assert sorted(r["phase"] for r in rows) == ["decode", "frontend", "prefill", "queue"]
    spec = ex.charts["waterfall"].to_dict()
    assert rid in json.dumps(spec["title"])
    row = frames.requests.filter(pl.col("request_id") == rid).row(0, named=True)
    queue_ms = next(r["ms"] for r in rows if r["phase"] == "queue")
    assert queue_ms == pytest.approx(row["queue_s"] * 1000.0)
    # The gap between arrival and the queue span is named: the frontend's share of TTFT.
    part = {r["phase"]: r for r in rows}
    assert part["frontend"]["ms"] == pytest.approx(row["frontend_s"] * 1000.0)
    assert part["prefill"]["end"] - part["frontend"]["start"] == pytest.approx(
        row["ttft_s"] * 1000.0
    )
    # The spans of its trace: the request span and its three phases, with durations.
    spans = ex.request_spans
    assert spans["name"].to_list()[1:] == ["queue", "prefill", "decode"]
    assert spans.filter(pl.col("is_request"))["duration_ms"][0] == pytest.approx(
        row["e2e_s"] * 1000.0, rel=1e-3
    )
    attrs = dict(ex.request_attributes.iter_rows())
    assert attrs["request id"] == rid
    assert attrs["model"] == "tiny-test"
    assert attrs["gen_ai.request.max_tokens"] == "64"
    assert attrs["prompt tokens"] == f"{row['input_tokens']:,}"
    assert attrs["frontend (TTFT - queue - prefill)"] == f"{row['frontend_s'] * 1000.0:,.2f} ms"
    assert attrs["cached share of the prompt"] == f"{row['cached_prompt_share']:.1%}"
    assert rid in ex.detail.value and "prefill" in ex.detail.value
    # Read for this trace alone: the run's spans stay unloaded, and the tables are those the
    # whole spans frame of an eager load gives.
    assert ex.run is not None and not ex.run.frames.spans_loaded
    eager = load(run_a, spans="eager").spans
    assert ex.request_spans.equals(request_spans(eager, row))
    assert ex.request_attributes.equals(request_attributes(eager, row))
    # Another selection replaces both.
    ex.select_request("req-020")
    assert _ids(ex.charts["waterfall"]) == {"req-020"}
    assert dict(ex.request_attributes.iter_rows())["request id"] == "req-020"
    with pytest.raises(ValueError, match="no request"):
        ex.select_request("nope")
    ex.select_request(None)
    assert ex.request_spans.is_empty() and ex.detail.value == ""
    assert "select a request" in json.dumps(ex.charts["waterfall"].to_dict())


def test_list_and_scatter_clicks_select(ex: Explorer) -> None:
    second = ex.request_list.options[1][1]
    ex.request_list.value = second
    assert ex.selected_request_id == second
    assert _ids(ex.charts["waterfall"]) == {second}
    # A click on the scatter arrives as the JupyterChart's selection state.
    target = "req-003"
    ex.pick_view._vl_selections = {
        "pick": {"value": {"vlPoint": {"or": [{"request_id": target}]}}, "store": []}
    }
    assert ex.selected_request_id == target
    assert _ids(ex.charts["waterfall"]) == {target}
    listed = set(ex.listed_requests["request_id"])
    assert ex.request_list.value == (target if target in listed else None)
    # An empty selection (a click on the background) keeps the request shown.
    ex.pick_view._vl_selections = {"pick": {"value": None, "store": []}}
    assert ex.selected_request_id == target


def test_filtering_out_the_selection_moves_it(ex: Explorer) -> None:
    ex.select_request("req-000")
    ex.set_time_range(4.0, None)  # req-000 arrived at the start
    assert ex.selected_request_id == ex.listed_requests["request_id"][0]
    assert _ids(ex.charts["waterfall"]) == {ex.selected_request_id}


def test_sort_order_of_the_list(ex: Explorer) -> None:
    ex.sort_picker.value = "queue_s"
    queues = ex.listed_requests["queue_s"].to_list()
    assert queues == sorted(queues, reverse=True)
    assert queues[0] == ex.filtered_requests["queue_s"].max()


def test_model_and_engine_pickers(run_mixed: Path) -> None:
    ex = explore(run_mixed)
    assert [v for _, v in ex.model_picker.options] == ["", "model-a", "model-b"]
    assert [v for _, v in ex.engine_picker.options] == ["", "eng-1", "eng-2"]
    ex.set_model("model-b")
    assert set(ex.filtered_requests["model"]) == {"model-b"}
    assert ex.filtered_requests.height == 15
    assert "model model-b" in ex.message
    ex.model_picker.value = ""
    ex.engine_picker.value = "eng-1"
    assert set(ex.filtered_requests["engine_id"]) == {"eng-1"}
    assert set(ex.filtered_steps["engine_id"]) == {"eng-1"}
    ex.set_engine(None)
    assert ex.filtered_requests.height == 30
    with pytest.raises(ValueError, match="no model"):
        ex.set_model("gpt-9")


def test_run_picker_switches_runs(run_a: Path, run_b: Path) -> None:
    ex = explore({"A": run_a, "B": run_b})
    assert ex.runs == ["A", "B"] and not ex.run_picker.disabled
    ex.set_time_range(1.0, 2.0)
    ex.select_run("B")
    frames_b = load(run_b)
    assert ex.run_name == "B" and ex.run_picker.value == "B"
    assert ex.filters == type(ex.filters)()  # filters start over on the new run
    assert ex.filtered_requests["request_id"].to_list() == frames_b.requests["request_id"].to_list()
    assert ex.selected_request_id is not None and ex.selected_request_id.startswith("slow-")
    assert ex.e2e_max.max >= float(frames_b.requests["e2e_s"].max()) * 1000.0  # type: ignore[arg-type]
    assert _ids(ex.charts["pick"]) == set(frames_b.requests["request_id"])
    assert _ids(ex.charts["waterfall"]) == {ex.selected_request_id}
    # The picker widget itself switches too.
    ex.run_picker.value = "A"
    assert ex.filtered_requests.height == 40
    assert ex.selected_request_id is not None and ex.selected_request_id.startswith("req-")
    with pytest.raises(KeyError, match="unknown run"):
        ex.select_run("C")
    assert explore({"A": run_a, "B": run_b}, run="B").run_name == "B"


def test_lists_frames_and_folders_of_runs(run_a: Path, run_b: Path, runs_root: Path) -> None:
    assert explore([run_a, run_b]).runs == ["baseline", "slower"]
    assert explore(runs_root).runs == ["baseline", "slower"]  # a folder of run folders
    frames = load(run_a)
    from_frames = explore(frames)
    assert from_frames.runs == [frames.manifest["run_id"]]
    assert from_frames.filtered_requests.height == 40
    assert explore([run_a, run_a]).runs == ["baseline", "baseline (2)"]


def test_empty_run_gives_a_message(run_empty: Path) -> None:
    ex = explore(run_empty)
    assert ex.filtered_requests.is_empty() and ex.listed_requests.is_empty()
    assert ex.selected_request_id is None
    assert "no requests" in ex.message and "flush" in ex.message
    assert "no requests" in ex.status.value
    assert ex.time_range.disabled and ex.ttft_max.disabled
    specs = {name: json.dumps(chart.to_dict()) for name, chart in ex.charts.items()}
    assert "no requests to show" in specs["pick"]
    assert "select a request" in specs["waterfall"]
    assert "no data" in specs["latency"] or "no engine steps" in specs["dashboard"]
    ex.set_time_range(0.0, 1.0)  # harmless
    ex.set_latency_limits(ttft_ms=5.0)
    assert ex.filtered_requests.is_empty()


def test_no_match_and_bad_run_give_messages(run_a: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    ex = explore({"good": run_a, "broken": bad})
    ex.set_latency_limits(ttft_ms=0.0)
    assert ex.filtered_requests.is_empty()
    assert "No request of run 'good' matches" in ex.message
    assert ex.selected_request_id is None
    ex.select_run("broken")
    assert ex.message.startswith("Could not load run 'broken'")
    assert ex.frames is None and ex.filtered_requests.is_empty()
    assert "Could not load" in json.dumps(ex.charts["pick"].to_dict())
    ex.select_run("good")
    assert ex.filtered_requests.height == 40


def test_bad_arguments_raise(tmp_path: Path, run_a: Path) -> None:
    with pytest.raises(FileNotFoundError):
        explore(tmp_path / "missing")
    with pytest.raises(ValueError, match="at least one run"):
        explore([])
    with pytest.raises(ValueError, match="unknown run"):
        explore(run_a, run="other")


def test_hidden_tabs_are_rebuilt_when_opened(ex: Explorer) -> None:
    before = ex.dashboard_view.spec
    ex.set_time_range(3.0, 4.0)
    assert ex.dashboard_view.spec == before  # hidden tab: not redrawn yet
    ex.tabs.selected_index = 1
    assert ex.dashboard_view.spec != before
    kept = set(ex.filtered_requests["request_id"])
    assert _ids(ex.dashboard_view.chart) <= kept
    latency = ex.charts["latency"].to_dict()
    assert "vconcat" in latency
    cache = ex.charts["cache"].to_dict()
    assert "vconcat" in cache and len(cache["vconcat"]) == 2


def test_displays_as_a_widget(ex: Explorer) -> None:
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.widget.model_id
    # Every chart is an offline JupyterChart (the bundled JavaScript, no CDN import).
    assert "cdn.jsdelivr" not in ex.pick_view._esm and "https://" not in ex.pick_view._esm[:2000]
