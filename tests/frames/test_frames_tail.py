"""The tail reader against a run folder being written by the real telemetry writer.

Rows grow poll by poll, files rotate between and during reads, a torn last line waits for its
end, the end of the run is noticed, and the window bounds what is kept. Each check compares the
tail's frames with a full load of the same folder (``cache=False``: the JSON alone).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from frames_otlp import LiveRun
from polars.testing import assert_frame_equal

from sagellm_obs.frames import load
from sagellm_obs.frames.tail import Tail


def _same_as_full_load(tail: Tail, path: Path) -> None:
    full = load(path, cache=False)
    got = tail.frames
    key = ["trace_id", "span_id"]
    assert_frame_equal(got.spans.sort(key), full.spans.sort(key))
    assert_frame_equal(got.requests.sort("request_id"), full.requests.sort("request_id"))
    assert_frame_equal(got.steps, full.steps)


def test_rows_grow_poll_by_poll(writer: LiveRun) -> None:
    tail = Tail(writer.path)
    assert tail.poll() == 0 and tail.frames.requests.height == 0
    writer.batch(2)
    assert tail.poll() > 0
    assert tail.frames.requests.height == 2
    assert tail.poll() == 0  # nothing new: nothing read twice
    writer.batch(3)
    tail.poll()
    assert sorted(tail.frames.requests["request_id"]) == sorted(writer.ids)
    assert tail.frames.steps.height == writer.steps
    _same_as_full_load(tail, writer.path)
    assert not tail.ended
    writer.tel.shutdown()
    tail.poll()  # the last lines written at close, and the manifest's end
    assert tail.ended
    _same_as_full_load(tail, writer.path)


@pytest.mark.parametrize("writer", [4096], indirect=True)
def test_rotation_between_and_during_reads(writer: LiveRun) -> None:
    tail = Tail(writer.path)
    writer.batch(2)
    tail.poll()
    for _ in range(4):  # each flush starts a new traces file at 4 KiB
        writer.batch(2)
    assert len(list(writer.path.glob("traces-*.jsonl"))) >= 3
    tail.poll()
    _same_as_full_load(tail, writer.path)
    assert tail.frames.requests.height == writer.requests


def test_a_torn_line_waits_for_its_end(writer: LiveRun) -> None:
    writer.batch(2)
    tail = Tail(writer.path)
    tail.poll()
    (steps,) = writer.path.glob("steps-*.jsonl")
    whole = steps.read_bytes().splitlines(keepends=True)[0]
    with open(steps, "ab") as fh:
        fh.write(whole[:20])  # a write cut in the middle of a line
    assert tail.poll() == 0
    before = tail.frames.steps.height
    with open(steps, "ab") as fh:
        fh.write(whole[20:])
    assert tail.poll() == 1
    assert tail.frames.steps.height == before + 1
    assert tail.report.skipped == []
    writer.batch(1)  # spans' line numbers go on from where the last poll stopped
    tail.poll()
    _same_as_full_load(tail, writer.path)


def test_the_window_bounds_what_is_kept(writer: LiveRun) -> None:
    tail = Tail(writer.path, window_s=None, max_rows=4)
    for _ in range(3):
        writer.batch(2)
        tail.poll()
    assert tail.frames.steps.height == 4
    assert tail.frames.steps["step"].to_list() == list(range(writer.steps - 3, writer.steps + 1))
    assert tail.rows_read > tail.frames.spans.height

    # A time window keeps what is at most window_s older than the newest row of any frame.
    full = load(writer.path, cache=False)
    newest = max(
        full.spans["start"].max(),  # type: ignore[type-var]
        full.steps["time"].max(),
        full.metrics["time"].max(),
    )
    oldest = min(full.spans["start"].min(), full.steps["time"].min())  # type: ignore[type-var]
    window = 0.5 * (newest - oldest).total_seconds()  # type: ignore[operator]
    timed = Tail(writer.path, window_s=window)
    timed.poll()
    cut = newest - timedelta(seconds=window)  # type: ignore[operator]
    assert_frame_equal(timed.frames.steps, full.steps.filter(pl.col("time") >= cut))
    kept = full.spans.filter(pl.col("start") >= cut)
    assert sorted(timed.frames.spans["span_id"]) == sorted(kept["span_id"])
    assert kept.height < full.spans.height and timed.frames.steps.height > 0  # it trims


def test_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Tail(tmp_path / "nope")


def test_bad_lines_are_skipped_and_counted(writer: LiveRun) -> None:
    writer.batch(1)
    tail = Tail(writer.path)
    tail.poll()
    (steps,) = writer.path.glob("steps-*.jsonl")
    with open(steps, "a") as fh:
        fh.write("{not json\n")
    tail.poll()
    assert len(tail.report.skipped) == 1
    assert tail.report.skipped[0][1] == steps.read_text().count("\n")
    assert tail.frames.steps.height == writer.steps


def test_vllms_span_arriving_polls_after_ours_is_not_a_second_request(tmp_path: Path) -> None:
    """vLLM batches its spans on its own: its llm_request may land after our request span."""
    import json

    from sagellm_obs.store.run import RunStore

    recorded = Path(__file__).parent / "data" / "vllm_and_ours.jsonl"
    lines = [json.loads(x) for x in recorded.read_text().splitlines()]

    def by_scope(vllm: bool) -> list[dict[str, object]]:
        out = []
        for line in lines:
            kept = [
                {**rs, "scopeSpans": scopes}
                for rs in line["resourceSpans"]
                if (
                    scopes := [
                        ss
                        for ss in rs["scopeSpans"]
                        if (ss["scope"]["name"] == "vllm.tracing.otel") == vllm
                    ]
                )
            ]
            if kept:
                out.append({"resourceSpans": kept})
        return out

    store = RunStore(tmp_path / "run")
    tail = Tail(store.path)
    store.write("traces", by_scope(vllm=False))
    tail.poll()
    n = tail.frames.requests.height
    assert n > 0 and tail.totals["requests"] == n
    store.write("traces", by_scope(vllm=True))
    tail.poll()
    assert tail.totals["requests"] == n
    assert tail.frames.requests.height == n
    assert tail.frames.requests["vllm_ttft_s"].null_count() == 0
    store.close()
    tail.poll()
    _same_as_full_load(tail, store.path)
