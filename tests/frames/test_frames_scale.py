"""Loading 20k synthetic spans (no timing assertions: benchmarks are separate)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from frames_otlp import T0, resource, span, traces_line

from sagellm_obs import semconv as sc
from sagellm_obs.frames import load

N_REQUESTS = 5_000  # four spans each


def _spans_of(i: int) -> list[dict[str, object]]:
    trace, root = f"{i + 1:032x}", f"{i + 1:016x}"
    start = T0 + i * 1_000_000
    phases = [
        span(trace, f"{(i + 1) * 16 + k:016x}", name, parent=root, start_ns=start + k * 1000)
        for k, name in enumerate(sc.PHASE_SPANS, 1)
    ]
    request = span(
        trace,
        root,
        "text_completion m",
        kind=2,
        start_ns=start,
        attributes={
            sc.GEN_AI_OPERATION_NAME: "text_completion",
            sc.GEN_AI_REQUEST_MODEL: "m",
            sc.SAGELLM_REQUEST_ID: f"r{i}",
            sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN: i / 1000,
            sc.GEN_AI_USAGE_INPUT_TOKENS: i,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 2,
            sc.GEN_AI_RESPONSE_FINISH_REASONS: ["stop"],
            "custom.tag": f"t{i % 7}",
        },
    )
    return [*phases, request]


@pytest.mark.parametrize("per_line", [1, 512])
def test_twenty_thousand_spans(tmp_path: Path, per_line: int) -> None:
    spans = [s for i in range(N_REQUESTS) for s in _spans_of(i)]
    res = resource(engine_id="e", run_id="run-big")
    with open(tmp_path / "traces-00001.jsonl", "w") as fh:
        for k in range(0, len(spans), per_line):
            fh.write(json.dumps(traces_line(spans[k : k + per_line], res=res)) + "\n")
    out = load(tmp_path, cache=False)
    assert out.spans.height == 4 * N_REQUESTS
    req = out.requests
    assert req.height == N_REQUESTS
    assert req["request_id"].to_list() == [f"r{i}" for i in range(N_REQUESTS)]
    assert req["ttft_s"].sum() == pytest.approx(sum(i / 1000 for i in range(N_REQUESTS)))
    assert req["input_tokens"].sum() == sum(range(N_REQUESTS))
    assert req["tpot_s"].null_count() == N_REQUESTS  # no decode time given
    assert req["finish_reason"].unique().to_list() == ["stop"]
    assert set(req["run_id"].unique()) == {"run-big"}
    children = out.spans.filter(pl.col("parent_span_id").is_not_null())
    assert children.join(req, left_on="parent_span_id", right_on="span_id").height == 3 * N_REQUESTS
    tags = out.spans.filter(pl.col("kind") == "SERVER")["attributes"].list.first()
    assert tags.struct.field("key").unique().to_list() == ["custom.tag"]
    lines = out.spans["source_line"]
    assert lines.min() == 1 and lines.max() == -(-len(spans) // per_line)
