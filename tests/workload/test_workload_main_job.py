"""`sagellm-obs run` end to end: real vLLM in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sagellm_obs import semconv as sc
from sagellm_obs.frames import load
from sagellm_obs.store import files_of, iter_jsonl
from sagellm_obs.store.otlp_json import parse_traces_line
from tests.conftest import module_tests, work_ahead

pytestmark = [pytest.mark.engine, pytest.mark.slow]

CLI = [sys.executable, "-m", "sagellm_obs.cli"]


def _run(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [*CLI, "run", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


# Runs whose checks do not depend on timing: started ahead, two at a time (each is a subprocess
# whose minute is mostly imports, which two cores overlap); each test reads its own.
AHEAD: dict[str, list[str]] = {
    "test_run_writes_a_complete_folder_and_a_true_summary": [
        "--workload", "shared_prefix", "--requests", "24", "--max-tokens", "8",
        "--concurrency", "4", "--vllm-tracing", "--slo", "ttft=2,tpot=1",
    ],
    "test_a_quiet_console_and_engine_options_in_the_manifest": [
        "--requests", "8", "--max-tokens", "4", "--max-num-seqs", "3",
        "--kv-cache-memory", "96MiB", "--engine-arg", "max_num_batched_tokens=1024",
    ],
    "test_verbose_shows_vllm_starting": ["--requests", "2", "--max-tokens", "2", "-v"],
    # The tiny model's context is 2048 tokens: vLLM refuses a longer one while it starts.
    "test_a_vllm_refusal_is_one_line": ["--requests", "2", "--max-model-len", "99999"],
}  # fmt: skip
Ahead = dict[str, tuple[Future[subprocess.CompletedProcess[str]], Path]]


@pytest.fixture(scope="module")
def ahead(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ahead]:
    """The :data:`AHEAD` runs of the selected tests: ``(the finished process, its run folder)``."""
    wanted = {item.originalname for item in module_tests(request)}
    outs = {name: tmp_path_factory.mktemp("run") / "run" for name in AHEAD if name in wanted}
    jobs = {name: partial(_run, [*AHEAD[name], "--out", str(out)]) for name, out in outs.items()}
    with work_ahead(jobs) as done:
        yield {name: (done[name], out) for name, out in outs.items()}


def _ran(
    ahead: Ahead, request: pytest.FixtureRequest
) -> tuple[subprocess.CompletedProcess[str], Path]:
    future, out = ahead[request.node.originalname]
    return future.result(), out


def _request_spans(run_dir: Path, *, vllm: bool = False) -> list[dict[str, Any]]:
    """Request spans straight from the stored OTLP/JSON, via the protobuf parser (no frames):
    ours, or (``vllm``) the ``llm_request`` spans vLLM's own tracing exported."""
    out = []
    for f in files_of(run_dir, "traces"):
        for _, obj in iter_jsonl(f):
            msg = parse_traces_line(obj)
            for rs in msg.resource_spans:
                for ss in rs.scope_spans:
                    if ss.scope.name.startswith("vllm") != vllm:
                        continue
                    for span in ss.spans:
                        if span.kind != 2:  # SERVER
                            continue
                        attrs = {kv.key: kv.value for kv in span.attributes}
                        out.append(attrs)
    return out


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind)


def _quantile(values: list[float], q: float) -> float:
    # Linear interpolation between closest ranks, as polars' "linear".
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def test_run_writes_a_complete_folder_and_a_true_summary(
    ahead: Ahead, request: pytest.FixtureRequest
) -> None:
    proc, out = _ran(ahead, request)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TTFT" in proc.stdout and "prefix-cache hit rate" in proc.stdout
    # Not a terminal: the progress line is printed once, its counts whole (no bar to squeeze them).
    assert "requests 24/24 " in proc.stdout, proc.stdout
    for name in ("manifest.json", "summary.json", "report.html"):
        assert (out / name).is_file(), name
    for kind in ("traces", "metrics", "steps", "requests-client"):
        assert files_of(out, kind), kind
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ended_at"] is not None
    assert manifest["workload"]["requests"] == 24
    summary = json.loads((out / "summary.json").read_text())
    spans = _request_spans(out)
    assert len(spans) == summary["requests"] == 24
    # The summary's percentiles against vLLM's own figures of the same requests (its
    # llm_request spans, built and exported by vLLM), not against what our code wrote.
    vllm = _request_spans(out, vllm=True)
    assert len(vllm) == 24
    ttft = [_value(s[sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN]) for s in vllm]
    e2e = [_value(s[sc.GEN_AI_LATENCY_E2E]) for s in vllm]
    for q in (0.5, 0.9, 0.99):
        key = f"p{int(q * 100)}"
        assert summary["latency"]["TTFT"][key] == pytest.approx(_quantile(ttft, q), abs=1e-6)
        assert summary["latency"]["E2E"][key] == pytest.approx(_quantile(e2e, q), abs=1e-6)
    assert summary["latency"]["TTFT"]["mean"] == pytest.approx(statistics.fmean(ttft), abs=1e-6)
    assert summary["input_token_throughput"] * summary["duration_s"] == pytest.approx(
        sum(_value(s[sc.GEN_AI_USAGE_PROMPT_TOKENS_DEPRECATED]) for s in vllm)
    )
    steps = [obj for f in files_of(out, "steps") for _, obj in iter_jsonl(f)]
    hits = sum(s[sc.STEP_PREFIX_HITS] for s in steps)
    queries = sum(s[sc.STEP_PREFIX_QUERIES] for s in steps)
    assert summary["prefix_hit_rate"] == pytest.approx(hits / queries)
    assert summary["prefix_hit_rate"] > 0.5  # 4 shared ~400-token prefixes, 24 requests
    # a fresh engine: every hit is on blocks the run itself sent (docs/warm-cache.md)
    warm = summary["warm_cache"]
    assert (warm["checked"], warm["first_requests"]) == (24, 3)
    assert warm["warm_start"] is False and warm["warm_requests"] == 0
    assert summary["kv_usage_peak"] == max(s[sc.STEP_KV_USAGE] for s in steps)
    # Goodput from the spans' own figures (not a fixed 1.0: a busy machine can miss a 2 s TTFT).
    ours_ttft = [_value(s[sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN]) for s in spans]
    tpot = [_value(s[sc.SAGELLM_TPOT]) for s in spans]
    good = sum(1 for t, p in zip(ours_ttft, tpot, strict=True) if t <= 2 and p <= 1)
    assert summary["goodput"] == pytest.approx(good / len(spans))


# What vLLM and torch print at start-up when nobody asked: none of it reaches the console.
STARTUP_NOISE = (
    "FutureWarning",
    "reduce_op",
    "Triton not available",
    "NUMA",
    "Loading safetensors",
    " INFO ",
    " WARNING ",
)


def test_a_quiet_console_and_engine_options_in_the_manifest(
    ahead: Ahead, request: pytest.FixtureRequest
) -> None:
    proc, out = _ran(ahead, request)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for noise in STARTUP_NOISE:
        assert noise not in proc.stderr and noise not in proc.stdout, noise
    assert proc.stderr.strip() == "", proc.stderr
    args = json.loads((out / "manifest.json").read_text())["engine_args"]
    assert (args["max_num_seqs"], args["max_num_batched_tokens"]) == (3, 1024)
    assert args["kv_cache_memory_bytes"] == 96 * 2**20
    # The terminal summary says what the run was.
    assert "max_num_seqs=3" in proc.stdout and "kv_cache_memory_bytes=96MiB" in proc.stdout
    assert "concurrency 8 (closed loop)" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["setup"]["engine_args"]["max_num_seqs"] == 3
    ttft, parts = summary["latency"]["TTFT"], ("frontend", "queue", "prefill")
    assert sum(summary["latency"][p]["mean"] for p in parts) == pytest.approx(ttft["mean"])


def test_verbose_shows_vllm_starting(ahead: Ahead, request: pytest.FixtureRequest) -> None:
    proc, _ = _ran(ahead, request)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " INFO " in proc.stdout + proc.stderr  # vLLM's start-up lines


def test_a_vllm_refusal_is_one_line(ahead: Ahead, request: pytest.FixtureRequest) -> None:
    proc, _ = _ran(ahead, request)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: vLLM did not start: "), proc.stderr
    assert "max_model_len" in lines[0] and "Traceback" not in proc.stderr


def test_prefix_caching_on_beats_off(tmp_path: Path, ahead: Ahead) -> None:
    import polars as pl

    from sagellm_obs.frames import load

    for future, _ in ahead.values():  # the comparison of latencies runs alone on the machine
        future.exception()
    results, requests = {}, {}
    for flag in ("--prefix-caching", "--no-prefix-caching"):
        out = tmp_path / flag.strip("-")
        proc = _run(
            [
                "--workload",
                "shared_prefix",
                "--requests",
                "24",
                "--max-tokens",
                "4",
                "--concurrency",
                "1",
                "--out",
                str(out),
                flag,
            ]
        )
        assert proc.returncode == 0, proc.stderr
        results[flag] = json.loads((out / "summary.json").read_text())
        requests[flag] = load(out, cache=False).requests
    on, off = results["--prefix-caching"], results["--no-prefix-caching"]
    assert on["prefix_hit_rate"] > 0.5
    assert off["prefix_hit_rate"] == 0.0
    assert on["mean_cached_share"] > 0.5 > off["mean_cached_share"]
    # The same shared-prefix requests (those whose prefix was already cached in the "on" run):
    # medians, since a 2-core machine's outliers would swamp a mean of 20 requests.
    warm = requests["--prefix-caching"].filter(pl.col("cached_tokens") > 0)["request_id"]
    assert warm.len() >= 16

    def median(flag: str, col: str) -> float:
        frame = requests[flag].filter(pl.col("request_id").is_in(warm.implode()))
        return float(frame[col].median())  # type: ignore[arg-type]

    assert median("--prefix-caching", "prefill_s") < median("--no-prefix-caching", "prefill_s")
    assert median("--prefix-caching", "ttft_s") < median("--no-prefix-caching", "ttft_s")
    # `sagellm-obs compare` puts the two side by side and writes a comparison report.
    off_dir, on_dir = tmp_path / "no-prefix-caching", tmp_path / "prefix-caching"
    cmp = subprocess.run(
        [*CLI, "compare", str(off_dir), str(on_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert cmp.returncode == 0, cmp.stderr
    assert "prefix-cache hit rate" in cmp.stdout
    assert (on_dir / "compare.html").is_file()


def test_replay_file_reports_bad_lines_and_runs_good_ones(tmp_path: Path) -> None:
    replay = tmp_path / "replay.jsonl"
    replay.write_text(
        "\n".join(
            [
                json.dumps({"prompt": "def add(a, b):", "max_tokens": 4}),
                "this is not json",
                json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}),
                json.dumps({"prompt": "x", "max_tokens": 0}),
                json.dumps(
                    {"request_id": "r-5", "trace_id": "t-5", "prompt": "y", "max_tokens": 3}
                ),
            ]
        )
        + "\n"
    )
    out = tmp_path / "run"
    proc = _run(["--workload", str(replay), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "replay.jsonl:2" in proc.stderr
    assert "replay.jsonl:4" in proc.stderr
    assert "max_tokens" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"] == 3


def test_default_run_tells_the_kv_story(tmp_path: Path) -> None:
    """The default workload on the default tiny engine: the KV cache fills and requests wait under
    pressure, and the prefix hit rate falls there and comes back (read from the run's own step
    records and request spans, phase by phase)."""
    out = tmp_path / "run"
    proc = _run(["--requests", "40", "--max-tokens", "16", "--out", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frames = load(out)
    steps, requests = frames.steps, frames.requests
    assert steps["kv_cache_usage"].max() >= 0.8  # type: ignore[operator]
    assert steps["waiting"].max() > 0 or steps["preemptions"].sum() > 0  # type: ignore[operator]
    by_phase = {
        row["workload_phase"]: row
        for row in requests.group_by("workload_phase")
        .agg(
            hit=pl.col("cached_tokens").sum() / pl.col("input_tokens").sum(),
            first=pl.col("arrival").min(),
            n=pl.len(),
        )
        .iter_rows(named=True)
    }
    assert {k: v["n"] for k, v in by_phase.items()} == {"warm": 16, "pressure": 12, "recover": 12}
    warm, pressure, recover = by_phase["warm"], by_phase["pressure"], by_phase["recover"]
    assert warm["first"] < pressure["first"] < recover["first"]
    assert pressure["hit"] < 0.2 < 0.5 < min(warm["hit"], recover["hit"])
    # The cache is fuller under pressure than while warming up.
    warm_peak = steps.filter(pl.col("time") < pressure["first"])["kv_cache_usage"].max()
    pressure_peak = steps.filter(
        (pl.col("time") >= pressure["first"]) & (pl.col("time") < recover["first"])
    )["kv_cache_usage"].max()
    assert pressure_peak > warm_peak  # type: ignore[operator]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kv_usage_peak"] == pytest.approx(steps["kv_cache_usage"].max())


def test_sigint_mid_run_keeps_a_loadable_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "COLUMNS": "160"}
    proc = subprocess.Popen(
        [*CLI, "run", "--requests", "2000", "--max-tokens", "16", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 180
        # Wait until some requests finished (client timings are written every second).
        while time.monotonic() < deadline and not files_of(out, "requests-client"):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Interrupted" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["requests"] < 2000
    assert json.loads((out / "manifest.json").read_text())["ended_at"] is not None
    assert len(_request_spans(out)) == summary["requests"]
