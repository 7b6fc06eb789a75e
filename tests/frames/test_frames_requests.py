"""The requests frame: exactly the submitted numbers, vLLM's own spans, client timings."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from frames_otlp import T0, WrittenRun, resource, span, traces_line, write_lines

from sagellm_obs import semconv as sc
from sagellm_obs.frames import Frames, load, load_requests


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
        assert row["prefix_hit_rate"] == pytest.approx(r.cached_tokens / r.prompt_tokens)
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


def _vllm_span(request_id: str, *, start_ns: int, **attrs: object) -> dict[str, object]:
    attributes = {
        sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN: 0.25,
        sc.GEN_AI_LATENCY_E2E: 1.25,
        sc.GEN_AI_LATENCY_TIME_IN_QUEUE: 0.05,
        sc.GEN_AI_USAGE_PROMPT_TOKENS_DEPRECATED: 100,
        sc.GEN_AI_USAGE_COMPLETION_TOKENS_DEPRECATED: 11,
        sc.GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL: 0.2,
        sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE: 1.0,
        sc.GEN_AI_LATENCY_TIME_IN_MODEL_INFERENCE: 1.2,
        sc.GEN_AI_REQUEST_ID: request_id,
        sc.GEN_AI_REQUEST_MAX_TOKENS: 16,
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.5,
        "gen_ai.request.n": 1,
        sc.GEN_AI_RESPONSE_MODEL: "served-model",
        **attrs,
    }
    return span(
        "a" * 32,
        f"{abs(hash(request_id)) % 16**16:016x}",
        sc.VLLM_REQUEST_SPAN_NAME,
        kind=2,
        start_ns=start_ns,
        duration_ns=1_250_000_000,
        attributes=attributes,
    )


def test_vllm_llm_request_spans_map_into_requests(tmp_path: Path) -> None:
    res = resource(service="vllm", engine_id=None)
    write_lines(
        tmp_path / "vllm-traces.json",
        [
            traces_line([_vllm_span("cmpl-1", start_ns=T0)], res=res, scope="vllm.llm_engine"),
            traces_line(
                [
                    _vllm_span(
                        "cmpl-2", start_ns=T0 + 10**9, **{"gen_ai.usage.completion_tokens": 1}
                    )
                ],
                res=res,
                scope="vllm.llm_engine",
            ),
        ],
    )
    req = load_requests(tmp_path, cache=False)
    assert req["request_id"].to_list() == ["cmpl-1", "cmpl-2"]
    row = req.row(0, named=True)
    assert row["source"] == "vllm"
    assert row["model"] == "served-model"
    assert row["ttft_s"] == 0.25
    assert row["e2e_s"] == 1.25
    assert row["queue_s"] == 0.05
    assert row["prefill_s"] == 0.2
    assert row["decode_s"] == 1.0
    assert row["inference_s"] == 1.2
    assert row["input_tokens"] == 100
    assert row["output_tokens"] == 11
    assert row["tpot_s"] == pytest.approx(1.0 / 10)  # derived: decode / (output - 1)
    assert row["cached_tokens"] is None and row["prefix_hit_rate"] is None
    assert row["cancelled"] is None and row["stream"] is None  # vLLM does not say
    assert row["operation"] is None
    assert row["arrival"] == datetime.fromtimestamp(T0 / 1e9, tz=timezone.utc)
    assert req.row(1, named=True)["tpot_s"] is None  # one output token: no TPOT


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
    write_lines(tmp_path / "x.jsonl", [traces_line([ours, _vllm_span("r-vllm", start_ns=T0 + 5)])])
    req = load(tmp_path / "x.jsonl", cache=False).requests
    assert dict(zip(req["request_id"], req["source"], strict=True)) == {
        "r-ours": "sagellm",
        "r-vllm": "vllm",
    }
    ours_row = req.filter(pl.col("request_id") == "r-ours").row(0, named=True)
    assert ours_row["ttft_s"] == 0.125
    assert ours_row["e2e_s"] == 0.5
    assert ours_row["cancelled"] is False
