"""Spec build time and JSON size of every chart function at 1M requests.

Frames are synthetic (after ``tests/charts/chart_frames.py``) and go through
``sagellm_obs.frames.schemas.conform``, so they have exactly the loader's columns and dtypes:
1M requests at 1,000/s over two engines, and 500k engine steps. Time covers the chart call and
``chart.to_dict()`` (Altair's validation included); size is ``len(json.dumps(spec))``, what a
notebook ships to the browser. Charts run rotated, ``reps`` times; the median is reported.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import polars as pl

from benchmarks._common import (
    Options,
    f,
    median,
    met,
    progress,
    rotations,
    say,
    table,
    write_result,
)

NAME = "charts"
TITLE = "Chart specs at a million requests"
PRESETS: dict[str, dict[str, Any]] = {
    "default": {"requests": 1_000_000, "steps": 500_000, "reps": 3},
    "quick": {"requests": 200_000, "steps": 100_000, "reps": 2},
    "toy": {"requests": 2_000, "steps": 1_000, "reps": 1},
}
LIMIT_BYTES = 2_000_000
START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _uniform(n: int, k: int) -> pl.Expr:
    """Deterministic pseudo-uniform numbers in [0, 1) per row."""
    return (pl.int_range(n).hash(seed=k) % 1_000_003).cast(pl.Float64) / 1_000_003


def synthetic_requests(n: int, *, rate: float = 1000.0, engines: int = 1) -> pl.DataFrame:
    """``n`` plausible requests arriving at ``rate`` per second."""
    from sagellm_obs.frames.schemas import REQUESTS, conform

    i = pl.int_range(n)
    prompt = (16 + _uniform(n, 4) * 2000).cast(pl.Int64)
    frame = pl.select(
        request_id=pl.format("req-{}", i),
        trace_id=pl.format("{}", i.hash(seed=9)),
        model=pl.lit("tiny"),
        engine_id=pl.format("engine-{}", i % engines),
        run_id=pl.lit("run-1"),
        operation=pl.lit("text_completion"),
        arrival=pl.lit(START) + pl.duration(microseconds=(i * (1e6 / rate)).cast(pl.Int64)),
        queue_s=_uniform(n, 1) ** 3 * 0.2,
        prefill_s=0.005 + _uniform(n, 2) * 0.05,
        decode_s=0.1 + _uniform(n, 3) * 0.5,
        input_tokens=prompt,
        output_tokens=(1 + _uniform(n, 5) * 255).cast(pl.Int64),
        cached_tokens=(prompt.cast(pl.Float64) * _uniform(n, 6)).floor().cast(pl.Int64),
        finish_reason=pl.lit("stop"),
        error_type=pl.when(i % 97 == 0).then(pl.lit("timeout")).otherwise(pl.lit(None)),
        cancelled=pl.lit(False),
        stream=pl.lit(True),
        source=pl.lit("sagellm"),
    ).with_columns(
        ttft_s=pl.col("queue_s") + pl.col("prefill_s"),
        frontend_s=pl.lit(0.0),
        inference_s=pl.col("prefill_s") + pl.col("decode_s"),
        e2e_s=pl.col("queue_s") + pl.col("prefill_s") + pl.col("decode_s"),
        tpot_s=pl.col("decode_s") / pl.max_horizontal(pl.col("output_tokens") - 1, 1),
        cached_prompt_share=pl.col("cached_tokens") / pl.col("input_tokens"),
    )
    return conform(frame, REQUESTS)


def synthetic_steps(n: int, *, every_ms: float = 10.0, engines: int = 1) -> pl.DataFrame:
    """``n`` engine steps ``every_ms`` apart (round-robin over ``engines``)."""
    from sagellm_obs.frames.schemas import STEPS, conform

    i = pl.int_range(n)
    frame = pl.select(
        time=pl.lit(START) + pl.duration(microseconds=(i * every_ms * 1000).cast(pl.Int64)),
        engine_id=pl.format("engine-{}", i % engines),
        run_id=pl.lit("run-1"),
        step=i // engines,
        running=(_uniform(n, 11) * 16).cast(pl.Int64),
        waiting=(_uniform(n, 12) ** 2 * 8).cast(pl.Int64),
        kv_cache_usage=_uniform(n, 13),
        prefix_queries=(_uniform(n, 14) * 512).cast(pl.Int64),
        prompt_tokens=(_uniform(n, 16) * 512).cast(pl.Int64),
        generation_tokens=(_uniform(n, 17) * 16).cast(pl.Int64),
        preemptions=pl.lit(0, pl.Int64),
        finished=(_uniform(n, 18) * 2).cast(pl.Int64),
    ).with_columns(
        prefix_hits=(pl.col("prefix_queries").cast(pl.Float64) * _uniform(n, 15)).cast(pl.Int64),
        cached_prompt_tokens=pl.col("prompt_tokens") // 2,
    )
    frame = frame.with_columns(
        prefix_hit_rate=pl.when(pl.col("prefix_queries") > 0).then(
            pl.col("prefix_hits") / pl.col("prefix_queries")
        )
    )
    return conform(frame, STEPS)


@dataclass
class _Frames:
    requests: pl.DataFrame
    steps: pl.DataFrame


def chart_calls() -> dict[str, Callable[[_Frames], Any]]:
    """Every chart function, called as a notebook would."""
    from sagellm_obs import charts

    return {
        "latency_distribution (TTFT histogram)": lambda fr: charts.latency_distribution(
            fr.requests, "ttft_s"
        ),
        "latency_distribution (E2E ECDF)": lambda fr: charts.latency_distribution(
            fr.requests, "e2e_s", kind="ecdf"
        ),
        "latency_over_time": lambda fr: charts.latency_over_time(fr.requests, "ttft_s"),
        "ttft_vs_prompt": lambda fr: charts.ttft_vs_prompt(fr.requests),
        "request_waterfall": lambda fr: charts.request_waterfall(fr.requests),
        "cached_share_by_request": lambda fr: charts.cached_share_by_request(fr.requests),
        "kv_usage": lambda fr: charts.kv_usage(fr.steps),
        "prefix_hit_rate": lambda fr: charts.prefix_hit_rate(fr.steps),
        "throughput": lambda fr: charts.throughput(fr.steps),
        "concurrency": lambda fr: charts.concurrency(fr.steps),
        "compare_runs (all vs last half)": lambda fr: charts.compare_runs(
            {"A": fr.requests, "B": fr.requests.tail(fr.requests.height // 2)}
        ),
        "run_dashboard": charts.run_dashboard,
        "fleet_dashboard": lambda fr: charts.fleet_dashboard(fr.requests, fr.steps),
    }


def run(opts: Options) -> dict[str, Any]:
    """Run the benchmark; returns (and writes) the result document's ``results``."""
    p = opts.sizes(PRESETS)
    t0 = time.perf_counter()
    frames = _Frames(
        synthetic_requests(int(p["requests"]), engines=2),
        synthetic_steps(int(p["steps"]), engines=2),
    )
    build_s = time.perf_counter() - t0
    calls = chart_calls()
    names = list(calls)
    raw: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    with progress(opts.show_progress) as bar:
        task = bar.add_task(NAME, total=int(p["reps"]) * len(names), status="")
        for rep in range(int(p["reps"])):
            for name in rotations(names, rep):
                w0, c0 = time.perf_counter(), time.process_time()
                spec = calls[name](frames).to_dict()
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                size = len(json.dumps(spec))
                raw[name].append({"seconds": wall, "cpu_s": cpu, "bytes": size})
                bar.update(task, advance=1, status=f"{name}: {wall:.2f} s, {size / 1e3:,.0f} kB")
    charts_out = {
        name: {
            "seconds": median([r["seconds"] for r in runs]),
            "cpu_s": median([r["cpu_s"] for r in runs]),
            "bytes": max(r["bytes"] for r in runs),
        }
        for name, runs in raw.items()
    }
    largest = max(c["bytes"] for c in charts_out.values())
    slowest = max(c["seconds"] for c in charts_out.values())
    results = {
        "charts": charts_out,
        "frames_build_s": build_s,
        "limit_bytes": LIMIT_BYTES,
        "largest_bytes": largest,
        "slowest_s": slowest,
    }
    write_result(NAME, opts, p, results)
    say(f"[bold]{NAME}[/]: largest spec {largest / 1e3:,.0f} kB, slowest {slowest:.2f} s")
    return results


def render(doc: dict[str, Any]) -> str:
    """Markdown tables of a result document."""
    r, p = doc["results"], doc["params"]
    rows = [
        [
            f"`{name}`",
            f(c["seconds"], 2),
            f(c["cpu_s"], 2),
            f(c["bytes"] / 1e3, 0),
            f"{c['bytes'] / r['limit_bytes']:.2f}",
        ]
        for name, c in r["charts"].items()
    ]
    return "\n".join(
        [
            f"`{doc['command']}` — {p['requests']:,} requests and {p['steps']:,} steps "
            f"(frames built in {f(r['frames_build_s'], 1)} s), {p['reps']} repetitions, median "
            "time, largest size.",
            "",
            table(["chart", "build + to_dict s", "CPU s", "spec kB", "size / 2 MB target"], rows),
        ]
    )


def headline(doc: dict[str, Any]) -> list[list[str]]:
    """Target rows for the summary table."""
    r, p = doc["results"], doc["params"]
    largest = r["largest_bytes"]
    return [
        [
            f"largest chart spec at {p['requests'] / 1e6:g}M requests",
            f"< {r['limit_bytes'] / 1e6:g} MB",
            f"{largest / 1e6:.2f} MB (slowest build {f(r['slowest_s'], 2)} s)",
            met(largest < r["limit_bytes"]),
        ]
    ]
