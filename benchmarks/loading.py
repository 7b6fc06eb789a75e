"""Loading a run folder of 1M spans (10M with ``--big``) into frames, against the alternatives.

The run folder is synthetic but shaped exactly like our store's (see
:mod:`benchmarks._synth_store`): a real manifest, OTLP/JSON lines of 512 spans (128 requests: a
request span with our ~30 attributes and a first-token event, plus queue/prefill/decode
children), files rotated at 64 MB. Every loader runs in a fresh process
(``python -m benchmarks._load_worker``); its time covers the load call only (imports excluded),
its peak memory is the process's ``ru_maxrss`` (imports included; the ``imports`` row is that
floor). The files are in the OS page cache. The machine is shared: each run also records the
cores other processes kept busy meanwhile, and the CPU time of the loader (less sensitive to that
than wall time). Loaders:

* ``sagellm_seal``: what the store's sealing thread does when a file rotates or the run closes,
  for every data file, one after the other: ``frames.columnar.write_copies(file)``. Its CPU time
  per request and per span is the store-side cost of the copies. Runs first in every repetition
  (the first one makes the copies the other loaders read).
* ``sagellm_first``: ``frames.load(dir)`` with the store's copies present: the first load of a
  sealed run (fails, and the benchmark with it, if any copy had to be rebuilt). The spans frame
  is deferred (``load``'s default), so it is not in this load's time or memory; its rows are
  counted from the Parquet footers.
* ``sagellm_first_spans``: the same load, then the first access of ``.spans`` (collected and
  schema-checked): what a session that drills into spans pays, in time and peak memory.
* ``sagellm_lazy_ttft``: ``frames.scan(dir).requests`` grouped by minute of arrival, p50/p99 of
  ``ttft_s``, collected: the notebook query of the targets.
* ``sagellm_rebuild``: ``frames.load(dir)`` after the copies were lost (a run killed before
  sealing): builds them from the JSON and writes them (the store's are put back afterwards).
* ``sagellm_cold``: ``frames.load(dir, cache=False)``: JSON only, nothing written.
* ``polars_ndjson``: ``polars.read_ndjson(files)``: parsing only, one nested row per line
  (the reference the first-load target is relative to).
* ``pyarrow_json``: ``pyarrow.json.read_json`` per file: parsing only (what our JSON path uses).
* ``pandas_json``: what users write by hand: ``json.loads`` per line, walk
  resourceSpans/scopeSpans/spans, one dict per span with its attributes, ``pandas.DataFrame``
  (spans only: no requests frame). Not run above ``PANDAS_MAX_SPANS`` (memory).

All but the seal are rotated per repetition. ``polars_ndjson`` is not run above
``NDJSON_MAX_SPANS`` either (~4.7 GB per million spans here), nor the JSON-only loads
(``sagellm_rebuild``, ``sagellm_cold``, ``pyarrow_json``) above ``JSON_MAX_SPANS``. Every
loader process is watched: one whose resident memory passes ``MEMORY_SHARE`` of the machine's
RAM is killed and reported as failed, rather than leaving the machine to the OOM killer.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _loading_report as report
from benchmarks._common import (
    QUIET_CORES,
    ROOT,
    Options,
    OthersMeter,
    median,
    progress,
    ratio,
    rotations,
    say,
    write_result,
)
from benchmarks._load_worker import NOT_FROM_COPIES
from benchmarks._synth_store import write_store
from sagellm_obs.store.layout import COLUMNAR_DIR

NAME = "loading"
TITLE = "Loading a run into frames"
PANDAS_MAX_SPANS = 2_000_000  # json + pandas needs ~3 kB of RAM per span
NDJSON_MAX_SPANS = 2_000_000  # polars.read_ndjson needs ~4.7 kB of RAM per span
# The JSON-only loads (rebuild, cold) peak at ~1.5 kB per span (~15 GB at 10M): more than a
# shared machine can spare, and they measure the same parse at 1M.
JSON_MAX_SPANS = 2_000_000
MEMORY_SHARE = 0.85  # of the machine's RAM: a loader process past it is killed
PRESETS: dict[str, dict[str, Any]] = {
    # reps: quiet runs wanted of the loaders with targets; at most max_reps repetitions.
    "default": {
        "spans": 1_000_000,
        "reps": 2,
        "max_reps": 5,
        "max_seconds": 600,
        "big_spans": 10_000_000,
    },
    "quick": {
        "spans": 200_000,
        "reps": 2,
        "max_reps": 3,
        "max_seconds": 120,
        "big_spans": 2_000_000,
    },
    "toy": {"spans": 2_000, "reps": 1, "max_reps": 1, "max_seconds": 30, "big_spans": 4_000},
}
ROTATED = (
    "sagellm_first",
    "sagellm_first_spans",
    "sagellm_lazy_ttft",
    "sagellm_rebuild",
    "sagellm_cold",
    "polars_ndjson",
    "pyarrow_json",
    "pandas_json",
)
TARGETS = {
    "first_s": 1.0,  # 1M spans, first load of a sealed run folder
    "first_over_ndjson": 0.1,
    "big_spans": 10_000_000,  # the size the next four are for
    "big_first_s": 10.0,
    "big_first_gb": 3.0,  # peak RSS, GB of 10^9 bytes
    "lazy_s": 2.0,
    "lazy_gb": 2.0,
}
TIMEOUT_S = 3600


def _worker(loader: str, directory: Path) -> dict[str, Any]:
    import psutil

    limit = psutil.virtual_memory().total * MEMORY_SHARE
    peak = 0
    with OthersMeter() as others, tempfile.TemporaryFile("w+") as out_f:
        with tempfile.TemporaryFile("w+") as err_f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks._load_worker", loader, str(directory)],
                cwd=ROOT,
                stdout=out_f,
                stderr=err_f,
                text=True,
            )
            watched = psutil.Process(proc.pid)
            deadline = time.monotonic() + TIMEOUT_S
            killed = ""
            while proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    peak = max(peak, watched.memory_info().rss)
                if peak > limit:
                    killed = f"killed at {peak / 2**30:.1f} GiB RSS (limit {limit / 2**30:.1f})"
                elif time.monotonic() > deadline:
                    killed = f"killed after {TIMEOUT_S} s"
                if killed:
                    proc.kill()
                    proc.wait()
                    break
                time.sleep(0.2)
            err_f.seek(0)
            stderr = err_f.read()
        out_f.seek(0)
        stdout = out_f.read()
    if killed:
        return {"loader": loader, "failed": killed}
    if proc.returncode != 0:
        tail = stderr.strip().splitlines()[-3:]
        return {"loader": loader, "failed": f"exit {proc.returncode}: {' | '.join(tail)}"}
    out: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    out["others_cores"] = others.cores
    return out


def _quiet(run: dict[str, Any]) -> bool:
    return "failed" not in run and run["others_cores"] <= QUIET_CORES


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "failed" not in r]
    quiet = [r for r in ok if _quiet(r)]
    use = quiet or ok
    return {
        "seconds": median([r["seconds"] for r in use]),
        "cpu_s": median([r["cpu_s"] for r in use]),
        "others_cores": median([r["others_cores"] for r in use]),
        "min_s": min((r["seconds"] for r in use), default=None),
        "max_s": max((r["seconds"] for r in use), default=None),
        "maxrss_mb": median([r["maxrss_mb"] for r in ok]),
        "rows": ok[0]["rows"] if ok else None,
        "failed": [r["failed"] for r in runs if "failed" in r],
        "runs": len(runs),
        "quiet_runs": len(quiet),
    }


def _paired(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[list[float], bool]:
    """``a / b`` per repetition where both ran (the quiet pairs when there are any)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=False) if "failed" not in x and "failed" not in y]
    calm = [(x, y) for x, y in pairs if _quiet(x) and _quiet(y)]
    return [ratio(x["seconds"], y["seconds"]) for x, y in (calm or pairs)], bool(calm)


def _run_checked(name: str, directory: Path) -> dict[str, Any]:
    r = _worker(name, directory)
    if NOT_FROM_COPIES in r.get("failed", ""):
        # The first load must read the store's copies: anything else measures something else.
        raise RuntimeError(f"{name}: {r['failed']}")
    return r


def _measure(
    directory: Path, spans: int, requests: int, p: dict[str, Any], bar: Any, *, phases: bool
) -> dict[str, Any]:
    """The seal, then every loader, rotated, for at least ``reps`` repetitions; more (up to
    ``max_reps`` and ``max_seconds``) while the loaders with targets have fewer than ``reps``
    quiet runs."""
    too_big = {
        "pandas_json": PANDAS_MAX_SPANS,
        "polars_ndjson": NDJSON_MAX_SPANS,
        "sagellm_rebuild": JSON_MAX_SPANS,
        "sagellm_cold": JSON_MAX_SPANS,
        "pyarrow_json": JSON_MAX_SPANS,
    }
    loaders = [x for x in ROTATED if spans <= too_big.get(x, spans)]
    raw: dict[str, list[dict[str, Any]]] = {
        name: [] for name in ["imports", "sagellm_seal", *loaders]
    }
    want, most = int(p["reps"]), int(p["max_reps"])
    task = bar.add_task(f"load {spans:,} spans", total=None, status="")
    raw["imports"].append(_worker("imports", directory))
    deadline = time.monotonic() + float(p["max_seconds"])
    keys = [
        k
        for k in ("sagellm_seal", "sagellm_first", "sagellm_lazy_ttft", "polars_ndjson")
        if k in raw
    ]

    def enough() -> bool:
        return all(sum(map(_quiet, raw[k])) >= want for k in keys)

    rep = 0
    while rep < want or (not enough() and rep < most and time.monotonic() < deadline):
        for name in ["sagellm_seal", *rotations(loaders, rep)]:
            bar.update(task, status=f"rep {rep + 1}: {name}")
            r = _run_checked(name, directory)
            if name == "sagellm_seal" and "failed" in r:
                raise RuntimeError(f"sealing the copies failed: {r['failed']}")
            raw[name].append(r)
            shown = "failed" if "failed" in r else f"{r['seconds']:.2f} s"
            bar.update(task, advance=1, status=f"rep {rep + 1}: {name} {shown}")
        rep += 1
    stages = _worker("sagellm_phases", directory) if phases else None
    summary = {name: _summary(runs) for name, runs in raw.items()}
    seal_ok = [r for r in raw["sagellm_seal"] if "failed" not in r]
    seal_use = [r for r in seal_ok if _quiet(r)] or seal_ok
    seal_cpu = median([r["cpu_s"] for r in seal_use])
    summary["sagellm_seal"].update(
        cpu_us_per_request=seal_cpu / requests * 1e6,
        cpu_us_per_span=seal_cpu / spans * 1e6,
        file_s=median([t for r in seal_use for t in r.get("files_s", [])]),
        file_max_s=max((t for r in seal_use for t in r.get("files_s", [])), default=None),
    )
    first_over, first_quiet = _paired(raw["sagellm_first"], raw.get("polars_ndjson", []))
    cold_over, _ = _paired(raw.get("sagellm_cold", []), raw.get("polars_ndjson", []))
    copies = directory / COLUMNAR_DIR
    copies_bytes = sum(x.stat().st_size for x in copies.rglob("*") if x.is_file())
    return {
        "loaders": summary,
        "phases": stages,
        "first_over_ndjson": median(first_over),
        "first_over_ndjson_runs": first_over,
        "first_over_ndjson_quiet": first_quiet,
        "cold_over_ndjson": median(cold_over),
        "copies_bytes": copies_bytes,
        "reps": rep,
        "raw": raw,
    }


def run(opts: Options) -> dict[str, Any]:
    """Run the benchmark; returns (and writes) the result document's ``results``."""
    p = opts.sizes(PRESETS)
    sizes = [int(p["spans"])]
    if opts.big:
        sizes.append(int(p["big_spans"]))
    tmp = Path(tempfile.mkdtemp(prefix="bench-loading-"))
    results: dict[str, Any] = {"sizes": {}, "targets": TARGETS}
    try:
        with progress(opts.show_progress) as bar:
            for spans in sizes:
                directory = tmp / f"run-{spans}"
                gen = bar.add_task(f"write {spans:,} spans", total=-(-spans // 4), status="")

                def advance(k: int, task: Any = gen) -> None:
                    bar.advance(task, k)

                info = write_store(directory, spans, on_progress=advance)
                bar.update(gen, status=f"{info['bytes'] / 2**20:,.0f} MiB, {info['files']} files")
                small = spans == sizes[0]
                sizing = p if small else {**p, "reps": 1, "max_reps": 1}
                m = _measure(directory, info["spans"], info["requests"], sizing, bar, phases=small)
                m["store"] = info
                results["sizes"][str(spans)] = m
                shutil.rmtree(directory, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_result(NAME, opts, p, results)
    first = results["sizes"][str(sizes[0])]["loaders"]
    say(
        f"[bold]{NAME}[/]: {sizes[0]:,} spans: first load "
        f"{first['sagellm_first']['seconds']:.2f} s (with the spans "
        f"{first['sagellm_first_spans']['seconds']:.2f} s), "
        f"read_ndjson {first['polars_ndjson']['seconds']:.2f} s, seal "
        f"{first['sagellm_seal']['cpu_us_per_request']:.0f} µs CPU/request, lazy TTFT query "
        f"{first['sagellm_lazy_ttft']['seconds']:.2f} s"
    )
    return results


render = report.render
headline = report.headline
