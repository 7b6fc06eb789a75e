"""The requests frame: exactly the submitted numbers, vLLM's own spans, client timings."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from frames_otlp import T0, WrittenRun, span, traces_line, write_lines, write_run

from sagellm_obs import semconv as sc
from sagellm_obs.frames import Frames, load, load_requests
from sagellm_obs.frames.spans import VLLM_FIGURES

DATA = Path(__file__).parent / "data"  # spans vLLM emitted: tests/frames/record_vllm_spans.py


def _row(frames: Frames, request_id: str) -> dict[str, object]:
    rows = frames.requests.filter(pl.col("request_id") == request_id).to_dicts()
    assert len(rows) == 1
    return rows[0]


def test_each_request_has_exactly_the_submitted_numbers(
    frames: Frames, written: WrittenRun
) -> None:
    for rid, r in written.records.items():
        row = _row(frames, rid)
        assert row["ttft_s"] == r.ttft
        assert row["queue_s"] == r.queue
        assert row["prefill_s"] == r.prefill
        assert row["decode_s"] == r.decode
        assert row["inference_s"] == r.inference
        assert row["e2e_s"] == r.e2e
        assert row["tpot_s"] == r.tpot
        assert row["input_tokens"] == r.prompt_tokens
        assert row["output_tokens"] == r.output_tokens
        assert row["cached_tokens"] == r.cached_tokens
        assert row["cached_prompt_share"] == pytest.approx(r.cached_tokens / r.prompt_tokens)
        # TTFT's parts add up: the frontend's share is what queue and prefill leave of it
        assert row["frontend_s"] == pytest.approx(r.ttft - r.queue - r.prefill)
        assert row["model"] == r.model
        assert row["operation"] == r.operation
        assert row["engine_id"] == r.engine_id
        assert row["run_id"] == written.run_id
        assert row["protocol_trace_id"] == r.trace_id
        assert row["finish_reason"] == r.finish_reason
        assert row["error_type"] == r.error_type
        assert row["cancelled"] is r.cancelled
        assert row["stream"] is r.stream
        assert row["source"] == "sagellm"
        arrival = row["arrival"]
        assert isinstance(arrival, datetime)
        # A datetime keeps whole microseconds (truncated) and a float of epoch seconds near
        # 1.8e9 resolves ~0.24 µs: the two may differ by a little over 1 µs.
        assert arrival.timestamp() == pytest.approx(r.arrival_time, abs=2e-6)
        assert row["client_ttft_s"] is None


def test_requests_are_sorted_by_arrival(frames: Frames) -> None:
    assert frames.requests["arrival"].is_sorted()


def test_request_span_ids_link_to_spans(frames: Frames) -> None:
    spans = frames.spans
    for row in frames.requests.iter_rows(named=True):
        children = spans.filter(pl.col("parent_span_id") == row["span_id"])
        assert sorted(children["name"].to_list()) == sorted(sc.PHASE_SPANS)
        assert set(children["trace_id"].to_list()) == {row["trace_id"]}


def test_error_span_status(frames: Frames) -> None:
    server = frames.spans.filter(pl.col("request_id") == "req-2", pl.col("kind") == "SERVER")
    assert server.row(0, named=True)["status_code"] == "ERROR"
    assert server.row(0, named=True)["status_message"] == "timeout"


def test_phase_span_durations_match_the_record(frames: Frames, written: WrittenRun) -> None:
    r = written.records["req-1"]
    parent = _row(frames, "req-1")["span_id"]
    phases = frames.spans.filter(pl.col("parent_span_id") == parent)
    durations = dict(zip(phases["name"], phases["duration_s"], strict=True))
    assert durations[sc.SPAN_QUEUE] == pytest.approx(r.queue, abs=2e-9)
    assert durations[sc.SPAN_PREFILL] == pytest.approx(r.prefill, abs=2e-9)
    assert durations[sc.SPAN_DECODE] == pytest.approx(r.decode, abs=2e-9)


def _value(v: dict[str, Any]) -> Any:
    """An OTLP/JSON AnyValue, read with plain json (not the loader under test)."""
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "stringValue" in v:
        return v["stringValue"]
    return v.get("boolValue")


def _recorded(name: str, tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """A copy of a file of spans vLLM emitted (tests/frames/record_vllm_spans.py wrote it), and
    its ``llm_request`` spans by request id: attributes, ids and start time."""
    src = DATA / name
    path = tmp_path / name
    shutil.copy(src, path)  # load() caches next to the file
    spans: dict[str, dict[str, Any]] = {}
    for line in src.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    if s["name"] != sc.VLLM_REQUEST_SPAN_NAME:
                        continue
                    attrs = {a["key"]: _value(a["value"]) for a in s["attributes"]}
                    spans[attrs[sc.GEN_AI_REQUEST_ID]] = {
                        **attrs,
                        "scope": ss["scope"]["name"],
                        "trace": s["traceId"],
                        "span": s["spanId"],
                        "parent": s.get("parentSpanId") or None,
                        "start": int(s["startTimeUnixNano"]),
                    }
    assert spans, f"{src} holds no llm_request span: rerun tests/frames/record_vllm_spans.py"
    return path, spans


_VLLM_KEYS = {
    "ttft_s": sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN,
    "e2e_s": sc.GEN_AI_LATENCY_E2E,
    "queue_s": sc.GEN_AI_LATENCY_TIME_IN_QUEUE,
    "prefill_s": sc.GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL,
    "decode_s": sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE,
    "inference_s": sc.GEN_AI_LATENCY_TIME_IN_MODEL_INFERENCE,
    "input_tokens": sc.GEN_AI_USAGE_PROMPT_TOKENS_DEPRECATED,
    "output_tokens": sc.GEN_AI_USAGE_COMPLETION_TOKENS_DEPRECATED,
}


def test_vllm_llm_request_spans_map_into_requests(tmp_path: Path) -> None:
    """vLLM's own spans alone (a collector beside a vLLM server): one row each, vLLM's numbers."""
    path, recorded = _recorded("vllm_alone.jsonl", tmp_path)
    req = load_requests(path, cache=False)
    assert sorted(req["request_id"].to_list()) == sorted(recorded)
    assert req["arrival"].is_sorted()
    for row in req.iter_rows(named=True):
        v = recorded[row["request_id"]]
        assert v["scope"] == "vllm.tracing.otel"
        assert row["source"] == "vllm"
        for col, key in _VLLM_KEYS.items():
            assert row[col] == v[key], col
        out = v[sc.GEN_AI_USAGE_COMPLETION_TOKENS_DEPRECATED]
        decode = v[sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE]
        assert row["tpot_s"] == (pytest.approx(decode / (out - 1)) if out > 1 else None)
        start = datetime.fromtimestamp(v["start"] // 1000 / 1e6, tz=timezone.utc)  # to the µs
        assert row["arrival"] == start
        assert (row["trace_id"], row["span_id"], row["parent_span_id"]) == (
            v["trace"],
            v["span"],
            v["parent"],
        )
        # What vLLM 0.32's span does not say stays null.
        assert row["cached_tokens"] is None and row["cached_prompt_share"] is None
        assert row["cancelled"] is None and row["stream"] is None
        assert row["operation"] is None and row["model"] is None
        assert row["vllm_span_id"] is None and row["vllm_ttft_s"] is None


def test_vllm_span_under_ours_fills_the_vllm_columns(tmp_path: Path) -> None:
    """A run with vLLM's tracing on: one row per request, vLLM's figures beside ours."""
    path, recorded = _recorded("vllm_and_ours.jsonl", tmp_path)
    out = load(path, cache=False)
    req = out.requests
    assert sorted(req["request_id"].to_list()) == sorted(recorded)  # no second row per request
    assert set(req["source"]) == {"sagellm"}
    assert out.spans.filter(pl.col("name") == sc.VLLM_REQUEST_SPAN_NAME).height == len(recorded)
    for row in req.iter_rows(named=True):
        v = recorded[row["request_id"]]
        # vLLM's span is the child of ours, in the same trace.
        assert (row["trace_id"], row["span_id"], row["vllm_span_id"]) == (
            v["trace"],
            v["parent"],
            v["span"],
        )
        for col in VLLM_FIGURES:
            assert row[col] == v[_VLLM_KEYS[VLLM_FIGURES[col]]], col
        # Where the definitions are the same, ours and vLLM's agree within 1 ms.
        for col, ours in VLLM_FIGURES.items():
            assert row[ours] == pytest.approx(row[col], abs=1e-3), col
    traced = _row(out, "rec-traced")
    assert traced["parent_span_id"] == "00f067aa0ba902b7"  # the caller's span
    assert traced["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_internal_and_client_spans_are_not_requests(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "t.jsonl",
        [
            traces_line(
                [
                    span("b" * 32, "1" * 16, "http get", kind=3),
                    span(
                        "b" * 32,
                        "2" * 16,
                        "work",
                        kind=1,
                        attributes={sc.SAGELLM_REQUEST_ID: "x", sc.GEN_AI_OPERATION_NAME: "chat"},
                    ),
                ]
            )
        ],
    )
    out = load(tmp_path, cache=False)
    assert out.spans.height == 2
    assert out.requests.is_empty()


def test_client_timings_join_on_request_id(written: WrittenRun, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(written.path, run)
    write_lines(
        run / "requests-client-00001.jsonl",
        [
            {
                "request_id": "req-0",
                "client_start_unix_nano": T0,
                "client_ttft_s": 0.5,
                "client_e2e_s": 0.75,
                "workload": "short",
                "family": "chat",
                "workload_phase": "warm",
            },
            {
                "request_id": "req-1",
                "client_start_unix_nano": T0,
                "client_ttft_s": None,
                "client_e2e_s": 0.1,
            },
            {
                "request_id": "req-1",
                "client_start_unix_nano": T0,
                "client_ttft_s": 0.3,
                "client_e2e_s": 0.9,
            },  # a repeated id: the last line wins
            {"request_id": "not-in-the-run", "client_e2e_s": 1.0},
        ],
    )
    req = load(run, cache=False).requests
    assert req.height == len(written.records)  # no extra rows from the join
    by_id = {r["request_id"]: r for r in req.iter_rows(named=True)}
    assert by_id["req-0"]["client_ttft_s"] == 0.5
    assert by_id["req-0"]["client_e2e_s"] == 0.75
    assert by_id["req-0"]["client_start"] == datetime.fromtimestamp(T0 / 1e9, tz=timezone.utc)
    assert by_id["req-1"]["client_ttft_s"] == 0.3
    assert by_id["req-2"]["client_e2e_s"] is None
    # What the workload said about the request travels with it; absent keys are nulls.
    assert (
        by_id["req-0"]["workload"],
        by_id["req-0"]["family"],
        by_id["req-0"]["workload_phase"],
    ) == (
        "short",
        "chat",
        "warm",
    )
    assert by_id["req-1"]["workload_phase"] is None and by_id["req-1"]["workload"] is None
    # Many sources join the client rows after concatenating: the same values, the same dtypes.
    other = write_run(tmp_path / "other", [({"i": 9},)], engine_id="engine-b")
    many = load([run, other.path], cache=False).requests
    assert many.schema == req.schema
    joined = many.filter(pl.col("request_id") == "req-0").row(0, named=True)
    assert (joined["workload"], joined["workload_phase"], joined["client_e2e_s"]) == (
        "short",
        "warm",
        0.75,
    )


def test_both_span_sources_in_one_file(tmp_path: Path) -> None:
    ours = span(
        "c" * 32,
        "3" * 16,
        "chat m",
        kind=2,
        attributes={
            sc.SAGELLM_REQUEST_ID: "r-ours",
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_REQUEST_MODEL: "m",
            sc.SAGELLM_TTFT: 0.125,  # the sagellm.latency.* names are read too
            sc.SAGELLM_E2E: 0.5,
        },
    )
    _, recorded = _recorded("vllm_alone.jsonl", tmp_path)
    vllm_line = (DATA / "vllm_alone.jsonl").read_text().splitlines()[0]
    write_lines(tmp_path / "x.jsonl", [traces_line([ours]), vllm_line])
    req = load(tmp_path / "x.jsonl", cache=False).requests
    in_line = {
        s["spanId"]
        for rs in json.loads(vllm_line)["resourceSpans"]
        for ss in rs["scopeSpans"]
        for s in ss["spans"]
    }
    vllm_ids = {rid for rid, v in recorded.items() if v["span"] in in_line}
    assert vllm_ids
    assert dict(zip(req["request_id"], req["source"], strict=True)) == {
        "r-ours": "sagellm",
        **dict.fromkeys(vllm_ids, "vllm"),
    }
    ours_row = req.filter(pl.col("request_id") == "r-ours").row(0, named=True)
    assert ours_row["ttft_s"] == 0.125
    assert ours_row["e2e_s"] == 0.5
    assert ours_row["cancelled"] is False


def test_requests_without_vllm_spans_skip_the_joins_and_are_the_same(
    written: WrittenRun, tmp_path: Path
) -> None:
    """A run without vLLM's spans (the common case) gets its requests without the joins that
    fold vLLM's spans in: the same frame, row for row; a run with them is told apart."""
    from sagellm_obs.frames import scan
    from sagellm_obs.frames.spans import has_vllm_spans, requests_of

    spans = load(written.path, cache=False).spans.lazy()
    assert not has_vllm_spans(spans)
    joined = requests_of(spans, vllm_spans=True).collect()
    assert joined.height == len(written.records)
    assert "JOIN" in requests_of(spans, vllm_spans=True).explain()
    assert requests_of(spans, vllm_spans=False).collect().equals(joined)
    scanned = scan(written.path, cache=False).requests
    assert "JOIN" not in scanned.explain()  # scan() found no vLLM span and skipped the joins
    assert scanned.collect().equals(joined)

    path, _ = _recorded("vllm_alone.jsonl", tmp_path)
    with_vllm = load(path, cache=False).spans.lazy()
    assert has_vllm_spans(with_vllm)
    assert "JOIN" in requests_of(with_vllm).explain()  # found, so folded in
