"""Per-request CPU cost of our telemetry in isolation, next to a vLLM-style tracing path.

Every variant gets the same synthetic ``RequestRecord`` s (a short prompt, 64 output tokens, as
the engine benchmark's requests) in chunks; after each chunk the variant is drained (the pipeline
thread has built the spans and metric points, the batch span processor has exported them), so
span batches are full 512-span batches as under load and nothing is dropped (checked). The cost
of a variant is the CPU time of the whole process (every thread: ours, the batch span processor's,
the metric reader's) over the loop, minus the same loop with telemetry off, divided by the
number of requests. Variants run interleaved, rotated, repeatedly: until ``reps`` repetitions
were quiet (other processes kept at most ``QUIET_CORES`` busy during each of its variants) or
``max_reps`` / ``max_seconds`` ran out; the quiet repetitions are reported when there are at
least ``reps / 2`` of them, else all (the document says which).

Variants:

* ``full``: ``configure()`` with the local store on (columnar copies off): spans (request + 3
  phases + 1 event), metric points with exemplars, OTLP/JSON lines written to
  ``traces-*.jsonl``, metrics exported every 5 s to ``metrics-*.jsonl``. The pipeline takes
  its direct way (no SDK span objects).
* ``copies``: ``full`` with the store's columnar copies on (the default of ``configure()``; the
  other variants turn them off): a fresh run folder each repetition, closed at its end so that
  it pays for sealing (parsing and writing the Parquet copies of) exactly its own files.
* ``store_off``: ``configure(run_dir=False)``, no OTLP: span ids, sampling decisions and metric
  points are still made, nothing is exported.
* ``spans_only``: the store on, metric recording patched out (``full - spans_only`` = metrics).
* ``otlp``: ``full`` plus a span exporter that encodes OTLP protobuf and drops it (as for
  ``vllm_style`` below): the pipeline hands ``ReadableSpan`` objects to its batch processor.
* ``sdk_path``: ``full`` with a (no-op) span processor added by the user to the tracer provider:
  the pipeline falls back to ``Tracer.start_span`` and the store's batch span processor.
* ``sdk_metrics``: ``full`` with the request metrics recorded through the SDK's synchronous
  instruments (``AdvancedOptions.sdk_request_metrics``, the fallback) instead of pre-aggregated
  in the telemetry thread (``telemetry/aggregate.py``).
* ``vllm_style``: what vLLM's ``--otlp-traces-endpoint`` does per finished request
  (``OutputProcessor.do_tracing`` + ``vllm.tracing.otel.manual_instrument_otel``: one
  ``llm_request`` span with vLLM's attributes, parent context extracted from the environment),
  through a ``BatchSpanProcessor`` into an exporter that encodes OTLP protobuf and drops it, i.e.
  the OTLP exporter minus the network. vLLM does this on its output-processing path.
* ``off``: the loop alone (the baseline that is subtracted).

The variants and the timed loop are in :mod:`benchmarks._telemetry_cost_variants`, the cProfile
breakdowns in :mod:`benchmarks._telemetry_cost_profile`, the statistics and tables in
:mod:`benchmarks._telemetry_cost_report`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _telemetry_cost_profile as profile
from benchmarks import _telemetry_cost_report as report
from benchmarks._common import QUIET_CORES, Options, progress, rotations, say, write_result
from benchmarks._records import make_record
from benchmarks._telemetry_cost_variants import measure, metric_export_cost
from benchmarks._telemetry_cost_variants import variants as make_variants
from sagellm_obs.protocol.timing import ClockAnchor

NAME = "telemetry_cost"
TITLE = "Telemetry cost per request (isolated)"
PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "records": 20_000,
        "reps": 5,
        "max_reps": 10,
        "max_seconds": 300,
        "profile_records": 5_000,
    },
    "quick": {
        "records": 4_000,
        "reps": 3,
        "max_reps": 5,
        "max_seconds": 120,
        "profile_records": 2_000,
    },
    "toy": {"records": 256, "reps": 1, "max_reps": 1, "max_seconds": 60, "profile_records": 128},
}
VARIANTS = (
    "off", "full", "copies", "store_off", "spans_only", "otlp", "sdk_path", "sdk_metrics",
    "vllm_style",
)  # fmt: skip


def run(opts: Options) -> dict[str, Any]:
    """Run the benchmark; returns (and writes) the result document's ``results``."""
    p = opts.sizes(PRESETS)
    n, want = int(p["records"]), int(p["reps"])
    tmp = Path(tempfile.mkdtemp(prefix="bench-telemetry-"))
    anchor = ClockAnchor.now()
    raw: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    spans_expected: dict[str, int] = {}
    try:
        variants = make_variants(tmp)
        with progress(opts.show_progress) as bar:
            task = bar.add_task(f"{NAME} (quiet reps)", total=want, status="")
            deadline = time.monotonic() + float(p["max_seconds"])
            reps = quiet = 0
            while quiet < want and reps < int(p["max_reps"]):
                if reps and time.monotonic() > deadline:
                    break
                calm = True
                for name in rotations(VARIANTS, reps):
                    records = [make_record(anchor, i, tag=f"{name}-{reps}") for i in range(n)]
                    m = measure(variants[name], records)
                    raw[name].append(m)
                    calm = calm and m["others_cores"] <= QUIET_CORES
                    bar.update(
                        task,
                        status=f"rep {reps + 1} {name}: {m['cpu'] / n * 1e6:,.1f} µs CPU/request"
                        f" (others {m['others_cores']:.2f} cores)",
                    )
                reps += 1
                if calm:
                    quiet += 1
                    bar.update(task, advance=1)
            spans_got = {name: variants[name].spans() for name in VARIANTS}
            metric_export = metric_export_cost(variants["full"])
            for v in variants.values():
                v.close()
            spans_expected = {
                "full": 4 * n * reps,
                "copies": 4 * n * reps,
                "spans_only": 4 * n * reps,
                "otlp": 4 * n * reps,
                "sdk_path": 4 * n * reps,
                "sdk_metrics": 4 * n * reps,
                "vllm_style": n * reps,
            }
            ptask = bar.add_task("profiles", total=2, status="cProfile, one thread")
            prof_ours = profile.profile_ours(int(p["profile_records"]), tmp, anchor)
            bar.update(ptask, advance=1)
            prof_vllm = profile.profile_vllm(int(p["profile_records"]), anchor)
            bar.update(ptask, advance=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    results = report.summarise(
        raw,
        n=n,
        want=want,
        reps=reps,
        spans_got=spans_got,
        spans_expected=spans_expected,
        metric_export=metric_export,
        prof_ours=prof_ours,
        prof_vllm=prof_vllm,
    )
    write_result(NAME, opts, p, results)
    ours, vllm = results["ours_us"], results["vllm_style_us"]
    say(
        f"[bold]{NAME}[/]: ours (full) {ours:,.1f} µs CPU/request vs vLLM-style {vllm:,.1f} µs "
        f"(ratio {results['full_over_vllm_style']['median']:.2f}, target ≤ {report.TARGET_RATIO})"
    )
    return results


render = report.render
headline = report.headline
