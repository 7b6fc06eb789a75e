"""Loading a run folder of 1M spans (10M with ``--big``) into frames, against the alternatives.

The run folder is synthetic but shaped exactly like our store's (see
:mod:`benchmarks._synth_store`): OTLP/JSON lines of 512 spans (128 requests: a request span with
our ~30 attributes and a first-token event, plus queue/prefill/decode children), files rotated
at 64 MB. Every loader runs in a fresh process (``python -m benchmarks._load_worker``); its time
covers the load call only (imports excluded), its peak memory is the process's ``ru_maxrss``
(imports included; the ``imports`` row is that floor). The files are in the OS page cache
("cold" means: no Parquet cache). The machine is shared: each run also records the cores other
processes kept busy meanwhile, and the CPU time of the loader (less sensitive to that than wall
time). Loaders, rotated per repetition:

* ``sagellm_cold``: ``sagellm_obs.frames.load(dir, cache=False)``: spans + requests frames.
* ``sagellm_cache_write``: ``load(dir)`` with no cache yet: the same, plus writing the Parquet
  cache (run once, first).
* ``sagellm_cached``: ``load(dir)`` again: from the Parquet cache.
* ``polars_ndjson``: ``polars.read_ndjson(files)``: parsing only, one nested row per line
  (the floor the target refers to).
* ``pyarrow_json``: ``pyarrow.json.read_json`` per file: parsing only (what our loader uses).
* ``pandas_json``: what users write today: ``json.loads`` per line, walk
  resourceSpans/scopeSpans/spans, one dict per span with its attributes, ``pandas.DataFrame``
  (spans only: no requests frame). Not run above ``PANDAS_MAX_SPANS`` (memory).

``polars_ndjson`` is not run above ``NDJSON_MAX_SPANS`` either (~4.7 GB per million spans here).
Every loader process is watched: one whose resident memory passes ``MEMORY_SHARE`` of the
machine's RAM is killed and reported as failed, rather than leaving the machine to the OOM killer.
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

from benchmarks._common import (
    QUIET_CORES,
    ROOT,
    Options,
    OthersMeter,
    f,
    median,
    met,
    progress,
    ratio,
    rotations,
    say,
    table,
    write_result,
)
from benchmarks._synth_store import write_store

NAME = "loading"
TITLE = "Loading a run into frames"
PANDAS_MAX_SPANS = 2_000_000  # json + pandas needs ~3 kB of RAM per span
NDJSON_MAX_SPANS = 2_000_000  # polars.read_ndjson needs ~4.7 kB of RAM per span
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
ROTATED = ("sagellm_cold", "polars_ndjson", "pyarrow_json", "pandas_json")
TARGETS = {"cold_s": 3.0, "cached_s": 0.3, "cold_over_ndjson": 2.0}
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


def _measure(directory: Path, spans: int, p: dict[str, Any], bar: Any) -> dict[str, Any]:
    """Every loader, rotated, for at least ``reps`` repetitions; more (up to ``max_reps`` and
    ``max_seconds``) while the loaders with targets have fewer than ``reps`` quiet runs."""
    too_big = {"pandas_json": PANDAS_MAX_SPANS, "polars_ndjson": NDJSON_MAX_SPANS}
    loaders = [x for x in ROTATED if spans <= too_big.get(x, spans)]
    order = ["imports", "sagellm_cache_write", "sagellm_cached", *loaders]
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
    want, most = int(p["reps"]), int(p["max_reps"])
    task = bar.add_task(f"load {spans:,} spans", total=None, status="")
    raw["imports"].append(_worker("imports", directory))
    phases = _worker("sagellm_phases", directory)
    shutil.rmtree(directory / ".cache", ignore_errors=True)
    deadline = time.monotonic() + float(p["max_seconds"])
    keys = [k for k in ("sagellm_cold", "sagellm_cached", "polars_ndjson") if k in raw]

    def enough() -> bool:
        return all(sum(map(_quiet, raw[k])) >= want for k in keys)

    rep = 0
    while rep < want or (not enough() and rep < most and time.monotonic() < deadline):
        first = ["sagellm_cache_write"] if rep == 0 else []
        for name in [*first, "sagellm_cached", *rotations(loaders, rep)]:
            bar.update(task, status=f"rep {rep + 1}: {name}")
            r = _worker(name, directory)
            raw[name].append(r)
            shown = "failed" if "failed" in r else f"{r['seconds']:.2f} s"
            bar.update(task, advance=1, status=f"rep {rep + 1}: {name} {shown}")
        rep += 1
    summary: dict[str, Any] = {}
    for name, runs in raw.items():
        ok = [r for r in runs if "failed" not in r]
        quiet = [r for r in ok if _quiet(r)]
        use = quiet or ok
        summary[name] = {
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
    # Paired per repetition: cold / ndjson, from repetitions where both ran quietly (else all).
    cold, nd = raw["sagellm_cold"], raw.get("polars_ndjson", [])
    pairs = [
        (a, b) for a, b in zip(cold, nd, strict=bool(nd)) if "failed" not in a and "failed" not in b
    ]
    calm = [(a, b) for a, b in pairs if _quiet(a) and _quiet(b)]
    ratios = [ratio(a["seconds"], b["seconds"]) for a, b in (calm or pairs)]
    cache_dir = directory / ".cache"
    cache_bytes = sum(x.stat().st_size for x in cache_dir.rglob("*") if x.is_file())
    return {
        "loaders": summary,
        "phases": phases,
        "cold_over_ndjson": median(ratios),
        "cold_over_ndjson_runs": ratios,
        "cold_over_ndjson_quiet": bool(calm),
        "cache_bytes": cache_bytes,
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
                sizing = p if spans == sizes[0] else {**p, "reps": 1, "max_reps": 1}
                m = _measure(directory, spans, sizing, bar)
                m["store"] = info
                results["sizes"][str(spans)] = m
                shutil.rmtree(directory, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_result(NAME, opts, p, results)
    first = results["sizes"][str(sizes[0])]["loaders"]
    say(
        f"[bold]{NAME}[/]: {sizes[0]:,} spans: cold {first['sagellm_cold']['seconds']:.2f} s, "
        f"cached {first['sagellm_cached']['seconds']:.2f} s, read_ndjson "
        f"{first['polars_ndjson']['seconds']:.2f} s"
    )
    return results


_LABELS = {
    "sagellm_cold": "`frames.load(dir, cache=False)` (cold)",
    "sagellm_cache_write": "`frames.load(dir)`, first time (cold + write cache)",
    "sagellm_cached": "`frames.load(dir)` from the Parquet cache",
    "polars_ndjson": "`polars.read_ndjson` (parse only, floor)",
    "pyarrow_json": "`pyarrow.json.read_json` (parse only)",
    "pandas_json": "`json.loads` + pandas (spans only)",
    "imports": "interpreter + imports only",
}


def _phases(run: dict[str, Any] | None) -> str:
    """One sentence: where a cold load spends its time and memory."""
    if not run or "phases" not in run:
        return ""
    ph = run["phases"]
    names = {
        "read_lines": "decoding the lines (pyarrow, with the OTLP schema)",
        "build_spans": "flattening them into spans",
        "build_requests": "the requests frame",
    }
    parts = [
        f"{label} {f(ph[k], 2)} s (peak RSS {f(ph.get(k + '_peak_mb'), 0)} MiB after it)"
        for k, label in names.items()
        if k in ph
    ]
    if not parts:
        return ""
    return (
        f"Stages of one more cold load ({f(run['seconds'], 2)} s, others' load "
        f"{f(run.get('others_cores'), 2)} cores; files are decoded and flattened two at a time, "
        "so the stages' times are summed over both threads and add up to more than the load): "
        + "; ".join(parts)
        + ".\n"
    )


def render(doc: dict[str, Any]) -> str:
    """Markdown tables of a result document."""
    r = doc["results"]
    out = [f"`{doc['command']}`"]
    for spans, m in r["sizes"].items():
        st = m["store"]
        loaders = m["loaders"]
        cold = loaders["sagellm_cold"]["seconds"]
        rows = []
        for name in (
            "sagellm_cold",
            "sagellm_cache_write",
            "sagellm_cached",
            "polars_ndjson",
            "pyarrow_json",
            "pandas_json",
            "imports",
        ):
            x = loaders.get(name)
            if x is None:
                rows.append([_LABELS[name], "not run", "", "", "", "", "", "", ""])
                continue
            if x["failed"] and x["seconds"] != x["seconds"]:  # all runs failed (NaN)
                rows.append([_LABELS[name], "failed", "", "", "", "", "", "", x["failed"][0][:80]])
                continue
            timed = name != "imports"
            rows.append(
                [
                    _LABELS[name],
                    f"**{f(x['seconds'], 2)}**" if timed else "",
                    f"{f(x['min_s'], 2)} – {f(x['max_s'], 2)}" if timed else "",
                    f(ratio(x["seconds"], cold), 2) if timed else "",
                    f(x["cpu_s"], 2) if timed else "",
                    f(x["maxrss_mb"], 0),
                    f(x["rows"]) if timed else "",
                    f"{x['quiet_runs']}/{x['runs']}",
                    f(x["others_cores"], 2),
                ]
            )
        out += [
            "",
            f"**{int(spans):,} spans** ({st['requests']:,} requests, "
            f"{st['bytes'] / 2**20:,.0f} MiB in {st['files']} files; "
            f"{m['reps']} repetition(s); Parquet cache {m['cache_bytes'] / 2**20:,.0f} MiB). "
            "Times are medians of the quiet runs of each loader (other processes ≤ "
            f"{QUIET_CORES} cores busy), of all runs when none was quiet:",
            "",
            table(
                [
                    "loader",
                    "wall s (median)",
                    "min – max",
                    "× cold",
                    "CPU s",
                    "peak RSS MiB",
                    "rows",
                    "quiet runs",
                    "others' load (cores)",
                ],
                rows,
            ),
            "",
            _phases(m.get("phases")),
            (
                f"Cold / read_ndjson, paired per repetition"
                f"{' (quiet pairs)' if m.get('cold_over_ndjson_quiet') else ''}: "
                f"**{f(m['cold_over_ndjson'], 2)}**. "
                if m.get("cold_over_ndjson_runs")
                else "read_ndjson not run at this size (memory). "
            )
            + f"Targets at 1M spans: cold ≤ {r['targets']['cold_s']} s, cached ≤ "
            f"{r['targets']['cached_s']} s, cold within {r['targets']['cold_over_ndjson']}× of "
            "read_ndjson. Rows: spans for our loader and pandas, lines for the parse-only floors.",
        ]
    return "\n".join(out)


def headline(doc: dict[str, Any]) -> list[list[str]]:
    """Target rows for the summary table (the first, default size)."""
    r = doc["results"]
    spans, m = next(iter(r["sizes"].items()))
    x = m["loaders"]
    t = r["targets"]
    n = f"{int(spans) / 1e6:g}M spans"
    cold, cached, rel = (
        x["sagellm_cold"]["seconds"],
        x["sagellm_cached"]["seconds"],
        m["cold_over_ndjson"],
    )
    return [
        [
            f"{n}: cold load (wall)",
            f"≤ {t['cold_s']} s",
            f"{f(cold, 2)} s",
            met(cold <= t["cold_s"]),
        ],
        [
            f"{n}: from the Parquet cache",
            f"≤ {t['cached_s']} s",
            f"{f(cached, 2)} s",
            met(cached <= t["cached_s"]),
        ],
        [
            f"{n}: cold / `polars.read_ndjson`",
            f"≤ {t['cold_over_ndjson']}×",
            f"{f(rel, 2)}×",
            met(rel <= t["cold_over_ndjson"]),
        ],
    ]
