"""Loading 20k synthetic spans and 2,000 series (no timing assertions: benchmarks are separate)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from frames_otlp import T0, kvs, metrics_line, resource, span, traces_line, write_lines

from sagellm_obs import semconv as sc
from sagellm_obs.frames import load
from sagellm_obs.telemetry.aggregate import CARDINALITY_LIMIT

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


# Measures, in a process of its own, how far building a file's frames raises the peak RSS
# (polars allocates outside Python: tracemalloc does not see it). Linux: /proc/self/clear_refs.
_MEASURE = """
import re, sys
from pathlib import Path
from sagellm_obs.frames import files
def kib(key):
    return int(re.search(key + r":\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
path = Path(sys.argv[1])
build = lambda: files.build_file(path, files.OTLP, path.parent, run_id=None, errors="raise")
build()  # imports and thread pools first
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
before = kib("VmRSS")
built, _ = build()
print(built["metrics"].height, kib("VmHWM") - before)
"""
_KILL_AT_KIB = 2 * 2**20  # the child is stopped past 2 GiB, so a regression cannot swamp the host


def _histogram(name: str, series: int) -> dict[str, Any]:
    bounds = [0.01 * 2**k for k in range(14)]
    points = [
        {
            "startTimeUnixNano": str(T0),
            "timeUnixNano": str(T0 + 1),
            "count": "1",
            "sum": 0.1,
            "bucketCounts": ["0"] * 4 + ["1"] + ["0"] * 10,
            "explicitBounds": bounds,
            "min": 0.1,
            "max": 0.1,
            "exemplars": [
                {
                    "timeUnixNano": str(T0),
                    "asDouble": 0.1,
                    "spanId": f"{i + 1:016x}",
                    "traceId": f"{i + 1:032x}",
                }
            ],
            "attributes": kvs(
                {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_REQUEST_MODEL: f"m-{i}"}
            ),
        }
        for i in range(series)
    ]
    return {
        "name": name,
        "unit": "s",
        "histogram": {"dataPoints": points, "aggregationTemporality": 2},
    }


def _peak_growth_kib(path: Path) -> tuple[int, int]:
    """(metrics rows, KiB the build raised the peak RSS by), measured in a child process."""
    env = {**os.environ, "POLARS_MAX_THREADS": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _MEASURE, str(path)], env=env, stdout=subprocess.PIPE, text=True
    )
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            rss = int(re.search(r"VmRSS:\s+(\d+)", status.read_text()).group(1))  # type: ignore[union-attr]
        except (OSError, AttributeError):  # exiting
            rss = 0
        if rss > _KILL_AT_KIB:
            proc.kill()
            proc.wait()
            pytest.fail(f"building the frames of {path.name} took over {_KILL_AT_KIB >> 10} MiB")
        time.sleep(0.05)
    out, _ = proc.communicate()
    assert proc.returncode == 0, out
    rows, grown = out.split()
    return int(rows), int(grown)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_a_metrics_line_of_many_series_loads_in_linear_memory(tmp_path: Path) -> None:
    """A collection of 8 histograms x 2,000 series (~9 MB of JSON, one line, as the store writes
    it for 2,000 models) once made the points' explode copy every point list per point: 6 GB."""
    series = CARDINALITY_LIMIT
    path = write_lines(
        tmp_path / "metrics-00001.jsonl",
        [metrics_line([_histogram(f"h{k}", series) for k in range(8)])],
    )
    rows, grown = _peak_growth_kib(path)
    assert rows == 8 * series
    # ~50 MB here; the quadratic explode needed over 100 times that.
    assert grown < 50 * path.stat().st_size >> 10, (
        f"{grown >> 10} MiB for {path.stat().st_size >> 20} MiB"
    )
